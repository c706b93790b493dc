"""Frames of a registered model's videos as one PNG: a row per prompt, evenly spaced frames, and the pixel
check's reading of each video beside its prompt on stdout. How the pictures in docs/training.md are made.

    python evaluation/frames.py --out docs/img/demo.png --frames 4 \\
        "a red circle moves left over a black background" "a green triangle moves up over a gray background"

Uses the project's params.yaml for the tracking store and model name; `--version` defaults to the champion.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from reelforge.config import ServeConfig, load_params
from reelforge.evaluate.pixelcheck import GroundTruth, read_video
from reelforge.registry.models import load_pipeline
from reelforge.registry.tracking import champion_version, setup


def grid(videos: np.ndarray, frames: int, scale: int) -> Image.Image:
    """(N, T, H, W, 3) uint8 -> rows of `frames` evenly spaced frames with a 1-pixel white gutter."""
    idx = np.linspace(0, videos.shape[1] - 1, frames).round().astype(int)
    pad = ((1, 1), (1, 1), (0, 0))
    rows = [np.concatenate([np.pad(f, pad, constant_values=255) for f in v[idx]], axis=1) for v in videos]
    img = np.concatenate(rows, axis=0)
    return Image.fromarray(img).resize((img.shape[1] * scale, img.shape[0] * scale), Image.NEAREST)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("prompts", nargs="+")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--version", help="registered model version (default: the champion)")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--ground-truth", default="data/raw/ground_truth.json", help="the demo's palette")
    args = ap.parse_args()
    registry = load_params(args.params).stage(ServeConfig).registry
    setup(registry, Path(args.params).resolve().parent)
    version = args.version or champion_version(registry.model_name, registry.alias)
    if version is None:
        raise SystemExit(f"{registry.model_name} has no {registry.alias!r} alias: pass --version")
    pipeline = load_pipeline(registry.model_name, version)
    videos = pipeline.generate(args.prompts, [args.seed] * len(args.prompts))
    palette = GroundTruth(args.ground_truth).palette if Path(args.ground_truth).exists() else None
    for prompt, video in zip(args.prompts, videos, strict=True):
        print(f"{prompt}: {read_video(video, palette) if palette else ''}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    grid(videos, args.frames, args.scale).save(args.out)
    print(f"wrote {args.out} ({registry.model_name} v{version}, seed {args.seed})")


if __name__ == "__main__":
    main()
