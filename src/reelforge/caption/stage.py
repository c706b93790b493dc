"""Caption stage: train the captioner on clips that came with captions, caption the rest.

Writes `captions.parquet` (clip_id, caption, caption_source given|model, captioner) and the frozen captioner
(`captioner/`: config, weights, tokenizer) that evaluation reuses as its reference encoder.

The captioner sees every clip at one shape, the most common clip shape of the store: clips of other buckets
are resampled to it (evenly spaced frames, an antialiased bilinear resize), as video captioners take a fixed
frame count and resolution. Its encoder pools over time and space, so evaluation can feed it any one shape.

Clips are streamed from the store a batch at a time (`stream_clips`, in `read.loader_workers` processes),
never held as a set: each training step reads its own batch, then every other clip is read once, to be
captioned (or, with a caption already, to check that it decodes: a clip that does not gets no row).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from reelforge.caption.captioner import (
    CAPTIONER_DIR,
    CAPTIONS,
    Captioner,
    CaptionerConfig,
    frames_to_tensor,
    load_captioner,
)
from reelforge.config import CaptionConfig, CaptionParams
from reelforge.data.store import StoredClips, read_manifest, stream_clips
from reelforge.evaluate.metrics import caption_match
from reelforge.files import atomic_dir, write_json_atomic
from reelforge.model.text import decode, encode, train_tokenizer


@dataclass(frozen=True)
class CaptionResult:
    clips: int
    given: int
    generated: int
    captioner: str
    metrics: dict


# Clips a captioning batch decodes and captions at once.
CAPTION_BATCH = 64


def train_captioner(
    cfg: CaptionParams, stored: StoredClips, rows: np.ndarray, captions: list[str], shape: tuple,
    workers: int, out_dir: Path,
) -> dict:  # fmt: skip
    """Train on the clips at `rows` of `stored` (ascending; resampled to `shape`, (T, H, W, 3)) and their
    captions, a fresh random batch a step; save into out_dir. Returns training stats."""
    torch.manual_seed(cfg.seed)
    tok = train_tokenizer(captions)
    texts = np.asarray(captions, dtype=object)
    model = Captioner(CaptionerConfig(tok.get_vocab_size(), cfg.embed_dim, cfg.max_tokens))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(cfg.seed)

    def draws() -> Iterator[np.ndarray]:
        for _ in range(cfg.steps):
            yield rows[torch.randperm(len(rows), generator=gen)[: cfg.batch_size].numpy()]

    t0, stats = time.perf_counter(), {}
    model.train()
    for kept, frames in stream_clips(stored, draws(), workers, shape):
        ids = encode(tok, list(texts[np.searchsorted(rows, kept)]), cfg.max_tokens, bos_eos=True)  # (B, L)
        loss, stats = model.loss(frames_to_tensor(frames), ids)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    model.save(out_dir)
    tok.save(str(out_dir / "tokenizer.json"))
    return {**stats, "train_seconds": round(time.perf_counter() - t0, 2), "train_captions": len(captions)}


def caption_clips(
    model_dir: Path, stored: StoredClips, rows: np.ndarray, shape: tuple, workers: int
) -> dict[int, str]:
    """Store index -> the captioner's caption, for the clips at `rows` that decode."""
    ref = load_captioner(model_dir)
    batches = [rows[i : i + CAPTION_BATCH] for i in range(0, len(rows), CAPTION_BATCH)]
    out: dict[int, str] = {}
    for kept, frames in stream_clips(stored, batches, workers, shape):
        ids = ref.model.generate(frames_to_tensor(frames))
        out |= {int(k): decode(ref.tokenizer, seq) for k, seq in zip(kept, ids, strict=True)}
    return out


def run(
    cfg: CaptionConfig, clips_dir: str | Path, output_dir: str | Path, metrics_path: str | Path
) -> CaptionResult:
    """Train the captioner on the clips with given captions; caption the rest; write `output_dir`."""
    manifest = read_manifest(clips_dir, ["clip_id", "caption", "split"])
    given = manifest.caption.notna().to_numpy()
    train_rows = np.flatnonzero(given & (manifest.split == "train").to_numpy())
    if not len(train_rows):
        raise ValueError(
            f"no training clip in {clips_dir} has a caption; the captioner needs some clips with a caption "
            "sidecar (<video>.txt next to a single-shot video)"
        )
    stored = StoredClips(clips_dir, None, cfg.read.max_unreadable, cfg.read.shards_url)  # manifest order
    shapes, counts = np.unique(stored.shape, axis=0, return_counts=True)
    shape = (*shapes[counts.argmax()].tolist(), 3)  # the most common (T, H, W, 3)
    workers = cfg.read.loader_workers

    with atomic_dir(output_dir) as out:
        captions = list(manifest.caption.iloc[train_rows])
        stats = train_captioner(
            cfg.caption, stored, train_rows, captions, shape, workers, out / CAPTIONER_DIR
        )
        ref = load_captioner(out / CAPTIONER_DIR)
        metrics = {**stats, "captioner": ref.name, "captioner_sha256": ref.sha256}
        # Held-out accuracy: captioned validation clips the captioner never saw.
        val_rows = np.flatnonzero(given & (manifest.split == "val").to_numpy())
        read_back = caption_clips(out / CAPTIONER_DIR, stored, val_rows, shape, workers)
        if read_back:
            pred = list(read_back.values())
            truth = [c.lower() for c in manifest.caption.iloc[list(read_back)]]
            metrics["val_exact_match"] = float(np.mean([p == t for p, t in zip(pred, truth, strict=True)]))
            metrics["val_caption_match"] = caption_match(pred, truth)  # informative words only
            metrics["val_clips"] = len(read_back)
        generated = caption_clips(out / CAPTIONER_DIR, stored, np.flatnonzero(~given), shape, workers)
        # The other captioned clips are read once too: one that does not decode gets no row.
        others = np.setdiff1d(np.flatnonzero(given), val_rows)
        checked = set(read_back) | set(_decodable(stored, others, shape, workers))
        kept_given = manifest.iloc[[i for i in np.flatnonzero(given) if i in checked]]
        rows = _table(kept_given, manifest.iloc[list(generated)], list(generated.values()), ref.name)
        rows.to_parquet(out / CAPTIONS, index=False)
    metrics.update(
        clips=len(rows), given=len(kept_given), generated=len(generated), unreadable=stored.unreadable
    )
    write_json_atomic(metrics_path, metrics)
    return CaptionResult(len(rows), len(kept_given), len(generated), ref.name, metrics)


def _decodable(stored: StoredClips, rows: np.ndarray, shape: tuple, workers: int) -> Iterator[int]:
    """The store indices among `rows` whose clips decode (each read once, in batches)."""
    batches = [rows[i : i + CAPTION_BATCH] for i in range(0, len(rows), CAPTION_BATCH)]
    for kept, _ in stream_clips(stored, batches, workers, shape):
        yield from kept.tolist()


def _table(given: pd.DataFrame, missing: pd.DataFrame, generated: list[str], captioner: str) -> pd.DataFrame:
    """The caption table: the given captions, then the captioner's."""
    return pd.concat(
        [
            pd.DataFrame(
                {
                    "clip_id": given.clip_id,
                    "caption": given.caption,
                    "caption_source": "given",
                    "captioner": None,
                }
            ),
            pd.DataFrame(
                {
                    "clip_id": missing.clip_id,
                    "caption": generated,
                    "caption_source": "model",
                    "captioner": captioner,
                }
            ),
        ],
        ignore_index=True,
    )
