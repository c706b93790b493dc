from __future__ import annotations

import numpy as np
import torch

from reelforge.model.pixels import to_model, to_uint8


def test_uint8_frames_round_trip_through_the_model_range():
    frames = np.random.default_rng(0).integers(0, 256, (2, 3, 5, 7, 3), dtype=np.uint8)  # (B, T, H, W, 3)
    x = to_model(frames)
    assert x.shape == (2, 3, 3, 5, 7) and x.dtype == torch.float32  # (B, T, 3, H, W)
    assert x.min() >= -1 and x.max() <= 1 and float(to_model(np.full((1, 1, 3), 255, np.uint8)).max()) == 1.0
    assert np.array_equal(to_uint8(x), frames)


def test_out_of_range_values_are_clamped():
    x = (
        torch.tensor([-3.0, -1.0, 0.0, 1.0, 7.0]).view(1, 5, 1, 1).expand(3, 5, 1, 1).movedim(0, 1)
    )  # (5,3,1,1)
    assert to_uint8(x)[:, 0, 0, 0].tolist() == [0, 0, 128, 255, 255]
