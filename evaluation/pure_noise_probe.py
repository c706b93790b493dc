"""Can the backbone learn what a prompt word asks for, at all? Train it at sigma = 1 only.

From pure noise the best prediction is the mean of the training clips whose captions match the prompt
(`word_probe.text_only_error` gives that floor with and without each word). This trains a fresh model of the
params' size on the ingested clips with pure noise as its only input and the x0 error as its loss, and every
`--probe-every` steps reports its error at sigma = 1 against those floors, and how much swapping each word
raises it (the word probe's ratio; 1.000x: the word is ignored). A word the model learns here, it can learn;
how many steps it takes says what a training mix must spend where sampling starts.

    python evaluation/pure_noise_probe.py --steps 1200 --clips data/clips --captions data/captions

How docs/training.md's "Can the network learn the direction word?" numbers are made.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from word_probe import SWAPPED, swap, text_only_error

from reelforge.config import TrainConfig, load_params
from reelforge.model.autoencoder import Autoencoder
from reelforge.model.diffusion import RectifiedFlow
from reelforge.train.data import load_data
from reelforge.train.trainer import build_model

PROBE_NOISE_DRAWS = 4


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--probe-every", type=int, default=300)
    ap.add_argument("--set", action="append", default=[], help="params override")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--clips", type=Path, default=Path("data/clips"))
    ap.add_argument("--captions", type=Path, default=Path("data/captions"))
    ap.add_argument("--clips-probed", type=int, default=128)
    ap.add_argument("--freeze-text", action="store_true", help="keep the text encoder at its random init")
    args = ap.parse_args()
    cfg = load_params(args.params, args.set).stage(TrainConfig)
    torch.manual_seed(cfg.train.seed)
    data = load_data(cfg.train, cfg.clip, cfg.read, args.clips, args.captions, Autoencoder(None), None)
    common = np.bincount(data.train_x.buckets).argmax()  # one bucket: one shape in every batch
    keep = [i for i in range(len(data.train_x)) if data.train_x.buckets[i] == common]
    x = torch.cat([data.train_x[keep[i : i + 64]] for i in range(0, len(keep), 64)])
    texts = [data.train_ids.text(i) for i in keep]
    floors = {
        "colour + background": text_only_error(x.numpy(), texts, ("color", "background")),
        "+ direction": text_only_error(x.numpy(), texts, ("color", "background", "direction")),
    }
    print(
        f"{len(keep)} clips {tuple(x.shape[1:])}; text-only floors "
        + ", ".join(f"{k} {v:.4f}" for k, v in floors.items())
    )

    model = build_model(cfg.train, data)
    if args.freeze_text:
        model.text_encoder.requires_grad_(False)
    flow = RectifiedFlow(cfg.scheduler)
    t1 = torch.full((cfg.train.batch_size,), float(cfg.scheduler.num_train_timesteps))
    opt = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=cfg.train.lr,
        weight_decay=cfg.train.weight_decay,
    )
    g, start = torch.Generator().manual_seed(cfg.train.seed), time.perf_counter()
    print(f"{'step':>5} {'s':>6} {'error':>7}" + "".join(f"{a:>12}" for a in SWAPPED))
    for step in range(1, args.steps + 1):
        idx = torch.randint(len(x), (cfg.train.batch_size,), generator=g)
        drop = torch.rand(len(idx), generator=g) < cfg.train.caption_dropout
        ids = data.tokenizer(["" if d else texts[i] for i, d in zip(idx.tolist(), drop, strict=True)])
        pred = model(flow.noise(x[idx].shape, g), t1, ids)
        loss = ((pred - x[idx]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
        opt.step()
        if step % args.probe_every == 0:
            error, ratios = probe(model, flow, x, texts, data.tokenizer, args.clips_probed)
            row = "".join(f"{r:>11.3f}x" for r in ratios)
            print(f"{step:>5} {time.perf_counter() - start:>6.0f} {error:>7.4f}{row}", flush=True)


@torch.no_grad()
def probe(model, flow, x, texts, tokenizer, n: int) -> tuple[float, list[float]]:
    """The sigma = 1 x0 error on `n` training clips (a mean over a few noise draws), and its ratio with each
    attribute's word swapped."""
    model.eval()
    idx = np.linspace(0, len(x) - 1, min(n, len(x))).round().astype(int).tolist()
    x0, probed = x[idx], [texts[i] for i in idx]
    t1 = torch.full((len(idx),), float(flow.cfg.num_train_timesteps))
    variants = [probed, *([swap(c, a) for c in probed] for a in SWAPPED)]
    errors = np.zeros(len(variants))
    for k in range(PROBE_NOISE_DRAWS):
        noise = flow.noise(x0.shape, torch.Generator().manual_seed(100 + k))
        errors += [float(((model(noise, t1, tokenizer(v)) - x0) ** 2).mean()) for v in variants]
    model.train()
    return errors[0] / PROBE_NOISE_DRAWS, list(errors[1:] / errors[0])


if __name__ == "__main__":
    main()
