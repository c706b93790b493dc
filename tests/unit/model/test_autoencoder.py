from __future__ import annotations

import torch

from reelforge.model.autoencoder import Autoencoder
from tests.tiny_models import save_tiny_vae


def test_autoencoders_load_from_a_local_dir_and_map_clips_to_latents(tmp_path):
    image = Autoencoder(save_tiny_vae(tmp_path / "kl"))
    z = image.encode(torch.rand(2, 4, 3, 32, 32) * 2 - 1)
    assert z.shape == (2, 4, 4, 16, 16)  # per frame, 2x down, 4 channels
    assert image.decode(z).shape == (2, 4, 3, 32, 32)
    video = Autoencoder(save_tiny_vae(tmp_path / "cog", video=True))
    z = video.encode(torch.rand(1, 9, 3, 32, 32) * 2 - 1)
    assert z.shape == (1, 3, 4, 8, 8) and video.compression.latent_frames(9) == 3
    assert video.decode(z).shape == (1, 9, 3, 32, 32)
