"""What is each word of a demo caption worth, to the model and to the best text-only guess?

1. The model: the x0 error of saved EMA weights (`checkpoint_study.py --save`) on training clips at several
   noise levels, with each caption as it is and with one attribute's word swapped for another of its
   vocabulary (same clips, same noise). A ratio near 1 means the model ignores that word.
2. The data: the error of the best prediction from the text alone (what a model must draw from pure noise),
   the mean of the other training clips with the same colour and background, against the same with the
   word of one more attribute too (leave-one-out). What knowing that word could save at sigma = 1.

    python evaluation/word_probe.py /tmp/study/ema_600.pt --clips data/clips --captions data/captions

How docs/training.md's "what a word is worth" numbers are made.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from reelforge.config import TrainConfig, load_params
from reelforge.data.demo import ATTRIBUTES
from reelforge.model.autoencoder import Autoencoder
from reelforge.model.diffusion import RectifiedFlow
from reelforge.train.data import load_data
from reelforge.train.trainer import build_model

SIGMAS = (1.0, 0.97, 0.9, 0.8, 0.6, 0.4, 0.2)
SWAPPED = ("direction", "color", "shape", "background")


def swap(caption: str, attribute: str) -> str:
    """The caption with its `attribute` word replaced by the next word of that attribute's vocabulary."""
    words = ATTRIBUTES[attribute]
    return " ".join(words[(words.index(w) + 1) % len(words)] if w in words else w for w in caption.split())


def attributes(caption: str) -> dict[str, str]:
    found = {a: w for w in caption.split() for a, words in ATTRIBUTES.items() if w in words}
    return found if len(found) == len(ATTRIBUTES) else {}


def text_only_error(x: np.ndarray, captions: list[str], by: tuple[str, ...]) -> float:
    """The squared error left when predicting a clip by the mean of the clips sharing its `by` words: each
    clip against the mean of the others (leave-one-out), times (n - 1) / n, which removes what a mean of
    n - 1 clips adds over the group's true mean (finer groups are smaller, and would seem worse)."""
    groups = defaultdict(list)
    for i, c in enumerate(captions):
        if a := attributes(c):
            groups[tuple(a[k] for k in by)].append(i)
    errors = []
    for g in (g for g in groups.values() if len(g) >= 2):
        total = x[g].sum(0)
        n = len(g)
        errors += [float(((x[i] - (total - x[i]) / (n - 1)) ** 2).mean()) * (n - 1) / n for i in g]
    return float(np.mean(errors))


def x0_estimate(
    flow: RectifiedFlow,
    model: torch.nn.Module,
    x_t: torch.Tensor,
    t: torch.Tensor,
    sigma: float,
    ids: torch.Tensor,
) -> torch.Tensor:
    """The model's clean-sample estimate, whichever it predicts (x_t = x0 + sigma * velocity)."""
    return x_t - sigma * flow.velocity(model, x_t, t, ids)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("weights", type=Path, help="EMA state dict saved by checkpoint_study.py --save")
    ap.add_argument(
        "--set", action="append", default=[], help="params override the weights were trained with"
    )
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--clips", type=Path, default=Path("data/clips"))
    ap.add_argument("--captions", type=Path, default=Path("data/captions"))
    ap.add_argument("--clips-probed", type=int, default=64)
    args = ap.parse_args()
    cfg = load_params(args.params, args.set).stage(TrainConfig)
    data = load_data(cfg.train, cfg.clip, cfg.read, args.clips, args.captions, Autoencoder(None), None)
    model = build_model(cfg.train, data)
    model.load_state_dict(torch.load(args.weights))
    model.eval()
    flow = RectifiedFlow(cfg.scheduler)

    texts = [data.train_ids.text(i) for i in range(len(data.train_ids))]
    idx = np.linspace(0, len(texts) - 1, min(args.clips_probed, len(texts))).round().astype(int).tolist()
    x0, probed = data.train_x[idx], [texts[i] for i in idx]
    noise = flow.noise(x0.shape, torch.Generator().manual_seed(0))
    print(f"model: x0 error with the caption, and x its value with one word swapped ({len(idx)} clips)")
    print(f"{'sigma':>6} {'error':>8}" + "".join(f"{a:>12}" for a in (*SWAPPED, "no text")))
    with torch.no_grad():
        for s in SIGMAS:
            x_t = (1 - s) * x0 + s * noise
            t = torch.full((len(idx),), s * cfg.scheduler.num_train_timesteps)
            variants = [probed, *([swap(c, a) for c in probed] for a in SWAPPED), [""] * len(idx)]
            errors = [
                float(((x0_estimate(flow, model, x_t, t, s, data.tokenizer(v)) - x0) ** 2).mean())
                for v in variants
            ]
            print(f"{s:>6.2f} {errors[0]:>8.4f}" + "".join(f"{e / errors[0]:>11.3f}x" for e in errors[1:]))

    x = np.concatenate(
        [data.train_x[list(range(i, min(i + 32, len(texts))))].numpy() for i in range(0, len(texts), 32)]
    )
    base = text_only_error(x, texts, ("color", "background"))
    print(f"\ntext only (group means, {len(texts)} clips): colour + background {base:.4f}")
    for extra in ("direction", "shape"):
        e = text_only_error(x, texts, ("color", "background", extra))
        print(f"  + {extra}: {e:.4f} ({100 * (1 - e / base):+.1f}% saved)")


if __name__ == "__main__":
    main()
