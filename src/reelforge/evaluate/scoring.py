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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from reelforge.caption.captioner import CAPTIONER_DIR, ReferenceEncoder, frames_to_tensor, load_captioner
from reelforge.config import EvaluateParams
from reelforge.evaluate.extractors import DEFAULT_I3D_PATH, CLIPScorer, I3DFeatures
from reelforge.evaluate.metrics import (
    bootstrap_fd,
    bootstrap_mean,
    caption_shares,
    clip_style_score,
    frechet_distance_features,
)
from reelforge.evaluate.pixelcheck import GroundTruth, check_videos
from reelforge.model.text import decode, encode

# (N, T, H, W, 3) uint8 videos: one array, or batches of them (a stream from the store), in clip order.
Videos = np.ndarray | Iterable[np.ndarray]


def batches_of(videos: Videos) -> Iterable[np.ndarray]:
    return [videos] if isinstance(videos, np.ndarray) else videos


@dataclass
class Extractors:
    """The reference encoder (always) and the standard I3D / CLIP models (when local weights are given)."""

    ref: ReferenceEncoder
    i3d: I3DFeatures | None
    clip: CLIPScorer | None

    @classmethod
    def load(cls, cfg: EvaluateParams, captions_dir: str | Path) -> Extractors:
        i3d_path = i3d_file(cfg)
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


def i3d_file(cfg: EvaluateParams) -> str | None:
    """The I3D to use: REELFORGE_I3D_PATH, else evaluate.i3d_path. The default place (where `make i3d` writes)
    is optional, and its absence is said; any other path must exist (I3DFeatures raises)."""
    path = os.environ.get("REELFORGE_I3D_PATH") or cfg.i3d_path
    if path == DEFAULT_I3D_PATH and not Path(path).is_file():
        print(f"standard fvd off: {path} not found (`make i3d` converts the published Kinetics-400 I3D)")
        return None
    return path


@dataclass
class RealSet:
    """Features of the real validation clips, per extractor, computed once per evaluation run.

    Fréchet distance is biased by sample count, so a gate compares distances at the same n only: the
    real-vs-real floor is half A against half B (n = half each), and the distance it is compared with is half
    A against `half` generated clips (a fixed, seeded subset of the prompts and seeds: the same subset for
    every version)."""

    ref: torch.Tensor  # (N, D)
    i3d: torch.Tensor | None  # (N, 400)
    i3d_metric: str = "fvd"  # fvd_custom when the I3D is not the pinned standard one

    @classmethod
    def of(cls, extractors: Extractors, videos: Videos) -> RealSet:
        """The features of `videos`, computed a batch at a time (only the features are kept)."""
        i3d, ref, i3d_feats = extractors.i3d, [], []
        for batch in batches_of(videos):
            ref.append(extractors.features(batch)[0])
            i3d_feats += [i3d(batch)] if i3d else []
        return cls(torch.cat(ref), torch.cat(i3d_feats) if i3d else None, i3d.metric if i3d else "fvd")

    @property
    def half(self) -> int:
        return len(self.ref) // 2

    def floors(self, bootstrap: int, seed: int) -> dict[str, float]:
        """Real-vs-real floor of each Fréchet distance, half A vs half B, with its interval; empty when the
        halves are too small for a covariance (fewer than 2 clips each)."""
        if self.half < 2:
            return {}
        out = _fd_scores(
            "fvd_ref", self.ref[: self.half], self.ref[self.half : 2 * self.half], bootstrap, seed
        )
        if self.i3d is not None:
            h = self.half
            out |= _fd_scores(self.i3d_metric, self.i3d[:h], self.i3d[h : 2 * h], bootstrap, seed)
        return out

    def generated_subset(self, n_generated: int, seed: int) -> np.ndarray:
        """Which `half` of the generated clips are compared with half A (sorted indices)."""
        if n_generated < self.half:
            raise ValueError(
                f"{n_generated} generated clips cannot be compared with the real floor at n = {self.half} "
                "(half the validation clips): raise evaluate.samples_per_prompt or add prompts"
            )
        return np.sort(np.random.default_rng(seed).choice(n_generated, self.half, replace=False))


def _fd_scores(name: str, real: torch.Tensor, generated: torch.Tensor, bootstrap: int, seed: int) -> dict:
    scores = {name: frechet_distance_features(real, generated)}
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


@dataclass
class Scored:
    """A set of videos' scores, and the per-clip values a paired comparison of two models needs."""

    scores: dict[str, float]
    ref_features: torch.Tensor  # (N, D)
    clip_score_ref: torch.Tensor  # (N,)


def score_videos(
    ex: Extractors,
    videos: Videos,
    prompts: list[str],
    real: RealSet | None,
    bootstrap: int = 0,
    seed: int = 0,
    pixel: PixelCheck | None = None,
) -> Scored:
    """Metrics of N videos against their prompts and, when given, the real set: the distance at all N
    (`fvd_ref`, for comparing models at equal N) and at the floor's n (`fvd_ref_floor_n`); and the demo's
    pixel check, when given. The videos are measured a batch at a time, in one pass (a stream of generated
    batches is never held whole); only per-clip values are kept."""
    ref, n = ex.ref, 0
    feats, emb, read_back, clip, i3d, checked = [], [], [], [], [], []
    for batch in batches_of(videos):
        if pixel is not None:
            checked.append(
                pixel.check(batch, [pixel.truth.parse_prompt(p) for p in prompts[n : n + len(batch)]])
            )
        f, e = ex.features(batch)
        feats.append(f)
        emb.append(e)
        with torch.no_grad():
            read_back += [decode(ref.tokenizer, s) for s in ref.model.generate(frames_to_tensor(batch))]
        clip += [ex.clip(batch, prompts[n : n + len(batch)])] if ex.clip is not None else []
        i3d += [ex.i3d(batch)] if ex.i3d is not None and real is not None else []
        n += len(batch)
    if n != len(prompts):
        raise ValueError(f"{n} videos for {len(prompts)} prompts")
    feats = torch.cat(feats)
    with torch.no_grad():
        text = ref.model.text_embedding(encode(ref.tokenizer, prompts, ref.model.cfg.max_tokens))
    clip_ref = clip_style_score(torch.cat(emb), text)
    scores = _mean_scores("clip_score_ref", clip_ref, bootstrap, seed)
    scores |= _mean_scores("caption_match_ref", caption_shares(read_back, prompts), bootstrap, seed)
    if ex.clip is not None:
        scores |= _mean_scores("clip_score", torch.cat(clip), bootstrap, seed)
    if real is not None:  # the distances at the floor's n only where there is a floor (2+ clips a half)
        scores |= _fd_scores("fvd_ref", real.ref, feats, bootstrap, seed)
        pick, h = real.generated_subset(n, seed), real.half
        if h >= 2:
            scores |= _fd_scores("fvd_ref_floor_n", real.ref[:h], feats[pick], bootstrap, seed)
        if ex.i3d is not None:
            i3d = torch.cat(i3d)
            name = real.i3d_metric
            scores |= _fd_scores(name, real.i3d, i3d, bootstrap, seed)
            if h >= 2:
                scores |= _fd_scores(f"{name}_floor_n", real.i3d[:h], i3d[pick], bootstrap, seed)
    if pixel is not None:
        scores |= pixel.accuracy(checked)
    return Scored(scores, feats, clip_ref)


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
        real_videos: Callable[[list[str]], Videos],
    ) -> PixelCheck:  # fmt: skip
        """Validated on the clips of `val_ids` that the ground truth labels, read by `real_videos(ids)`."""
        if truth.palette is None:
            raise ValueError("the ground-truth file has no palette: rewrite it with `reelforge demo-data`")
        labels = truth.label_clips(manifest)
        keep = [c for c in val_ids if c in labels]
        check = cls(truth, {}, cfg.bootstrap, cfg.seed)
        check.real_accuracy = check._scores(real_videos(keep), [labels[c] for c in keep]) if keep else {}
        return check

    def check(self, batch: np.ndarray, wanted: list[dict[str, str] | None]) -> dict[str, np.ndarray]:
        """Per check, whether each video of `batch` whose labels `wanted` are known (not None: a prompt the
        ground truth's vocabulary parses) shows them."""
        keep = [i for i, w in enumerate(wanted) if w is not None]
        return check_videos(batch[keep], [wanted[i] for i in keep], self.truth.palette) if keep else {}

    def accuracy(self, checked: list[dict[str, np.ndarray]]) -> dict[str, float]:
        """`pixel_<check>_acc` (and `pixel_all_acc`), with intervals, from `check`'s results."""
        checked = [c for c in checked if c]
        if not checked:
            return {}
        scores = {}
        for name in checked[0]:
            right = np.concatenate([c[name] for c in checked]).astype(float)
            scores |= _mean_scores(f"pixel_{name}_acc", right, self.bootstrap, self.seed)
        return scores

    def _scores(self, videos: Videos, wanted: list[dict[str, str]]) -> dict[str, float]:
        checked, n = [], 0
        for batch in batches_of(videos):
            checked.append(self.check(batch, wanted[n : n + len(batch)]))
            n += len(batch)
        if n != len(wanted):
            raise ValueError(f"{n} videos for {len(wanted)} ground-truth labels")
        return self.accuracy(checked)
