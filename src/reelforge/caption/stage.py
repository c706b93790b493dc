"""Caption stage: train the captioner on clips that came with captions, caption the rest.

Writes `captions.parquet` (clip_id, caption, caption_source given|model, captioner) and the frozen captioner
(`captioner/`: config, weights, tokenizer) that evaluation reuses as its reference encoder.

The captioner sees every clip at one shape, the most common clip shape of the store: clips of other buckets
are resampled to it (evenly spaced frames, an antialiased bilinear resize), as video captioners take a fixed
frame count and resolution. Its encoder pools over time and space, so evaluation can feed it any one shape.
"""

from __future__ import annotations

import time
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
from reelforge.data.store import load_clips, read_manifest
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


def train_captioner(cfg: CaptionParams, videos: np.ndarray, captions: list[str], out_dir: Path) -> dict:
    """Train on (N, T, H, W, 3) uint8 clips and their captions; save into out_dir. Returns training stats."""
    torch.manual_seed(cfg.seed)
    tok = train_tokenizer(captions)
    ids = encode(tok, captions, cfg.max_tokens, bos_eos=True)  # (N, L)
    x = frames_to_tensor(videos)  # (N, 3, T, H, W)
    model = Captioner(CaptionerConfig(tok.get_vocab_size(), cfg.embed_dim, cfg.max_tokens))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(cfg.seed)
    t0, stats = time.perf_counter(), {}
    model.train()
    for _ in range(cfg.steps):
        batch = torch.randperm(len(x), generator=gen)[: cfg.batch_size]
        loss, stats = model.loss(x[batch], ids[batch])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    model.save(out_dir)
    tok.save(str(out_dir / "tokenizer.json"))
    return {**stats, "train_seconds": round(time.perf_counter() - t0, 2), "train_captions": len(captions)}


def generate_captions(model_dir: Path, videos: np.ndarray, batch_size: int = 64) -> list[str]:
    ref = load_captioner(model_dir)
    out: list[str] = []
    for i in range(0, len(videos), batch_size):
        ids = ref.model.generate(frames_to_tensor(videos[i : i + batch_size]))
        out += [decode(ref.tokenizer, seq) for seq in ids]
    return out


def resample(frames: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """(T, H, W, 3) uint8 -> `shape` (T', H', W', 3): evenly spaced frames, resized (antialiased bilinear).
    A clip of that shape already is returned as it is."""
    if frames.shape == shape:
        return frames
    t, h, w, _ = shape
    x = torch.from_numpy(frames[np.linspace(0, len(frames) - 1, t).round().astype(int)]).permute(0, 3, 1, 2)
    x = torch.nn.functional.interpolate(x.float(), size=(h, w), mode="bilinear", antialias=True)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def run(
    cfg: CaptionConfig, clips_dir: str | Path, output_dir: str | Path, metrics_path: str | Path
) -> CaptionResult:
    """Train the captioner on the clips with given captions; caption the rest; write `output_dir`."""
    manifest = read_manifest(clips_dir)
    if manifest[manifest.caption.notna() & (manifest.split == "train")].empty:
        raise ValueError(
            f"no training clip in {clips_dir} has a caption; the captioner needs some clips with a caption "
            "sidecar (<video>.txt next to a single-shot video)"
        )
    clips = load_clips(clips_dir, None, cfg.read.max_unreadable, cfg.read.shards_url)
    manifest = manifest[manifest.clip_id.isin(clips.keys())]  # an unreadable clip gets no caption
    given = manifest[manifest.caption.notna()]
    train_given = given[given.split == "train"]

    shapes = pd.Series([clips[c].shape for c in manifest.clip_id])
    shape = shapes.value_counts(sort=True).index[0] if len(shapes) else None  # the most common (T, H, W, 3)

    def stack(ids: pd.Series) -> np.ndarray:
        return np.stack([resample(clips[c], shape) for c in ids])

    with atomic_dir(output_dir) as out:
        stats = train_captioner(
            cfg.caption, stack(train_given.clip_id), list(train_given.caption), out / CAPTIONER_DIR
        )
        ref = load_captioner(out / CAPTIONER_DIR)
        metrics = {**stats, "captioner": ref.name, "captioner_sha256": ref.sha256}
        # Held-out accuracy: captioned validation clips the captioner never saw.
        val_given = given[given.split == "val"]
        if len(val_given):
            pred = generate_captions(out / CAPTIONER_DIR, stack(val_given.clip_id))
            truth = [c.lower() for c in val_given.caption]
            metrics["val_exact_match"] = float(np.mean([p == t for p, t in zip(pred, truth, strict=True)]))
            metrics["val_caption_match"] = caption_match(pred, truth)  # informative words only
            metrics["val_clips"] = len(val_given)
        missing = manifest[manifest.caption.isna()]
        generated = generate_captions(out / CAPTIONER_DIR, stack(missing.clip_id)) if len(missing) else []
        rows = pd.concat(
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
                        "captioner": ref.name,
                    }
                ),
            ],
            ignore_index=True,
        )
        rows.to_parquet(out / CAPTIONS, index=False)
    metrics.update(clips=len(rows), given=len(given), generated=len(generated), unreadable=clips.unreadable)
    write_json_atomic(metrics_path, metrics)
    return CaptionResult(len(rows), len(given), len(generated), ref.name, metrics)
