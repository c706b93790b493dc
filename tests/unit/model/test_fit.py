from __future__ import annotations

from reelforge.config import Bucket, ClipParams, TrainConfig, TrainParams
from reelforge.model.fit import fit_problems
from tests.tiny_models import save_tiny_vae


def test_frames_that_do_not_fit_a_video_autoencoder_are_named_with_the_fix(tmp_path):
    vae = str(save_tiny_vae(tmp_path / "vae", video=True))
    clip = ClipParams(buckets=[Bucket(width=32, height=32, num_frames=16)])
    (problem,) = fit_problems(TrainConfig(train=TrainParams(vae_path=vae), clip=clip))
    assert (
        "clip.buckets 32x32x16: num_frames 16 does not fit the autoencoder's temporal compression 4"
        in problem
    )
    assert "e.g. 13 or 17" in problem
    fits = ClipParams(
        buckets=[Bucket(width=32, height=32, num_frames=17), Bucket(width=64, height=32, num_frames=9)]
    )
    assert fit_problems(TrainConfig(train=TrainParams(vae_path=vae), clip=fits)) == []  # 32 divides 32, 64


def test_a_bucket_the_autoencoder_cannot_take_is_named_with_the_fix(tmp_path):
    vae = str(save_tiny_vae(tmp_path / "vae", video=True))
    clip = ClipParams(
        buckets=[Bucket(width=32, height=32, num_frames=17), Bucket(width=40, height=32, num_frames=17)]
    )
    (problem,) = fit_problems(TrainConfig(train=TrainParams(vae_path=vae), clip=clip))
    assert problem.startswith("clip.buckets 40x32x17: width and height must be divisible by")
    assert "use e.g. 32x32" in problem


def test_an_unreadable_pretrained_dir_is_named(tmp_path):
    (problem,) = fit_problems(TrainConfig(train=TrainParams(pretrained_path=str(tmp_path / "none"))))
    assert problem.startswith("train.pretrained_path / train.vae_path: cannot read the model config")
