"""A failed pipeline run POSTs what failed to params' notify.webhook_url: a real flow run (`reelforge run`,
Prefect's ephemeral API) against a local HTTP receiver."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import yaml

from tests.conftest import REPO
from tests.e2e.project import BIN

pytestmark = pytest.mark.slow


def test_a_failed_run_notifies_the_webhook_with_the_failed_stage_and_log_tail(tmp_path):
    received: list[dict] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            received.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["notify"]["webhook_url"] = f"http://127.0.0.1:{server.server_port}/hook"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))  # and no data/raw: the first task fails
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / ".prefect")}
    for var in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI"):
        env.pop(var, None)
    cmd = [str(BIN / "reelforge"), "run", "--project", str(tmp_path), "--no-serve"]
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=400)
    server.shutdown()
    assert proc.returncode != 0
    assert len(received) == 1, proc.stderr[-3000:]
    body = received[0]
    assert body["state"] == "Failed" and body["flow_run"] and body["flow_run_id"]
    assert body["failed_stage"].startswith("snapshot_raw")
    assert "data/raw does not exist" in body["log_tail"]
