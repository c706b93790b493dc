"""Tiny random stand-ins for pretrained weights, saved the way the real files are, so tests exercise the
real loading code (torch.jit.load) without any download."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


class TinyI3D(nn.Module):
    """Same call signature and output as the Kinetics-400 I3D TorchScript used for FVD."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 8, kernel_size=3, stride=(2, 8, 8))
        self.fc = nn.Linear(8, 400)

    def forward(
        self, x: torch.Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False
    ) -> torch.Tensor:
        assert x.shape[1] == 3 and x.shape[-1] == 224 and x.shape[-2] == 224
        h = torch.relu(self.conv(x)).mean(dim=(2, 3, 4))  # (B, 8)
        logits = self.fc(h)  # (B, 400)
        return logits if return_features else torch.softmax(logits, dim=-1)


def save_tiny_i3d(path: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    torch.jit.script(TinyI3D()).save(str(path))
    return path
