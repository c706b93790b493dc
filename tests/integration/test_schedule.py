"""A real Prefect server turns the deployment `reelforge schedule` registers (on a process work pool, one
run at a time) into scheduled flow runs. tests/e2e/test_stack.py has a worker execute one."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cron_deployment_gets_scheduled_runs(tmp_path):
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",
    }
    server = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(1)
        for cmd in (
            [str(BIN / "prefect"), "work-pool", "create", "reelforge", "--type", "process"],
            [sys.executable, "-c", "from flows.pipeline import deploy_scheduled; "
             f"deploy_scheduled({str(REPO)!r}, '*/10 * * * *', 'reelforge', {{'RAY_ADDRESS': 'x:1'}})"],
        ):  # fmt: skip
            subprocess.run(cmd, env={**env, "PREFECT_API_URL": api}, check=True, timeout=120, cwd=REPO)
        dep = httpx.get(f"{api}/deployments/name/reelforge-pipeline/reelforge-scheduled").json()
        assert [s["schedule"]["cron"] for s in dep["schedules"]] == ["*/10 * * * *"]
        assert dep["parameters"] == {"project": str(REPO), "serve": True}
        assert dep["work_pool_name"] == "reelforge" and dep["job_variables"] == {
            "env": {"RAY_ADDRESS": "x:1"}
        }
        assert dep["global_concurrency_limit"]["limit"] == 1
        assert dep["concurrency_options"]["collision_strategy"] == "ENQUEUE"
        runs: list = []
        while time.monotonic() < deadline and not runs:
            runs = httpx.post(f"{api}/flow_runs/filter", json={}).json()
            time.sleep(1)
        assert runs and {r["state_type"] for r in runs} == {"SCHEDULED"}
        assert all(r["expected_start_time"][14:16] in {"00", "10", "20", "30", "40", "50"} for r in runs)
    finally:
        server.terminate()
        server.wait(timeout=30)
