"""Attribute probe for the built-in demo data: does a generated video show the prompted colour, shape,
direction and background?

A small video classifier is trained on real clips, labelled from the demo's ground truth (evaluation may
read it; the pipeline's training stages never do). Its accuracy on the real validation clips says how far
to trust it; its accuracy on generated videos, next to chance, is the number a person looking at the
samples would agree with.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from reelforge.captioner import VideoEncoder, frames_to_tensor
from reelforge.demo_data import BACKGROUNDS, COLORS, DIRECTIONS, SHAPES

ATTRIBUTES: dict[str, list[str]] = {
    "color": list(COLORS),
    "shape": list(SHAPES),
    "direction": list(DIRECTIONS),
    "background": list(BACKGROUNDS),
}
PROMPT = re.compile(r"^a (\w+) (\w+) moves (\w+) over a (\w+) background$")


def parse_prompt(prompt: str) -> dict[str, int] | None:
    """Attribute indices of a demo-style prompt, or None when it is not one."""
    m = PROMPT.match(prompt.strip().lower())
    if not m or any(v not in ATTRIBUTES[a] for a, v in zip(ATTRIBUTES, m.groups(), strict=True)):
        return None
    return {a: ATTRIBUTES[a].index(v) for a, v in zip(ATTRIBUTES, m.groups(), strict=True)}


def label_clips(manifest: pd.DataFrame, ground_truth: str | Path) -> dict[str, dict[str, int]]:
    """clip_id -> attribute indices of the ground-truth shot the clip lies in."""
    videos = {v["file"]: v["shots"] for v in json.loads(Path(ground_truth).read_text())["videos"]}
    labels = {}
    for row in manifest.itertuples():
        for shot in videos.get(row.source_path, []):
            if shot["start_s"] - 1e-3 <= row.start_s and row.end_s <= shot["end_s"] + 1e-3:
                labels[row.clip_id] = {a: ATTRIBUTES[a].index(shot[a]) for a in ATTRIBUTES}
    return labels


class AttributeProbe(nn.Module):
    def __init__(self, dim: int = 64):
        super().__init__()
        self.encoder = VideoEncoder(dim)
        self.heads = nn.ModuleDict({a: nn.Linear(dim, len(v)) for a, v in ATTRIBUTES.items()})

    def forward(self, video: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.encoder(video)  # (B, dim)
        return {a: head(h) for a, head in self.heads.items()}  # logits per attribute


def _targets(labels: list[dict[str, int]]) -> dict[str, torch.Tensor]:
    return {a: torch.tensor([lab[a] for lab in labels]) for a in ATTRIBUTES}


def train_probe(
    videos: np.ndarray, labels: list[dict[str, int]], steps: int = 300, seed: int = 0
) -> AttributeProbe:
    torch.manual_seed(seed)
    x, y = frames_to_tensor(videos), _targets(labels)
    probe = AttributeProbe()
    opt = torch.optim.AdamW(probe.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randperm(len(x), generator=gen)[:32]
        logits = probe(x[idx])
        loss = sum(F.cross_entropy(logits[a], y[a][idx]) for a in ATTRIBUTES)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return probe.eval()


@torch.no_grad()
def accuracy(probe: AttributeProbe, videos: np.ndarray, labels: list[dict[str, int]]) -> dict[str, float]:
    """Per-attribute accuracy, plus `all` (every attribute right)."""
    logits, y = probe(frames_to_tensor(videos)), _targets(labels)
    right = {a: logits[a].argmax(-1) == y[a] for a in ATTRIBUTES}
    out = {a: float(r.float().mean()) for a, r in right.items()}
    out["all"] = float(torch.stack(list(right.values())).all(0).float().mean())
    return out


def chance() -> dict[str, float]:
    out = {a: 1.0 / len(v) for a, v in ATTRIBUTES.items()}
    out["all"] = float(np.prod(list(out.values())))
    return out
