"""Train stage -> MLflow (SQLite) registry -> load through MLflow -> generate, on real clips."""

from __future__ import annotations

import json

import numpy as np
import pytest

from reelforge.caption import stage as caption
from reelforge.config import CaptionConfig, CaptionParams, TrainConfig
from reelforge.files import dir_sha256
from reelforge.model.pipeline import TextToVideoPipeline
from reelforge.registry.models import Registration, load_pipeline
from reelforge.registry.tracking import setup
from reelforge.train import stage as train
from tests.tiny_models import save_tiny_clip, save_tiny_vae

pytestmark = pytest.mark.slow


def test_trained_version_loads_from_registry_and_generates(ingested, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the embedded MLflow store lives in the project (here: tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    caption.run(
        CaptionConfig(caption=CaptionParams(steps=5)),
        ingested,
        tmp_path / "captions",
        tmp_path / "caption.json",
    )
    params = TrainConfig.model_validate({"train": {"steps": 3, "batch_size": 4, "log_every_n_steps": 1}})
    args = (params, ingested, tmp_path / "captions", tmp_path / "t2v", tmp_path / "registration.json")
    result = train.run(*args, tmp_path / "ckpt")
    reg = result.registration
    assert reg.version == "1" and np.isfinite(reg.final_loss) and result.final_step == 3
    assert Registration.load(tmp_path / "registration.json") == reg
    # A rerun whose checkpoint is already at train.steps (DVC reruns the stage when its code changes):
    # no step runs, and the same weights register again with the run's last loss.
    again = train.run(*args, tmp_path / "ckpt")
    assert (again.final_step, again.resumed_from_step) == (3, 3)
    assert again.registration.version == "2" and again.registration.final_loss == reg.final_loss
    assert again.registration.run_id == reg.run_id
    assert reg.tracking_uri == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert (tmp_path / "mlartifacts").is_dir()  # artifacts beside the store, not in a relative ./mlruns

    setup(params.registry)
    generator = load_pipeline(reg.model_name, reg.version)
    videos = generator.generate(["a red circle moves left", "a blue square moves up"], seeds=[0, 1], steps=2)
    assert videos.shape == (2, 16, 32, 32, 3) and videos.dtype == np.uint8
    again = generator.generate(["a blue square moves up"], seeds=[1], steps=2)
    # A video depends on its seed, not on its batch (up to float rounding in batched matmuls).
    assert np.abs(again[0].astype(int) - videos[1].astype(int)).max() <= 1


def test_latent_space_with_a_frozen_pretrained_text_encoder(ingested, tmp_path, monkeypatch):
    """train.vae_path + train.text_encoder_path: clips encoded once into the latent cache, the model trained
    on latents, and the saved model (autoencoder and encoder included) generates pixels on its own."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    caption.run(
        CaptionConfig(caption=CaptionParams(steps=5)),
        ingested,
        tmp_path / "captions",
        tmp_path / "caption.json",
    )
    vae, clip_dir = save_tiny_vae(tmp_path / "vae"), save_tiny_clip(tmp_path / "clip")
    params = TrainConfig.model_validate(
        {
            "train": {"steps": 2, "batch_size": 4, "vae_path": str(vae), "text_encoder_path": str(clip_dir)},
            # 2x downsampling x the conv backbone's 8 = 16: the 24x32 bucket is refused (tests/unit/model/
            # test_fit.py); the fixture's clips are all square anyway.
            "clip": {"buckets": [{"width": 32, "height": 32, "num_frames": 16}]},
            "sample": {"steps": 2},
        }
    )
    cache = tmp_path / "latents"
    args = (params, ingested, tmp_path / "captions", tmp_path / "t2v", tmp_path / "reg.json")
    train.run(*args, tmp_path / "ckpt", cache)
    folders = sorted(p for p in cache.iterdir() if p.is_dir())
    assert len(folders) == 2  # train and val splits, each keyed by the autoencoder's weights and its clips
    assert all(f.name.startswith(f"latents-{dir_sha256(vae)[:16]}-") for f in folders)
    index = json.loads((folders[0] / "index.json").read_text())
    chunk = np.load(folders[0] / index["chunks"][0])
    assert chunk.shape[1:] == (16, 4, 16, 16) and index["shapes"] == [[16, 4, 16, 16]]  # (T, c, H/2, W/2)
    files = sorted(cache.glob("*/*.npy"))
    mtimes = [p.stat().st_mtime_ns for p in files]
    train.run(*args, tmp_path / "ckpt2", cache)
    assert [p.stat().st_mtime_ns for p in files] == mtimes  # the second run read the cache
    generator = TextToVideoPipeline.from_pretrained(tmp_path / "t2v")
    assert generator.model.cfg.pretrained_text_encoder and generator.autoencoder.vae is not None
    videos = generator.generate(["a red circle moves left"], seeds=[0], steps=2)
    assert videos.shape == (1, 16, 32, 32, 3) and videos.dtype == np.uint8
