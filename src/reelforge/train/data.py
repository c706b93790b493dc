"""Training data: clips and captions in the space the model trains in, with their identity.

Pixel space: clips as (N, T, 3, H, W) floats in [-1, 1]. Latent space: the frozen autoencoder's latents,
computed once and cached under the latent-cache folder by a key of the autoencoder weights and the clips,
so a rerun (or another rank) reads them instead of encoding again.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from reelforge.caption.captioner import CAPTIONS, read_captions
from reelforge.config import ClipParams, ReadParams, TrainParams
from reelforge.data.store import MANIFEST, load_clips, read_manifest
from reelforge.files import dir_sha256, file_sha256
from reelforge.model.autoencoder import Autoencoder
from reelforge.model.pixels import to_model
from reelforge.model.text import PretrainedTextEncoder, PromptTokenizer, train_tokenizer


@dataclass
class TrainData:
    train_x: torch.Tensor  # (N, T, C, H, W) in the training space
    train_ids: torch.Tensor  # (N, L)
    val_x: torch.Tensor | None
    val_ids: torch.Tensor | None
    tokenizer: PromptTokenizer
    identity: dict[str, str]  # what the data is, for the run key and MLflow params


def _encode(autoencoder: Autoencoder, frames: np.ndarray, cache: Path | None, name: str) -> torch.Tensor:
    """Clips -> training space. Latents are cached under `cache` by `name` (autoencoder weights and clips)."""
    if autoencoder.vae is None:
        return to_model(frames)  # (N, T, 3, H, W)
    path = cache / f"latents-{name}.pt" if cache else None
    if path and path.exists():
        return torch.load(path, weights_only=True)
    z = torch.cat([autoencoder.encode(to_model(frames[i : i + 8])) for i in range(0, len(frames), 8)])
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".partial{os.getpid()}")
        torch.save(z, tmp)
        os.replace(tmp, path)  # concurrent ranks write the same bytes; the last rename wins
    return z


def load_data(
    cfg: TrainParams,
    clip: ClipParams,
    read: ReadParams,
    clips_dir: Path,
    captions_dir: Path,
    autoencoder: Autoencoder,
    cache: Path | None,
) -> TrainData:
    clips = load_clips(clips_dir, max_unreadable=read.max_unreadable)
    manifest = read_manifest(clips_dir)
    manifest = manifest[manifest.clip_id.isin(clips.keys())]
    captions = read_captions(captions_dir).set_index("clip_id").caption
    splits = {s: manifest[manifest.split == s] for s in ("train", "val")}
    if splits["train"].empty:
        raise ValueError(f"{clips_dir}/{MANIFEST} has no training clips")
    texts = {s: [captions[c] for c in df.clip_id] for s, df in splits.items()}
    if cfg.text_encoder_path:
        tokenizer = PretrainedTextEncoder.tokenizer(cfg.text_encoder_path, cfg.max_text_tokens)
    else:
        tokenizer = PromptTokenizer(train_tokenizer(texts["train"]), cfg.max_text_tokens)
    identity = {
        "data.manifest_sha256": file_sha256(clips_dir / MANIFEST),
        "data.captions_sha256": file_sha256(captions_dir / CAPTIONS),
        "model.text_encoder": cfg.text_encoder_path or "trained here (word-level tokenizer on the captions)",
        "model.vae": cfg.vae_path or "none (pixel space)",
        "data.unreadable_clips": _listed(clips.unreadable),
    }
    if cfg.vae_path:
        identity["model.vae_sha256"] = dir_sha256(cfg.vae_path)
    key = hashlib.sha256(json.dumps([identity, clip.model_dump()]).encode()).hexdigest()
    x = {}
    for s, df in splits.items():
        frames = np.stack([clips[c] for c in df.clip_id]) if len(df) else None
        x[s] = _encode(autoencoder, frames, cache, f"{key[:24]}-{s}") if frames is not None else None
    return TrainData(
        x["train"],
        tokenizer(texts["train"]),
        x["val"],
        tokenizer(texts["val"]) if texts["val"] else None,
        tokenizer,
        identity,
    )


def _listed(unreadable: list[dict]) -> str:
    """The skipped clips, for the run's params: how many, and the first few by shard and member."""
    first = ", ".join(f"{u['shard']}:{u['member']}" for u in unreadable[:5])
    return f"{len(unreadable)}" + (f" ({first}{', ...' if len(unreadable) > 5 else ''})" if first else "")
