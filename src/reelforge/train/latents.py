"""The latent cache: the clips of a split encoded once by the frozen autoencoder, in chunk files keyed by
the autoencoder's weights, and read back a batch at a time, so training streams latents as it streams
pixels.

    <cache>/latents-<autoencoder sha256[:16]>-<clips key[:16]>/
        b<bucket>-<chunk>.npy   float32 (n, T', c, h, w): clips [chunk * C, (chunk + 1) * C) of the bucket
        index.json              written last: what the folder holds; a folder without it is not read

Each chunk file is written whole (a temporary name, then a rename), so a run killed while encoding leaves
only whole chunks, and the next run encodes only the ones missing. The chunks are encoded by the training
process (`latents.executor: local`) or by a Ray Data actor pool (`ray`), each actor loading the autoencoder
once (`latents.gpus_per_actor` GPUs each on GPU nodes): the same `ChunkEncoder`, so the same bytes.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from reelforge.config import LatentParams
from reelforge.files import write_json_atomic
from reelforge.model.autoencoder import Autoencoder
from reelforge.ray_session import ray_session

if TYPE_CHECKING:
    from reelforge.train.data import StreamedPixels

INDEX = "index.json"


def cache_folder(cache: Path, vae_sha256: str, clips_key: str) -> Path:
    return cache / f"latents-{vae_sha256[:16]}-{clips_key[:16]}"


@dataclass(frozen=True)
class Chunk:
    bucket: int
    index: int  # of the bucket's chunks

    @property
    def name(self) -> str:
        return f"b{self.bucket}-{self.index:06d}.npy"


def _members(buckets: np.ndarray, n_buckets: int) -> list[np.ndarray]:
    """Each bucket's samples in order: row r of bucket b's latents is sample members[b][r]."""
    return [np.flatnonzero(buckets == b) for b in range(n_buckets)]


class ChunkEncoder:
    """Encodes chunks into a cache folder with one autoencoder: in this process, or as a Ray Data actor
    (constructed once per actor, then called with batches of chunks)."""

    def __init__(self, vae_path: str, pixels: StreamedPixels, folder: Path, cfg: LatentParams):
        self.pixels, self.folder, self.cfg = pixels, Path(folder), cfg
        self.members = _members(pixels.buckets, len(pixels.shapes))
        device = "cuda" if cfg.gpus_per_actor > 0 and torch.cuda.is_available() else "cpu"
        self.autoencoder = Autoencoder(vae_path).to(device)
        self.device = device

    def encode(self, chunk: Chunk) -> str:
        """Write the chunk's file unless a whole one is there; its name."""
        path = self.folder / chunk.name
        if path.exists():
            return chunk.name
        c = self.cfg.chunk_clips
        rows = self.members[chunk.bucket][chunk.index * c : (chunk.index + 1) * c]
        step = self.cfg.batch_clips
        parts = [
            self.autoencoder.encode(self.pixels[rows[i : i + step]].to(self.device)).float().cpu()
            for i in range(0, len(rows), step)
        ]
        tmp = path.with_suffix(f".partial{os.getpid()}")
        with open(tmp, "wb") as f:
            np.save(f, torch.cat(parts).numpy())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return chunk.name

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:  # a Ray Data batch
        names = [
            self.encode(Chunk(int(b), int(i))) for b, i in zip(batch["bucket"], batch["index"], strict=True)
        ]
        return {"name": np.array(names), "device": np.array([str(self.device)] * len(names))}


def _chunks(pixels: StreamedPixels, chunk_clips: int) -> list[Chunk]:
    counts = np.bincount(pixels.buckets, minlength=len(pixels.shapes))
    return [Chunk(b, i) for b, n in enumerate(counts) for i in range(-(-int(n) // chunk_clips))]


def _encode_all(
    vae_path: str, pixels: StreamedPixels, folder: Path, cfg: LatentParams, chunks: list[Chunk]
) -> Iterator[tuple[str, str]]:
    """(chunk file, the device of the encoder that wrote it, or found it whole) for every chunk."""
    if cfg.executor == "local":
        encoder = ChunkEncoder(vae_path, pixels, folder, cfg)
        yield from ((encoder.encode(c), encoder.device) for c in chunks)
        return
    import ray

    with ray_session(cfg.ray_address, num_cpus=cfg.actors + 1):  # one CPU for Ray Data's own tasks
        items = [{"bucket": c.bucket, "index": c.index} for c in chunks]
        ds = ray.data.from_items(items, override_num_blocks=max(len(items), 1)).map_batches(
            ChunkEncoder, fn_constructor_args=(vae_path, pixels, folder, cfg), batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=cfg.actors), num_gpus=cfg.gpus_per_actor or None,
        )  # fmt: skip
        for row in ds.iter_rows():
            yield str(row["name"]), str(row["device"])


def cached_latents(
    vae_path: str, vae_sha256: str, pixels: StreamedPixels, clips_key: str, cache: Path, cfg: LatentParams
) -> StreamedLatents:
    """The split's latents from the cache folder of this autoencoder and these clips, encoding the chunks
    missing first. Ranks that share the cache take turns: the first encodes, the others then read."""
    folder = cache_folder(cache, vae_sha256, clips_key)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / INDEX).exists():
            _build(vae_path, pixels, folder, cfg, {"autoencoder_sha256": vae_sha256, "clips_key": clips_key})
    index = json.loads((folder / INDEX).read_text())
    shapes = [torch.Size(s) for s in index["shapes"]]
    return StreamedLatents(folder, pixels.buckets, shapes, index["chunk_clips"])


def _build(vae_path: str, pixels: StreamedPixels, folder: Path, cfg: LatentParams, identity: dict) -> None:
    """Encode every chunk not in `folder` yet, then write its index (the mark that it is whole)."""
    for partial in folder.glob("*.partial*"):  # a killed run's chunk, never renamed: never read
        partial.unlink()
    chunks = _chunks(pixels, cfg.chunk_clips)
    done = dict(_encode_all(vae_path, pixels, folder, cfg, chunks))
    missing = {c.name for c in chunks} - set(done)
    if missing:
        raise RuntimeError(f"the latent cache {folder} lacks {sorted(missing)} after encoding")
    first = [np.load(folder / Chunk(b, 0).name, mmap_mode="r") for b in range(len(pixels.shapes))]
    write_json_atomic(folder / INDEX, identity | {
        "chunk_clips": cfg.chunk_clips, "clips": len(pixels), "shapes": [list(f.shape[1:]) for f in first],
        "chunks": [c.name for c in chunks], "executor": cfg.executor, "devices": sorted(set(done.values())),
    })  # fmt: skip


class StreamedLatents:
    """The cache's latents as a training-space tensor that reads on indexing: `x[idx]` (indices of one
    bucket) is (B, T', c, h, w), rows of memory-mapped chunk files; nothing but the index is held."""

    def __init__(self, folder: Path, buckets: np.ndarray, shapes: list[torch.Size], chunk_clips: int):
        self.folder, self.buckets, self.shapes, self.chunk_clips = folder, buckets, shapes, chunk_clips
        self.row = np.empty(len(buckets), np.int64)  # each sample's row among its bucket's latents
        for members in _members(buckets, len(shapes)):
            self.row[members] = np.arange(len(members))
        self._open: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.buckets)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_open": {}}  # maps are per process (DataLoader workers)

    def _chunk(self, name: str) -> np.ndarray:
        if name not in self._open:
            if len(self._open) >= 64:  # bounded: the least recently opened map goes
                self._open.pop(next(iter(self._open)))
            self._open[name] = np.load(self.folder / name, mmap_mode="r")
        return self._open[name]

    def __getitem__(self, idx: torch.Tensor | np.ndarray | list[int]) -> torch.Tensor:
        idx = np.asarray(idx, np.int64)
        rows = [
            self._chunk(Chunk(int(self.buckets[i]), int(self.row[i]) // self.chunk_clips).name)[
                int(self.row[i]) % self.chunk_clips
            ]
            for i in idx
        ]
        return torch.from_numpy(np.stack(rows))
