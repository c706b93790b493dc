from __future__ import annotations

import json

import torch

from reelforge.config import TrainConfig, TrainParams
from reelforge.train.resume import LAST_CKPT, RUN_FILE, resume_point, run_key, start_fresh

DATA = {"data.manifest_sha256": "abc"}


def test_the_run_key_changes_with_what_is_computed_not_with_how_it_is_launched():
    key = run_key(TrainConfig(), DATA)
    assert (
        run_key(TrainConfig(train=TrainParams(devices=2, strategy="ddp", log_every_n_steps=5)), DATA) == key
    )
    assert run_key(TrainConfig(train=TrainParams(lr=0.002)), DATA) != key
    assert run_key(TrainConfig(), {"data.manifest_sha256": "abd"}) != key


def test_a_checkpoint_is_resumed_only_under_its_own_key(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # start_fresh looks the old run up in MLflow's default store, here
    ckpt = tmp_path / "ckpt"
    assert resume_point(ckpt, "k").checkpoint is None
    start_fresh(ckpt, "k", "run-1")
    torch.save({"global_step": 8}, ckpt / LAST_CKPT)
    point = resume_point(ckpt, "k")
    assert (point.checkpoint, point.step, point.mlflow_run_id) == (ckpt / LAST_CKPT, 8, "run-1")
    assert resume_point(ckpt, "other").checkpoint is None
    start_fresh(ckpt, "other", "run-2")  # another run's checkpoints are dropped
    assert not (ckpt / LAST_CKPT).exists()
    assert json.loads((ckpt / RUN_FILE).read_text()) == {"key": "other", "mlflow_run_id": "run-2"}
