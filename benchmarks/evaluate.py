"""Evaluation cost: time to score N clips (feature extraction + Fréchet distance [+ bootstrap]).

For each N it measures, in the same run:
  baseline   uint8 clips -> float tensors (the unavoidable input conversion)
  ref feats  reference-encoder features (the offline fvd_ref path)
  FD 64-d    Fréchet distance on those features
  FD 400-d   Fréchet distance at I3D's 400 dimensions (random features; the cost does not depend on weights),
             from the moments with sqrtm of the 400 x 400 product, and from the features (what evaluation
             uses: an N x N SVD when N < 400, exact; the same sqrtm otherwise)
  boot 400-d 200 bootstrap resamples of the 400-d distance (the confidence interval), from the features
and reports medians over repeats and each stage's ratio to the baseline, and the features route against
sqrtm. Prints a table, writes JSON.

    python benchmarks/evaluate.py --sizes 17 256 2048 --repeats 3 --out reports/bench_evaluate.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from reelforge.caption.captioner import Captioner, CaptionerConfig, frames_to_tensor
from reelforge.evaluate.metrics import (
    bootstrap_fd,
    feature_stats,
    frechet_distance,
    frechet_distance_features,
)


def _median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench(n: int, repeats: int, frames: int = 16, size: int = 32) -> dict:
    rng = np.random.default_rng(0)
    clips = rng.integers(0, 255, (n, frames, size, size, 3), dtype=np.uint8)
    encoder = Captioner(CaptionerConfig(vocab_size=64, dim=64, max_tokens=16)).eval()

    def ref_features() -> torch.Tensor:
        with torch.no_grad():
            return torch.cat(
                [encoder.video_features(frames_to_tensor(clips[i : i + 64])) for i in range(0, n, 64)]
            )

    feats = ref_features()
    f400a, f400b = rng.normal(size=(n, 400)), rng.normal(0.1, 1.0, size=(n, 400))
    row = {
        "n": n,
        "baseline_s": _median_seconds(lambda: frames_to_tensor(clips), repeats),
        "ref_features_s": _median_seconds(ref_features, repeats),
        "fd_64d_s": _median_seconds(
            lambda: frechet_distance(*feature_stats(feats), *feature_stats(feats.flip(0) + 0.1)), repeats
        ),
        "fd_400d_s": _median_seconds(
            lambda: frechet_distance(*feature_stats(f400a), *feature_stats(f400b)), repeats
        ),
        "fd_400d_features_s": _median_seconds(lambda: frechet_distance_features(f400a, f400b), repeats),
        "bootstrap200_400d_s": _median_seconds(lambda: bootstrap_fd(f400a, f400b, 200, 0), 1),
    }
    row["clips_per_s_ref_path"] = n / (row["ref_features_s"] + row["fd_64d_s"])
    for k in ("ref_features_s", "fd_64d_s", "fd_400d_s", "bootstrap200_400d_s"):
        row[k.replace("_s", "_vs_baseline")] = row[k] / row["baseline_s"]
    row["fd_400d_features_vs_sqrtm"] = row["fd_400d_features_s"] / row["fd_400d_s"]
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[17, 256, 2048])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("reports/bench_evaluate.json"))
    args = ap.parse_args()
    rows = [bench(n, args.repeats) for n in args.sizes]
    cols = [
        "n",
        "baseline_s",
        "ref_features_s",
        "fd_64d_s",
        "fd_400d_s",
        "fd_400d_features_s",
        "fd_400d_features_vs_sqrtm",
        "bootstrap200_400d_s",
        "clips_per_s_ref_path",
    ]
    print(" | ".join(f"{c:>20}" for c in cols))
    for r in rows:
        print(" | ".join(f"{r[c]:>20.4g}" for c in cols))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"torch_threads": torch.get_num_threads(), "device": "cpu", "frames": 16, "size": 32}
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
