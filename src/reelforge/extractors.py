"""Standard feature extractors loaded from local files (no hub downloads): I3D for FVD.

I3D is the Kinetics-400 TorchScript model the common PyTorch FVD implementations load
(`detector(x, rescale=False, resize=False, return_features=True)` -> 400-d logits); its preprocessing is
the standard one: frames resized bilinear to 224x224, values in [-1, 1], at least 10 frames (16 standard).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

I3D_MIN_FRAMES = 10
I3D_SIZE = 224


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class I3DFeatures:
    """uint8 videos (B, T, H, W, 3) -> I3D Kinetics-400 logits (B, 400), float64."""

    def __init__(self, path: str | Path, batch_size: int = 8):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"I3D TorchScript file {path} not found (evaluate.i3d_path / REELFORGE_I3D_PATH)"
            )
        self.model = torch.jit.load(str(path), map_location="cpu").eval()
        self.sha256 = file_sha256(path)
        self.name = f"i3d-k400-torchscript-{self.sha256[:12]}"
        self.batch_size = batch_size

    @staticmethod
    def preprocess(videos: np.ndarray) -> torch.Tensor:
        """(B, T, H, W, 3) uint8 -> (B, 3, T, 224, 224) float in [-1, 1], bilinear resize per frame."""
        b, t, h, w, _ = videos.shape
        if t < I3D_MIN_FRAMES:
            raise ValueError(
                f"I3D needs at least {I3D_MIN_FRAMES} frames per clip, got {t}; "
                "set clip.num_frames >= 10 (16 is the standard FVD protocol)"
            )
        x = torch.from_numpy(videos).float().div(127.5).sub(1.0)  # (B, T, H, W, 3)
        x = x.permute(0, 1, 4, 2, 3).reshape(b * t, 3, h, w)
        x = F.interpolate(x, size=(I3D_SIZE, I3D_SIZE), mode="bilinear", align_corners=False)
        return x.reshape(b, t, 3, I3D_SIZE, I3D_SIZE).permute(0, 2, 1, 3, 4)  # (B, 3, T, 224, 224)

    @torch.no_grad()
    def __call__(self, videos: np.ndarray) -> torch.Tensor:
        out = [
            self.model(
                self.preprocess(videos[i : i + self.batch_size]),
                rescale=False,
                resize=False,
                return_features=True,
            ).double()
            for i in range(0, len(videos), self.batch_size)
        ]
        return torch.cat(out)
