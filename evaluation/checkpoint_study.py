"""Do the learned metrics rank checkpoints the way the ground truth does?

Trains one model with the project's own training code (the train stage's module, batch stream and trainer,
from params.yaml and `--set` overrides) on the ingested, captioned demo data, and every `--every` steps
scores the EMA weights exactly as the evaluate stage scores a version: the evaluation prompts, its seeds,
its extractors and real set. Then it reports the Spearman rank correlation of each learned metric with the
pixel check's accuracies (the ground truth of the demo world). Distances are negated first, so a metric
that ranks like the ground truth correlates positively.

    python evaluation/checkpoint_study.py --every 100 --out reports/checkpoint_study.json

Needs data/clips, data/captions (the captioner: the reference encoder) and data/raw/ground_truth.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
from scipy.stats import spearmanr
from torch.utils.data import DataLoader

from reelforge.config import PIXEL_CHECKS, EvaluateConfig, TrainConfig, load_params
from reelforge.data.store import load_clips, read_manifest
from reelforge.evaluate.pixelcheck import GroundTruth
from reelforge.evaluate.scoring import Extractors, PixelCheck, RealSet, score_videos
from reelforge.evaluate.stage import read_prompts
from reelforge.model.autoencoder import Autoencoder
from reelforge.train.data import load_data
from reelforge.train.module import BatchStream, TextToVideoModule
from reelforge.train.trainer import build_model, build_pipeline, make_trainer

LEARNED = {  # metric -> sign that makes "better" larger
    "fvd_ref_floor_n": -1,
    "fvd_ref": -1,
    "clip_score_ref": 1,
    "caption_match_ref": 1,
}
TRUTH = ("pixel_all_acc", "pixel_mean_acc")


class ScoreEvery(L.Callback):
    def __init__(self, every: int, score, save: Path | None) -> None:
        self.every, self.score, self.save, self.rows = every, score, save, []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step % self.every == 0 and (not self.rows or self.rows[-1]["step"] != step):
            with pl_module.ema_weights():
                scores, videos = self.score()
                if self.save:  # the EMA weights and what they drew, to look at or re-sample later
                    self.save.mkdir(parents=True, exist_ok=True)
                    torch.save(pl_module.model.state_dict(), self.save / f"ema_{step}.pt")
                    np.save(self.save / f"videos_{step}.npy", videos)
            self.rows.append({"step": step, **scores})
            print(json.dumps(self.rows[-1]), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--every", type=int, default=100)
    ap.add_argument("--set", action="append", default=[], help="params override, e.g. train.steps=800")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--clips", default="data/clips")
    ap.add_argument("--captions", default="data/captions")
    ap.add_argument("--prompts", default="evaluation/prompts.txt")
    ap.add_argument("--ground-truth", default="data/raw/ground_truth.json")
    ap.add_argument("--out", default="reports/checkpoint_study.json")
    ap.add_argument("--save", type=Path, help="folder for each checkpoint's EMA weights and videos (.npy)")
    args = ap.parse_args()
    params = load_params(args.params, args.set)
    cfg, ev = params.stage(TrainConfig), params.stage(EvaluateConfig).evaluate
    train, clips_dir = cfg.train, Path(args.clips)
    L.seed_everything(train.seed)

    # The evaluate stage's side: extractors, the real validation clips, the pixel check, prompts and seeds.
    # Like the evaluate stage's gated scores: the bucket with the most validation clips, at its shape.
    manifest = read_manifest(clips_dir)
    val = manifest[manifest.split == "val"]
    val = val[val.bucket == val.bucket.value_counts(sort=True).index[0]]
    val_ids = list(val.clip_id)
    shape = {
        "num_frames": int(val.num_frames.iloc[0]),
        "width": int(val.width.iloc[0]),
        "height": int(val.height.iloc[0]),
    }
    clips = load_clips(clips_dir, val_ids)
    real_videos = np.stack([clips[c] for c in val_ids])
    ex = Extractors.load(ev, args.captions)
    real = RealSet.of(ex, real_videos)
    truth = GroundTruth(args.ground_truth)
    pixel = PixelCheck.of(ev, truth, manifest, val_ids, lambda ids: np.stack([clips[c] for c in ids]))
    prompts = [p for p in read_prompts(args.prompts) for _ in range(ev.samples_per_prompt)]
    seeds = [ev.seed + i for i in range(len(prompts))]

    # The train stage's side: data, model, pipeline, module, batch stream, trainer (no logger).
    autoencoder = Autoencoder(train.vae_path)
    data = load_data(train, cfg.clip, cfg.read, clips_dir, Path(args.captions), autoencoder, None)
    model = build_model(train, data)
    pipeline = build_pipeline(cfg, model, data, autoencoder)
    module = TextToVideoModule(model, pipeline.flow, train, data.tokenizer([""])[0])

    def score() -> dict:
        t0 = time.perf_counter()
        videos = pipeline.generate(prompts, seeds, **shape)
        scores = score_videos(ex, videos, prompts, real, bootstrap=0, seed=ev.seed, pixel=pixel).scores
        scores["pixel_mean_acc"] = float(np.mean([scores[f"pixel_{c}_acc"] for c in PIXEL_CHECKS]))
        return scores | {"score_seconds": round(time.perf_counter() - t0, 1)}, videos

    callback = ScoreEvery(args.every, score, args.save)
    trainer = make_trainer(train, False, [callback], has_val=False)
    stream = BatchStream(data.train_x, data.train_ids, train.micro_batch, train.seed, 0, 1, start=0)
    t0 = time.perf_counter()
    trainer.fit(module, DataLoader(stream, batch_size=None))
    seconds = time.perf_counter() - t0

    rows = callback.rows
    correlations = {
        metric: {
            truth: float(spearmanr([sign * r[metric] for r in rows], [r[truth] for r in rows]).statistic)
            for truth in TRUTH
        }
        for metric, sign in LEARNED.items()
    }
    print(f"\n{'metric':<20}" + "".join(f"{t:>18}" for t in TRUTH))
    for metric, c in correlations.items():
        print(f"{metric:<20}" + "".join(f"{c[t]:>18.2f}" for t in TRUTH))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "overrides": args.set, "every": args.every, "train_seconds_with_scoring": round(seconds, 1),
        "real": pixel.real_accuracy, "rows": rows, "spearman": correlations,
        "note": "distances negated: a positive correlation ranks checkpoints like the ground truth",
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
