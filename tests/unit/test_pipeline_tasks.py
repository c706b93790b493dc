"""The flow's own tasks, called outside a flow run: which failures are retried, and a push to a remote that
cannot be written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from prefect.logging import disable_run_logger
from prefect.states import Failed

from flows.pipeline import _transient, push_data
from tests.conftest import REPO


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (RuntimeError("ray head not up yet"), True),
        (FileNotFoundError("data/raw"), False),
        (ValueError("x"), False),
    ],
)
def test_only_errors_that_may_pass_are_retried(error, retried):
    assert _transient(None, None, Failed(data=error)) is retried


def test_a_push_to_an_unwritable_remote_fails_with_the_remotes_name(tmp_path):
    dvc = str(Path(sys.executable).parent / "dvc")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([dvc, "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "data").mkdir()
    (tmp_path / "data/a.txt").write_text("a")
    subprocess.run([dvc, "add", "-q", "data"], cwd=tmp_path, check=True)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the remote's folder should be")
    params["dvc"]["remote"] = str(blocker / "remote")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with (
        disable_run_logger(),
        pytest.raises(RuntimeError, match=r"dvc push to remote 'reelforge' \(.*not-a-folder/remote\) failed"),
    ):
        push_data.fn(tmp_path)
    params["dvc"]["remote"] = "remote"  # a folder in the project: pushed
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with disable_run_logger():
        assert push_data.fn(tmp_path) == str(tmp_path / "remote")
    assert any((tmp_path / "remote").rglob("*"))
