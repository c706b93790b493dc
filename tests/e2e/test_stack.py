"""The team setup on one machine, as a team runs it: `reelforge stack up` (PostgreSQL, MLflow and Prefect
servers, a worker, the Ray head), a cron deployment the worker executes to the endpoint, runs tracked in
MLflow on PostgreSQL, one pipeline run at a time, and `reelforge stack down` leaving nothing behind."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from reelforge.config import ServeParams, StackParams
from reelforge.stack import Stack, StackError
from tests.e2e.project import make_project, mlflow_review_pages, screenshot_pages, sh

pytestmark = pytest.mark.slow
PORT, RAY_PORT = 8125, 6397
RUN_TIMEOUT = 900


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def stack():
    root = Path(
        tempfile.mkdtemp(prefix="reelforge-stack-")
    )  # not pytest's 0700 tmp: `postgres` must reach it
    root.chmod(0o755)
    ports = {"postgres_port": _free_port(), "mlflow_port": _free_port(), "prefect_port": _free_port()}
    proj = make_project(
        root, serve={"port": PORT, "ray_port": RAY_PORT}, stack=ports, dvc={"remote": ".stack/dvc-remote"}
    )
    t0 = time.monotonic()
    up = sh(proj, "reelforge", "stack", "up")
    print(f"stack up in {time.monotonic() - t0:.1f} s")
    env = dict(
        line.removeprefix("export ").split("=", 1)
        for line in up.stdout.splitlines()
        if line.startswith("export ")
    )
    yield proj, env, up.stdout
    sh(proj, "reelforge", "serve", "stop", check=False, env=env)
    sh(proj, "reelforge", "stack", "down", check=False)
    shutil.rmtree(root, ignore_errors=True)


def _api(env: dict) -> str:
    return env["PREFECT_API_URL"]


def _runs(env: dict) -> list[dict]:
    return httpx.post(
        f"{_api(env)}/flow_runs/filter", json={"sort": "EXPECTED_START_TIME_ASC"}, timeout=10
    ).json()


def _wait_done(env: dict, ids: list[str]) -> list[dict]:
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline:
        runs = [httpx.get(f"{_api(env)}/flow_runs/{i}", timeout=10).json() for i in ids]
        if all(r["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") for r in runs):
            return runs
        time.sleep(3)
    raise AssertionError(f"runs not finished within {RUN_TIMEOUT} s: {[r['state_name'] for r in runs]}")


def _stage_summaries(env: dict, run_id: str) -> dict[str, str]:
    body = {"flow_runs": {"id": {"any_": [run_id]}}}
    artifacts = httpx.post(f"{_api(env)}/artifacts/filter", json=body, timeout=10).json()
    return {a["key"].removesuffix("-summary"): a["data"].splitlines()[0] for a in artifacts if a["key"]}


def _log_tail(env: dict, run_id: str) -> str:
    body = {"logs": {"flow_run_id": {"any_": [run_id]}}, "sort": "TIMESTAMP_ASC"}
    logs = httpx.post(f"{_api(env)}/logs/filter", json=body, timeout=10).json()
    return "\n".join(entry["message"][-600:] for entry in logs[-40:])


def test_stack_up_is_healthy_idempotent_and_refuses_a_taken_port(stack, tmp_path):
    proj, env, out = stack
    for service in ("postgres", "mlflow", "prefect", "worker", "ray"):
        assert f"{service}" in out and "up in" in out
    status = sh(proj, "reelforge", "stack", "status")
    assert status.stdout.count("healthy") == 5, status.stdout
    again = sh(proj, "reelforge", "stack", "up")
    assert again.stdout.count("already running") == 5, again.stdout
    taken = int(env["MLFLOW_TRACKING_URI"].rsplit(":", 1)[1])  # the running MLflow server's port
    other = Stack(StackParams(dir=str(tmp_path / "s"), postgres_port=taken), ServeParams(), tmp_path)
    with pytest.raises(StackError, match=f"postgres: port {taken} is taken"):
        other.up(log=lambda _: None)


def test_a_scheduled_run_executes_on_the_worker_through_to_the_endpoint(stack):
    proj, env, _ = stack
    now = dt.datetime.now(dt.UTC)
    at = now + dt.timedelta(minutes=1 if now.second < 40 else 2)  # the next whole minute, with time to deploy
    cron = f"{at.minute} {at.hour} * * *"
    out = sh(proj, "reelforge", "schedule", "--cron", cron, env=env).stdout
    assert "one run at a time" in out and f"cron '{cron}'" in out
    deadline = time.monotonic() + 180
    runs: list[dict] = []
    while time.monotonic() < deadline and not any(r["state_type"] != "SCHEDULED" for r in runs):
        runs = _runs(env)
        time.sleep(2)
    started = [r for r in runs if r["state_type"] != "SCHEDULED"]
    assert started and started[0]["auto_scheduled"], runs  # the schedule made it, the worker took it
    t0 = time.monotonic()
    (run,) = _wait_done(env, [started[0]["id"]])
    print(f"scheduled run: {run['state_name']} in {run['total_run_time']:.0f} s of flow time, "
          f"{time.monotonic() - t0:.0f} s waited")  # fmt: skip
    assert run["state_type"] == "COMPLETED", _log_tail(env, run["id"])
    assert set(_stage_summaries(env, run["id"]).values()) == {
        f"## {s}: ran" for s in ("ingest", "caption", "train", "evaluate", "promote")
    }
    # MLflow on PostgreSQL holds the runs of this flow run, and the champion the endpoint serves
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"], registry_uri=env["MLFLOW_TRACKING_URI"])
    champion = client.get_model_version_by_alias("reelforge-t2v", "champion")
    assert str(champion.version) == "1"
    port = int((proj / "params.yaml").read_text().split("postgres_port: ")[1].split()[0])
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/mlflow") as conn:
        tagged = conn.execute(
            "SELECT run_uuid FROM tags WHERE key = 'pipeline_run' AND value LIKE %s", (f"%/{run['id']}",)
        ).fetchall()
    # the training and evaluation runs name their pipeline execution; the champion came from this one
    assert len(tagged) >= 2 and (champion.run_id,) in tagged, tagged
    model = httpx.get(f"http://127.0.0.1:{PORT}/v1/model", timeout=30).json()
    assert model["version"] == "1"
    assert not (proj / "mlflow.db").exists()  # nothing went to the embedded store


def test_a_reviewer_sees_the_run_in_the_stacks_mlflow_and_prefect_uis(stack, tmp_path):
    """The MLflow server's UI (on PostgreSQL) shows the champion, where it came from and the decision; the
    Prefect UI shows the scheduled flow run with a task per stage. Screenshots in the test's temp folder."""
    from mlflow import MlflowClient

    from reelforge.registry.review import UI_WORKFLOW

    proj, env, _ = stack
    base = env["MLFLOW_TRACKING_URI"]
    client = MlflowClient(tracking_uri=base, registry_uri=base)
    champion = client.get_model_version_by_alias("reelforge-t2v", "champion")
    experiment = client.get_experiment_by_name("reelforge").experiment_id
    decided = json.loads((proj / "reports/promotion.json").read_text())["eval_run_id"]
    pages = mlflow_review_pages(
        base, f"{base}/#/experiments/{experiment}?{UI_WORKFLOW}", champion.version, decided
    )
    (run,) = [r for r in _runs(env) if r["auto_scheduled"] and r["state_type"] == "COMPLETED"]
    ui = _api(env).removesuffix("/api")
    pages["prefect_flow_run"] = (
        f"{ui}/runs/flow-run/{run['id']}",
        [run["name"], "Completed", "dvc repro train"],
        "Task Runs",
    )
    shots = screenshot_pages(pages, tmp_path)
    print("screenshots:", *shots)
    assert all(shot.stat().st_size > 10_000 for shot in shots)


def test_reproduce_checks_out_a_version_from_the_remote_and_finds_a_corrupted_file(stack, tmp_path):
    proj, env, _ = stack
    good = sh(proj, "reelforge", "reproduce", "--version", "1", "--into", str(tmp_path / "a"), env=env)
    assert good.stdout.count(" match\n") == 3 and "every md5 matches" in good.stdout, good.stdout
    assert (tmp_path / "a/models/t2v").is_dir() and (tmp_path / "a/data/clips/manifest.parquet").exists()
    files = [f for f in (proj / ".stack/dvc-remote").rglob("*") if f.is_file() and f.suffix != ".dir"]
    biggest = max(files, key=lambda f: f.stat().st_size)  # the model's weights
    biggest.chmod(0o644)
    biggest.write_bytes(b"not what was pushed")
    bad = sh(
        proj, "reelforge", "reproduce", "--version", "1", "--into", str(tmp_path / "b"), env=env, check=False
    )
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "models/t2v" in next(line for line in bad.stdout.splitlines() if "mismatch" in line), bad.stdout


def test_two_runs_at_once_run_one_after_the_other_and_find_nothing_to_do(stack):
    proj, env, _ = stack
    dep = httpx.get(f"{_api(env)}/deployments/name/reelforge-pipeline/reelforge-scheduled", timeout=10).json()
    ids = [
        httpx.post(f"{_api(env)}/deployments/{dep['id']}/create_flow_run", json={}, timeout=10).json()["id"]
        for _ in range(2)
    ]
    runs = _wait_done(env, ids)
    assert [r["state_type"] for r in runs] == ["COMPLETED", "COMPLETED"], [_log_tail(env, i) for i in ids]
    first, second = sorted(runs, key=lambda r: r["start_time"])
    assert first["end_time"] <= second["start_time"]  # never both running
    states = httpx.get(
        f"{_api(env)}/flow_run_states/", params={"flow_run_id": second["id"]}, timeout=10
    ).json()
    assert "AwaitingConcurrencySlot" in {s["name"] for s in states}, [s["name"] for s in states]
    for run in runs:  # no new data: every stage is up to date
        assert set(_stage_summaries(env, run["id"]).values()) == {
            f"## {s}: up to date (not re-run)" for s in ("ingest", "caption", "train", "evaluate", "promote")
        }


def test_stack_down_leaves_no_process_behind(stack):
    proj, env, _ = stack
    sh(proj, "reelforge", "serve", "stop", env=env)
    pids = {s.name: s.pid for s in _stack_of(proj).status()}
    sh(proj, "reelforge", "stack", "down")
    time.sleep(2)
    left = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout.splitlines()
    ours = [
        line for line in left if str(proj) in line or f":{RAY_PORT}" in line or f"port={RAY_PORT}" in line
    ]
    assert ours == [], ours
    for name, pid in pids.items():
        assert pid is None or not Path(f"/proc/{pid}").exists(), f"{name} ({pid}) still running"
    status = sh(proj, "reelforge", "stack", "status", check=False)
    assert status.returncode == 1 and status.stdout.count("down") == 5, status.stdout


def _stack_of(proj: Path) -> Stack:
    from reelforge.config import load_params

    p = load_params(proj / "params.yaml")
    return Stack(p.stack, p.serve, proj)
