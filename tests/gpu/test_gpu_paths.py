"""The GPU paths the docs promise, run for real on a CUDA device (skipped without one): training with
accelerator=gpu in bf16-mixed, with compile and gradient checkpointing, under FSDP, and fed by DataLoader
workers into pinned memory; sampling during training; a registered version loaded the way a
`serve.profile: gpu` replica loads it, and served by one on Ray Serve; the latent cache encoded by Ray Data
actors that each hold a GPU."""

from __future__ import annotations

import json
import statistics
import time

import httpx
import numpy as np
import pytest
import torch

from reelforge.caption import stage as caption
from reelforge.config import CaptionConfig, CaptionParams, LatentParams, Params, ServeConfig, TrainConfig
from reelforge.data.store import StoredClips
from reelforge.data.video import decode_bytes
from reelforge.files import dir_sha256
from reelforge.registry.models import load_pipeline
from reelforge.registry.tracking import setup
from reelforge.train import stage as train
from reelforge.train.data import StreamedPixels
from reelforge.train.latents import INDEX, cache_folder, cached_latents
from serving.deploy import deploy, stop
from tests.tiny_models import register_tiny_champion, save_tiny_vae

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


def test_latent_cache_is_encoded_by_ray_data_actors_holding_a_gpu(ingested, tmp_path):
    vae = save_tiny_vae(tmp_path / "vae")
    sha, pixels = dir_sha256(vae), StreamedPixels(StoredClips(ingested))
    local = cached_latents(str(vae), sha, pixels, "k", tmp_path / "cpu", LatentParams(chunk_clips=4))
    on_gpu = LatentParams(chunk_clips=4, executor="ray", actors=1, gpus_per_actor=1)
    gpu = cached_latents(str(vae), sha, pixels, "k", tmp_path / "gpu", on_gpu)
    index = json.loads((cache_folder(tmp_path / "gpu", sha, "k") / INDEX).read_text())
    assert index["devices"] == ["cuda"] and index["executor"] == "ray"
    every = list(range(len(pixels)))
    assert torch.allclose(gpu[every], local[every], atol=2e-3), (gpu[every] - local[every]).abs().max()


def test_the_gpu_profile_serves_from_a_replica_on_the_gpu(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for var in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS"):
        monkeypatch.delenv(var, raising=False)
    params = Params().model_dump()
    params["serve"].update(profile="gpu", port=8141, ray_port=6397, rate_limit_per_minute=0)
    cfg = Params(**params).stage(ServeConfig)
    prompt = "a red circle moves left over a black background"
    version = register_tiny_champion(tmp_path, cfg.registry, [prompt])
    url = f"http://127.0.0.1:{cfg.serve.port}"
    try:
        deploy(cfg, tmp_path)
        info = httpx.get(f"{url}/v1/model", timeout=30).json()
        assert info["version"] == version and info["device"] == "cuda:0" and info["autocast"] == "bfloat16"
        seconds = []
        for seed in range(6):
            start = time.perf_counter()
            r = httpx.post(f"{url}/v1/generate", json={"prompt": prompt, "seed": seed}, timeout=120)
            seconds.append(time.perf_counter() - start)
            assert r.status_code == 200, r.text
            assert decode_bytes(r.content).shape == (8, 32, 32, 3)
        median = statistics.median(seconds[1:])
        print(f"gpu replica /v1/generate: median {median:.3f} s, first {seconds[0]:.3f} s")
    finally:
        stop(cfg)
