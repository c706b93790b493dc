"""The GPU paths the docs promise, run for real on a CUDA device (skipped without one): training with
accelerator=gpu in bf16-mixed, with compile and gradient checkpointing, under FSDP, and fed by DataLoader
workers into pinned memory; sampling during
training; a registered version loaded the way a `serve.profile: gpu` replica loads it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reelforge.caption import stage as caption
from reelforge.config import CaptionConfig, CaptionParams, TrainConfig
from reelforge.registry.models import load_pipeline
from reelforge.registry.tracking import setup
from reelforge.train import stage as train

pytestmark = [pytest.mark.gpu, pytest.mark.slow]


@pytest.fixture(scope="module")
def captions(ingested, tmp_path_factory):
    out = tmp_path_factory.mktemp("captions")
    caption.run(CaptionConfig(caption=CaptionParams(steps=5)), ingested, out / "c", out / "caption.json")
    return out / "c"


@pytest.mark.parametrize(
    "launch",
    [
        {"precision": "bf16-mixed", "compile": True, "gradient_checkpointing": True, "model_size": "tiny"},
        {
            "precision": "32",
            "model_size": "tiny",
            "read": {"loader_workers": 2},
        },  # decoding workers, pinned memory
        {"precision": "bf16-mixed", "compile": True, "model_size": "tiny-conv"},
        {
            "precision": "bf16-mixed",
            "strategy": "fsdp",
            "ema_decay": 0.0,
            "gradient_checkpointing": True,
            "model_size": "tiny",
        },
    ],
    ids=["bf16-compile-checkpointing", "tf32", "conv-bf16-compile", "fsdp"],
)
def test_training_on_gpu_samples_registers_and_serves_in_bf16(
    ingested, captions, tmp_path, monkeypatch, launch
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    launch = dict(launch)
    read = launch.pop("read", {})
    cfg = TrainConfig.model_validate(
        {
            "train": {"steps": 4, "batch_size": 4, "accelerator": "gpu", "sample_every_n_steps": 2,
                      "sample_prompts": ["a red circle moves left"], **launch},
            "sample": {"steps": 2},
            "read": read,
        }
    )  # fmt: skip
    result = train.run(cfg, ingested, captions, tmp_path / "t2v", tmp_path / "reg.json", tmp_path / "ckpt")
    reg = result.registration
    assert result.final_step == 4 and np.isfinite(reg.final_loss)
    setup(cfg.registry)
    pipeline = load_pipeline(reg.model_name, reg.version).to("cuda", autocast=torch.bfloat16)  # profile gpu
    x = pipeline.sample(["a red circle moves left"], [0], steps=2)
    assert x.device.type == "cuda" and torch.isfinite(x).all()
    assert pipeline.generate(["a red circle moves left"], [0], steps=2).shape == (1, 16, 32, 32, 3)
