from __future__ import annotations

from reelforge.config import ClipParams, TrainConfig, TrainParams
from reelforge.model.fit import fit_problems
from tests.tiny_models import save_tiny_vae


def test_frames_that_do_not_fit_a_video_autoencoder_are_named_with_the_fix(tmp_path):
    vae = str(save_tiny_vae(tmp_path / "vae", video=True))
    cfg = TrainConfig(train=TrainParams(vae_path=vae), clip=ClipParams(num_frames=16, size=32))
    (problem,) = fit_problems(cfg)
    assert "clip.num_frames 16 does not fit the autoencoder's temporal compression 4" in problem
    assert "e.g. 13 or 17" in problem
    fits = TrainConfig(train=TrainParams(vae_path=vae), clip=ClipParams(num_frames=17, size=32))
    assert fit_problems(fits) == []  # 4x spatial x patch 4 = 16 divides 32


def test_an_unreadable_pretrained_dir_is_named(tmp_path):
    (problem,) = fit_problems(TrainConfig(train=TrainParams(pretrained_path=str(tmp_path / "none"))))
    assert problem.startswith("train.pretrained_path / train.vae_path: cannot read the model config")
