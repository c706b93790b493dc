"""What the stack refuses before anything starts: unreachable backends, clashing ports."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from reelforge.config import StackParams
from reelforge.stack import unreachable
from tests.conftest import REPO


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once it is closed


def test_unreachable_names_each_backend_that_does_not_answer():
    port = _closed_port()
    assert unreachable("sqlite:////tmp/x.db", None) == []
    problems = unreachable(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port}/api")
    assert [p[0] for p in problems] == ["MLflow tracking server", "Prefect API"]
    assert all("does not answer" in p[2] for p in problems)
    (db,) = unreachable(f"postgresql+psycopg://postgres@127.0.0.1:{port}/mlflow", None)
    assert db[0] == "MLflow tracking database" and str(port) in db[1]


def test_a_run_against_an_unreachable_tracking_server_stops_before_any_stage(tmp_path):
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{_closed_port()}"}
    env.pop("PREFECT_API_URL", None)
    reelforge = str(Path(sys.executable).parent / "reelforge")
    proc = subprocess.run(
        [reelforge, "run", "--project", str(tmp_path)], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "MLflow tracking server" in proc.stdout and "does not answer" in proc.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]  # nothing ran, nothing written


def test_stack_ports_must_differ():
    with pytest.raises(ValueError, match="stack ports must differ"):
        StackParams(postgres_port=5001, mlflow_port=5001)
