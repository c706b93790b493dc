"""Training's multi-process paths for real, through the CLI as DVC runs it: 2-process DDP on CPU (gloo),
and a SIGKILL mid-run followed by a rerun that resumes from the last checkpoint."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

from reelforge.caption import stage as caption
from reelforge.config import CaptionConfig, CaptionParams
from reelforge.model.backbone import TextToVideoModel
from tests.conftest import default_params

pytestmark = pytest.mark.slow

TINY = [
    "train.steps=12",
    "train.batch_size=4",
    "train.warmup_steps=2",
    "train.checkpoint_every_n_steps=4",
    "train.val_every_n_steps=6",
    "train.sample_every_n_steps=6",
    "train.sample_prompts=['a red circle moves left']",
    "sample.steps=2",
]


@pytest.fixture(scope="module")
def captions(ingested, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("captions")
    caption.run(
        CaptionConfig(caption=CaptionParams(steps=5)), ingested, out / "captions", out / "caption.json"
    )
    return out / "captions"


def _train_cli(project: Path, clips: Path, captions: Path, name: str, *overrides: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "reelforge.cli", "train", "--clips", str(clips), "--captions", str(captions)]
    cmd += ["--output", str(project / name / "model"), "--registration", str(project / name / "reg.json")]
    cmd += ["--checkpoints", str(project / name / "ckpt"), "--params", str(default_params(project / "p"))]
    for item in [*TINY, *overrides]:
        cmd += ["--set", item]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["REELFORGE_TORCH_THREADS"] = "1"  # the same kernels in every run: results comparable bit for bit
    return subprocess.Popen(
        cmd,
        cwd=project,
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    return out


def _backbone(model_dir: Path) -> dict[str, torch.Tensor]:
    return TextToVideoModel.from_pretrained(model_dir).state_dict()


def test_two_process_ddp_on_cpu(ingested, captions, tmp_path):
    out = _finish(_train_cli(tmp_path, ingested, captions, "ddp", "train.devices=2", "train.strategy=ddp"))
    ranks = dict(re.findall(r"rank (\d)/2: step 12, weights ([0-9a-f]{16})", out))
    assert set(ranks) == {"0", "1"}, out[-3000:]  # both ranks stepped to the end ...
    assert ranks["0"] == ranks["1"]  # ... with gradients all-reduced: identical replicas

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)  # not a registry another test set globally
    runs = client.search_runs(client.get_experiment_by_name("reelforge").experiment_id)
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"  # only rank 0 logged ...
    assert [str(v.version) for v in client.search_model_versions("name='reelforge-t2v'")] == [
        "1"
    ]  # ... and registered
    assert runs[0].data.tags["mfu.peak_source"] == "measured torch.float32 matmul on cpu"
    assert all(
        client.get_metric_history(runs[0].info.run_id, k) for k in ("mfu", "tokens_per_s", "grad_norm")
    )
    waits = [m.value for m in client.get_metric_history(runs[0].info.run_id, "data_wait_frac")]
    assert len(waits) == 12 and all(0 <= w < 1 for w in waits)
    history = client.get_metric_history(runs[0].info.run_id, "loss")
    assert sorted({m.step for m in history}) == list(range(12))
    assert client.get_metric_history(runs[0].info.run_id, "val_loss")
    artifacts = [a.path for a in client.list_artifacts(runs[0].info.run_id, "samples")]
    assert artifacts == ["samples/step_0000006", "samples/step_0000012"]

    # The checkpoint loads back to exactly the EMA weights that were saved as the model.
    ckpt = torch.load(tmp_path / "ddp" / "ckpt" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 12
    saved = _backbone(tmp_path / "ddp" / "model")
    ema = {k.removeprefix("ema."): v for k, v in ckpt["state_dict"].items() if k.startswith("ema.w")}
    names = [n for n, _ in TextToVideoModel.from_pretrained(tmp_path / "ddp" / "model").named_parameters()]
    assert len(ema) == len(names)
    for i, name in enumerate(names):
        assert torch.equal(ema[f"w{i}"], saved[name]), name


def test_killed_training_resumes_from_its_last_checkpoint(ingested, captions, tmp_path):
    reference = _finish(_train_cli(tmp_path, ingested, captions, "reference"))
    assert "resuming" not in reference

    proc = _train_cli(tmp_path, ingested, captions, "killed")
    deadline, seen = time.time() + 300, ""
    while "checkpoint step 8" not in seen:  # kill between the 8th and the 12th step
        line = proc.stdout.readline()
        assert line or proc.poll() is None, seen[-3000:]
        assert time.time() < deadline
        seen += line
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / "model").exists() and not (tmp_path / "killed" / "reg.json").exists()

    resumed = _finish(_train_cli(tmp_path, ingested, captions, "killed"))
    assert "resuming from step 8" in resumed
    reg = json.loads((tmp_path / "killed" / "reg.json").read_text())
    assert reg["final_step"] == 12 and reg["resumed_from_step"] == 8
    state = json.loads((tmp_path / "killed" / "ckpt" / "run.json").read_text())
    assert reg["run_id"] == state["mlflow_run_id"]  # the same MLflow run continued

    # Same optimizer, schedule, EMA, data position and random draws: the weights of an uninterrupted run.
    got, want = _backbone(tmp_path / "killed" / "model"), _backbone(tmp_path / "reference" / "model")
    for name, value in want.items():
        torch.testing.assert_close(got[name], value, rtol=0, atol=1e-6, msg=name)

    # A changed param is another run: its checkpoints are not resumed.
    again = _finish(_train_cli(tmp_path, ingested, captions, "killed", "train.lr=0.002"))
    assert "starting fresh" in again and "resuming" not in again
