from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from reelforge.config import ConfigError, TrainParams, load_params
from tests.conftest import default_params


def test_unknown_key_is_named_with_fix(tmp_path):
    f = tmp_path / "params.yaml"
    f.write_text("train:\n  stepz: 3\n")
    with pytest.raises(ConfigError, match=r"train\.stepz.*remove it or fix its spelling"):
        load_params(f)


def test_all_problems_reported_at_once(tmp_path):
    f = tmp_path / "params.yaml"
    f.write_text("train:\n  steps: -1\n  model_size: huge\nclip:\n  fps: 0\n")
    with pytest.raises(ConfigError) as err:
        load_params(f)
    assert "clip.fps" in str(err.value) and "train" in str(err.value)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ("train:\n  accelerator: cpu\n  precision: bf16-mixed\n", "bf16-mixed needs a GPU"),
        (
            "clip:\n  buckets: [{{width: 32, height: 32, num_frames: 8}}]\n"
            "evaluate:\n  i3d_path: {tmp}/i3d.pt\n",
            "I3D needs at least 10",
        ),
    ],
)
def test_impossible_combinations_fail_at_startup_with_the_fix(tmp_path, params, message):
    (tmp_path / "i3d.pt").write_bytes(b"an I3D file is there")
    f = tmp_path / "params.yaml"
    f.write_text(params.format(tmp=tmp_path))
    with pytest.raises(ConfigError, match=message):
        load_params(f)


def test_overrides_are_typed_and_validated(tmp_path):
    f = tmp_path / "params.yaml"
    f.write_text("train:\n  steps: 10\n")
    assert load_params(f, ["train.steps=3", "sample.guidance=1.5"]).train.steps == 3
    with pytest.raises(ConfigError, match="section.key=value"):
        load_params(f, ["steps=3"])
    with pytest.raises(ConfigError, match="train.steps"):
        load_params(f, ["train.steps=zero"])


def _params(*overrides: str):
    return load_params(default_params(Path(tempfile.mkdtemp())), list(overrides))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["train.strategy=fsdp"], "train.strategy 'fsdp' needs train.accelerator 'gpu'"),
        (["train.strategy=ddp", "train.devices=3"], "train.batch_size 16 must be divisible by devices"),
        (["train.devices=2"], "set train.strategy to 'ddp' or 'fsdp'"),
        (
            ["train.accelerator=gpu", "train.strategy=fsdp", "train.ema_decay=0", "train.devices=2"],
            "set train.sample_prompts to []",
        ),
        (["train.precision=bf16-mixed"], "train.precision must be '32' on accelerator 'cpu'"),
        (
            ["clip.buckets=[{width: 32, height: 30, num_frames: 16}]"],
            "clip.buckets 32x30x16: width and height must be divisible by 8 (the patch size, x 2 per conv",
        ),
        (
            ["clip.buckets=" + json.dumps([{"width": 32, "height": 32, "num_frames": 16}] * 2)],
            "clip.buckets: ['32x32x16', '32x32x16'] has repeated entries",
        ),
        (["train.model_size=huge"], "train.model_size 'huge' is unknown"),
        (
            ["train.model_size=tiny-conv-prior", "scheduler.num_train_timesteps=500"],
            "the text prior of train.model_size 'tiny-conv-prior' weighs in by sigma = t / 1000; use 1000",
        ),
    ],
)
def test_bad_training_configs_fail_at_start_up_naming_the_key_and_fix(overrides, message):
    with pytest.raises(ConfigError, match="train|clip") as err:
        _params(*overrides)
    assert message in str(err.value)


def test_every_problem_of_a_model_size_is_reported_at_once():
    """One load names all of them, so a user fixes the params in one go; latent space keeps the checks that
    are not about pixel patches."""
    with pytest.raises(ConfigError) as err:
        _params(
            "train.model_size=tiny-conv-prior", "scheduler.num_train_timesteps=500",
            "train.gradient_checkpointing=true", "clip.buckets=[{width: 32, height: 30, num_frames: 16}]",
        )  # fmt: skip
    for message in ("gradient_checkpointing", "use 1000", "clip.buckets 32x30x16"):
        assert message in str(err.value)
    with pytest.raises(ConfigError, match="use 1000"):
        _params("train.model_size=tiny-conv-prior", "scheduler.num_train_timesteps=500", "train.vae_path=vae")


def test_micro_batch_splits_the_global_batch():
    cfg = TrainParams(batch_size=16, devices=2, strategy="ddp", accumulate_grad_batches=2)
    assert cfg.micro_batch == 4 and cfg.world_size == 2
