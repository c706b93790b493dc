"""Attribute probe for the built-in demo data: does a generated video show the prompted colour, shape,
direction and background?

A small video classifier is trained on real clips, labelled from the demo's ground-truth file (evaluation
may read it; the pipeline's training stages never do). The attributes and their vocabulary come from that
file, not from the code that made the demo. Its accuracy on the real validation clips says how far to trust
it; its accuracy on generated videos, next to chance, is the number a person looking at the samples would
agree with.
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

from reelforge.caption.captioner import VideoEncoder, frames_to_tensor

# Demo prompts read "a <color> <shape> moves <direction> over a <background> background".
PROMPT = re.compile(r"^a (\w+) (\w+) moves (\w+) over a (\w+) background$")
PROMPT_ATTRIBUTES = ("color", "shape", "direction", "background")

Attributes = dict[str, list[str]]  # attribute -> its values, in class order


class GroundTruth:
    """The demo's ground-truth file: every shot's span and attributes, and the attribute vocabulary."""

    def __init__(self, path: str | Path) -> None:
        truth = json.loads(Path(path).read_text())
        self.videos: dict[str, list[dict]] = {v["file"]: v["shots"] for v in truth["videos"]}
        shots = [s for v in self.videos.values() for s in v]
        # Files written before the vocabulary was recorded: the values their shots use, sorted.
        self.attributes: Attributes = truth.get("attributes") or {
            a: sorted({s[a] for s in shots}) for a in PROMPT_ATTRIBUTES
        }

    def label_clips(self, manifest: pd.DataFrame) -> dict[str, dict[str, int]]:
        """clip_id -> attribute indices of the ground-truth shot the clip lies in."""
        labels = {}
        for row in manifest.itertuples():
            for shot in self.videos.get(row.source_path, []):
                if shot["start_s"] - 1e-3 <= row.start_s and row.end_s <= shot["end_s"] + 1e-3:
                    labels[row.clip_id] = {a: v.index(shot[a]) for a, v in self.attributes.items()}
        return labels

    def parse_prompt(self, prompt: str) -> dict[str, int] | None:
        """Attribute indices of a demo-style prompt, or None when it is not one."""
        m = PROMPT.match(prompt.strip().lower())
        if not m:
            return None
        values = dict(zip(PROMPT_ATTRIBUTES, m.groups(), strict=True))
        if any(values[a] not in self.attributes.get(a, ()) for a in PROMPT_ATTRIBUTES):
            return None
        return {a: self.attributes[a].index(values[a]) for a in self.attributes}


class AttributeProbe(nn.Module):
    def __init__(self, attributes: Attributes, dim: int = 64) -> None:
        super().__init__()
        self.attributes = attributes
        self.encoder = VideoEncoder(dim)
        self.heads = nn.ModuleDict({a: nn.Linear(dim, len(v)) for a, v in attributes.items()})

    def forward(self, video: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.encoder(video)  # (B, dim)
        return {a: head(h) for a, head in self.heads.items()}  # logits per attribute


def _targets(labels: list[dict[str, int]], attributes: Attributes) -> dict[str, torch.Tensor]:
    return {a: torch.tensor([lab[a] for lab in labels]) for a in attributes}


def train_probe(
    videos: np.ndarray,
    labels: list[dict[str, int]],
    attributes: Attributes,
    steps: int,
    lr: float,
    batch_size: int,
    seed: int,
) -> AttributeProbe:
    torch.manual_seed(seed)
    x, y = frames_to_tensor(videos), _targets(labels, attributes)
    probe = AttributeProbe(attributes)
    opt = torch.optim.AdamW(probe.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randperm(len(x), generator=gen)[:batch_size]
        logits = probe(x[idx])
        loss = sum(F.cross_entropy(logits[a], y[a][idx]) for a in attributes)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return probe.eval()


@torch.no_grad()
def accuracy(probe: AttributeProbe, videos: np.ndarray, labels: list[dict[str, int]]) -> dict[str, float]:
    """Per-attribute accuracy, plus `all` (every attribute right)."""
    logits, y = probe(frames_to_tensor(videos)), _targets(labels, probe.attributes)
    right = {a: logits[a].argmax(-1) == y[a] for a in probe.attributes}
    out = {a: float(r.float().mean()) for a, r in right.items()}
    out["all"] = float(torch.stack(list(right.values())).all(0).float().mean())
    return out


def chance(attributes: Attributes) -> dict[str, float]:
    out = {a: 1.0 / len(v) for a, v in attributes.items()}
    out["all"] = float(np.prod(list(out.values())))
    return out
