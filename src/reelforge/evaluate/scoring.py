"""Scores of a set of videos: against their prompts (CLIP-style, caption read-back, the demo's pixel check)
and against the real validation clips (Fréchet distances), each with a bootstrap interval.

Metrics here use the pipeline's own reference encoder (the frozen captioner), so they are named `*_ref` and
logged with that encoder's sha256 — never under the names of the standard I3D-FVD or CLIP-score, which
appear only when local I3D / CLIP weights are given.

- fvd_ref: Fréchet distance between reference-encoder features of generated clips and of the real
  validation clips (biased by sample count: compare only at equal n).
- clip_score_ref: 100 * max(cos(video, prompt), 0) in the reference encoder's joint space.
- caption_match_ref: share of each prompt's informative words (not shared by every prompt) that the
  reference captioner reads back from the generated video: does the video show what was asked?
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from reelforge.caption.captioner import CAPTIONER_DIR, ReferenceEncoder, frames_to_tensor, load_captioner
from reelforge.config import EvaluateParams
from reelforge.evaluate.extractors import CLIPScorer, I3DFeatures
from reelforge.evaluate.metrics import (
    bootstrap_fd,
    bootstrap_mean,
    caption_match,
    clip_style_score,
    feature_stats,
    frechet_distance,
)
from reelforge.evaluate.pixelcheck import GroundTruth, check_videos
from reelforge.model.text import decode, encode


@dataclass
class Extractors:
    """The reference encoder (always) and the standard I3D / CLIP models (when local weights are given)."""

    ref: ReferenceEncoder
    i3d: I3DFeatures | None
    clip: CLIPScorer | None

    @classmethod
    def load(cls, cfg: EvaluateParams, captions_dir: str | Path) -> Extractors:
        i3d_path = os.environ.get("REELFORGE_I3D_PATH") or cfg.i3d_path
        clip_path = os.environ.get("REELFORGE_CLIP_PATH") or cfg.clip_path
        return cls(
            load_captioner(Path(captions_dir) / CAPTIONER_DIR),
            I3DFeatures(i3d_path) if i3d_path else None,
            CLIPScorer(clip_path) if clip_path else None,
        )

    def features(self, videos: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, T, H, W, 3) uint8 -> reference features (N, D) and joint-space embeddings (N, D)."""
        with torch.no_grad():
            x = frames_to_tensor(videos)
            return self.ref.model.video_features(x), self.ref.model.video_embedding(x)


@dataclass
class RealSet:
    """Features of the real validation clips, per extractor, computed once per evaluation run."""

    ref: torch.Tensor
    i3d: torch.Tensor | None

    @classmethod
    def of(cls, extractors: Extractors, videos: np.ndarray) -> RealSet:
        return cls(extractors.features(videos)[0], extractors.i3d(videos) if extractors.i3d else None)

    def floors(self) -> dict[str, float | None]:
        """Real-vs-real floor of each Fréchet distance: two halves of the real set (at half the count)."""
        return {
            "fvd_ref": split_half(self.ref),
            **({"fvd": split_half(self.i3d)} if self.i3d is not None else {}),
        }


def split_half(features: torch.Tensor) -> float | None:
    half = len(features) // 2
    if half < 2:
        return None
    return frechet_distance(*feature_stats(features[:half]), *feature_stats(features[half:]))


def _fd_scores(name: str, real: torch.Tensor, generated: torch.Tensor, bootstrap: int, seed: int) -> dict:
    scores = {name: frechet_distance(*feature_stats(real), *feature_stats(generated))}
    if bootstrap:
        scores[f"{name}_ci_low"], scores[f"{name}_ci_high"] = bootstrap_fd(real, generated, bootstrap, seed)
    return scores


def _mean_scores(
    name: str, per_clip: torch.Tensor | np.ndarray, bootstrap: int, seed: int
) -> dict[str, float]:
    scores = {name: float(per_clip.mean())}
    if bootstrap:
        scores[f"{name}_ci_low"], scores[f"{name}_ci_high"] = bootstrap_mean(per_clip, bootstrap, seed)
    return scores


def score_videos(
    ex: Extractors,
    videos: np.ndarray,
    prompts: list[str],
    real: RealSet | None,
    bootstrap: int = 0,
    seed: int = 0,
) -> dict[str, float]:
    """Metrics of (N, T, H, W, 3) videos against their prompts and, when given, the real set."""
    ref = ex.ref
    feats, emb = ex.features(videos)
    with torch.no_grad():
        text = ref.model.text_embedding(encode(ref.tokenizer, prompts, ref.model.cfg.max_tokens))
        read_back = [decode(ref.tokenizer, s) for s in ref.model.generate(frames_to_tensor(videos))]
    scores = _mean_scores("clip_score_ref", clip_style_score(emb, text), bootstrap, seed)
    scores["caption_match_ref"] = caption_match(read_back, prompts)
    if ex.clip is not None:
        scores |= _mean_scores("clip_score", ex.clip(videos, prompts), bootstrap, seed)
    if real is not None:
        scores |= _fd_scores("fvd_ref", real.ref, feats, bootstrap, seed)
        if ex.i3d is not None:
            scores |= _fd_scores("fvd", real.i3d, ex.i3d(videos), bootstrap, seed)
    return scores


@dataclass
class PixelCheck:
    """The demo world's ground truth read back from pixels (`reelforge.evaluate.pixelcheck`), with how well
    it reads the real validation clips (how far to trust it on generated ones)."""

    truth: GroundTruth
    real_accuracy: dict[str, float]  # `pixel_<check>_acc`, with 95% intervals (`*_ci_low`, `*_ci_high`)
    bootstrap: int
    seed: int

    @classmethod
    def of(
        cls, cfg: EvaluateParams, truth: GroundTruth, manifest: pd.DataFrame, val_ids: list[str],
        real_videos: np.ndarray,
    ) -> PixelCheck:  # fmt: skip
        if truth.palette is None:
            raise ValueError("the ground-truth file has no palette: rewrite it with `reelforge demo-data`")
        labels = truth.label_clips(manifest)
        keep = [i for i, c in enumerate(val_ids) if c in labels]
        check = cls(truth, {}, cfg.bootstrap, cfg.seed)
        check.real_accuracy = check._scores(real_videos[keep], [labels[val_ids[i]] for i in keep])
        return check

    def scores(self, videos: np.ndarray, prompts: list[str]) -> dict[str, float]:
        """`pixel_<check>_acc` (and `pixel_all_acc`) on the videos whose prompts it can parse."""
        wanted = [self.truth.parse_prompt(p) for p in prompts]
        keep = [i for i, w in enumerate(wanted) if w is not None]
        return self._scores(videos[keep], [wanted[i] for i in keep]) if keep else {}

    def _scores(self, videos: np.ndarray, wanted: list[dict[str, str]]) -> dict[str, float]:
        right = check_videos(videos, wanted, self.truth.palette)
        scores = {}
        for name, r in right.items():
            scores |= _mean_scores(f"pixel_{name}_acc", r.astype(float), self.bootstrap, self.seed)
        return scores
