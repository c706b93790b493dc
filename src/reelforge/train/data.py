"""Training data: clips and captions in the space the model trains in, with their identity.

Clips come in several shapes (the `clip.buckets` table): each sample carries its bucket (`buckets`, an
index into `shapes`), and a batch is always of one bucket (`reelforge.train.module.BatchStream`).

Pixel space: clips streamed from the store (`StreamedPixels`): a batch is decoded when the data stream asks
for it, in DataLoader workers when `read.loader_workers` > 0, so memory does not grow with the dataset.
Latent space: the frozen autoencoder's latents, computed once into the latent cache (chunk files keyed by
the autoencoder's weights and the clips, `reelforge.train.latents`) and streamed from it the same way
(`StreamedLatents`), so a rerun (or another rank) reads them instead of encoding again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from reelforge.caption.captioner import CAPTIONS, read_captions
from reelforge.config import ClipParams, LatentParams, ReadParams, TrainParams
from reelforge.data.store import MANIFEST, StoredClips, read_manifest
from reelforge.files import dir_sha256, file_sha256
from reelforge.model.autoencoder import Autoencoder
from reelforge.model.pixels import to_model
from reelforge.model.text import PretrainedTextEncoder, PromptTokenizer, train_tokenizer
from reelforge.train.latents import StreamedLatents, cached_latents


class StreamedPixels:
    """Stored clips as a training-space tensor that decodes on indexing: `x[idx]` is (B, T, 3, H, W) in
    [-1, 1], read and decoded clip by clip. A clip that does not decode is replaced in its batch by the
    batch's first readable clip (so batches keep their size, and a rerun sees the same batch); the store's
    reader names it and fails past the `read.max_unreadable` budget."""

    def __init__(self, stored: StoredClips):
        self.stored = stored
        shapes, self.buckets = np.unique(stored.shape.reshape(-1, 3), axis=0, return_inverse=True)
        self.buckets = self.buckets.reshape(-1)
        self.shapes = [torch.Size((int(t), 3, int(h), int(w))) for t, h, w in shapes]  # (T, C, H, W)

    def __len__(self) -> int:
        return len(self.stored)

    def __getitem__(self, idx: torch.Tensor | np.ndarray | list[int]) -> torch.Tensor:
        frames = [self.stored.frames(int(i)) for i in idx]
        good = next((f for f in frames if f is not None), None)
        if good is None:
            raise ValueError(f"no clip of a batch of {len(frames)} decoded: {self.stored.unreadable[-5:]}")
        return to_model(np.stack([good if f is None else f for f in frames]))


def most_common_shape(x: StreamedPixels | StreamedLatents) -> torch.Size:
    """(T, C, H, W) of the bucket with the most samples: the shape a model generates by default."""
    return x.shapes[int(np.bincount(x.buckets, minlength=len(x.shapes)).argmax())]


class TokenizedCaptions:
    """Captions tokenized when a batch asks for them: `ids[idx]` is (B, L), each row padded or cut to L on
    its own, so the same as tokenizing them all at once, without holding N x L ids (or the tokenizer's
    per-caption encodings, ~2.5 KB each) for the whole set. The captions are held as one UTF-8 buffer and
    their end offsets: no Python string per clip (`StoredClips` says why)."""

    def __init__(self, texts: list[str], tokenizer: PromptTokenizer):
        encoded = [t.encode() for t in texts]
        self.buffer = np.frombuffer(b"".join(encoded), np.uint8)
        self.ends = np.cumsum([len(e) for e in encoded], dtype=np.int64)
        self.tokenizer = tokenizer

    def __len__(self) -> int:
        return len(self.ends)

    def text(self, i: int) -> str:
        return self.buffer[self.ends[i - 1] if i else 0 : self.ends[i]].tobytes().decode()

    def __getitem__(self, idx: torch.Tensor | np.ndarray | list[int]) -> torch.Tensor:
        return self.tokenizer([self.text(int(i)) for i in idx])


@dataclass
class TrainData:
    train_x: StreamedPixels | StreamedLatents  # N samples in the training space, indexed by batch
    train_ids: TokenizedCaptions  # (N, L) token ids, indexed by batch
    val_x: StreamedPixels | StreamedLatents | None
    val_ids: TokenizedCaptions | None
    tokenizer: PromptTokenizer
    identity: dict[str, str]  # what the data is, for the run key and MLflow params
    pixel_shapes: list[torch.Size]  # (T, 3, H, W) of the training clips' buckets, the most common first


def load_data(
    cfg: TrainParams,
    clip: ClipParams,
    read: ReadParams,
    clips_dir: Path,
    captions_dir: Path,
    autoencoder: Autoencoder,
    cache: Path | None,
    latents: LatentParams | None = None,
) -> TrainData:
    """The splits in the training space. In latent space (`cfg.vae_path`), `cache` is the latent cache's
    folder, computed as `latents` says."""
    if cfg.vae_path and cache is None:
        raise ValueError("training in latent space (train.vae_path) needs a latent cache folder")
    captions = read_captions(captions_dir).set_index("clip_id").caption
    manifest = read_manifest(clips_dir, ["clip_id", "split"])
    manifest = manifest[manifest.clip_id.isin(captions.index)]  # the captioner skipped unreadable clips
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
    }
    if cfg.vae_path:
        identity["model.vae_sha256"] = dir_sha256(cfg.vae_path)
    x, shapes = {}, []
    for s, df in splits.items():
        pixels = StreamedPixels(
            StoredClips(clips_dir, list(df.clip_id), read.max_unreadable, read.shards_url)
        )
        if s == "train":
            common = most_common_shape(pixels)
            shapes = [common] + [shape for shape in pixels.shapes if shape != common]
        if cfg.vae_path and len(df):  # the same clips and settings: the same cache folder
            blob = [identity["data.manifest_sha256"], clip.model_dump(), list(df.clip_id)]
            key = hashlib.sha256(json.dumps(blob).encode()).hexdigest()
            vae = identity["model.vae_sha256"]
            x[s] = cached_latents(cfg.vae_path, vae, pixels, key, cache, latents or LatentParams())
        else:
            x[s] = pixels if len(df) else None
    return TrainData(
        x["train"],
        TokenizedCaptions(texts["train"], tokenizer),
        x["val"],
        TokenizedCaptions(texts["val"], tokenizer) if texts["val"] else None,
        tokenizer,
        identity,
        shapes,
    )
