"""The one conversion between stored frames (uint8, channels last) and what networks see (float, [-1, 1])."""

from __future__ import annotations

import numpy as np
import torch


def to_model(frames: np.ndarray) -> torch.Tensor:
    """(..., H, W, 3) uint8 -> (..., 3, H, W) float32 in [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(frames))
    return x.movedim(-1, -3).float() / 127.5 - 1


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(..., 3, H, W) float in about [-1, 1] -> (..., H, W, 3) uint8, clamped and rounded."""
    frames = ((x.detach().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return frames.movedim(-3, -1).cpu().numpy()
