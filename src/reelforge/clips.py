"""The clip store: tar shards of uint8 `.npy` clips plus `manifest.parquet` (one row per clip).

Shards are WebDataset-style (one member per clip, named by clip id) so they stream at scale; here the
whole demo set fits in memory and `load_clips` reads it at once.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

MANIFEST = "manifest.parquet"
REJECTS = "rejects.parquet"


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a scratch dir that replaces `path` only when the block ends: a crash leaves nothing trusted."""
    final = Path(path)
    tmp = final.with_name(final.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    yield tmp
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)


def write_json_atomic(path: str | Path, obj: object) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


class ShardWriter:
    """Appends clips to `shard-NNNNN.tar` files of at most `max_clips` members each."""

    def __init__(self, out_dir: Path, max_clips: int):
        self.out_dir, self.max_clips = out_dir, max_clips
        self.index, self.count, self.tar = -1, 0, None

    def write(self, clip_id: str, frames: np.ndarray) -> str:
        if self.tar is None or self.count >= self.max_clips:
            self.close()
            self.index, self.count = self.index + 1, 0
            self.tar = tarfile.open(self.out_dir / self.name, "w")
        buf = io.BytesIO()
        np.save(buf, frames)
        info = tarfile.TarInfo(f"{clip_id}.npy")
        info.size = buf.tell()
        buf.seek(0)
        self.tar.addfile(info, buf)
        self.count += 1
        return self.name

    @property
    def name(self) -> str:
        return f"shard-{self.index:05d}.tar"

    def close(self) -> None:
        if self.tar is not None:
            self.tar.close()
            self.tar = None


def read_manifest(clips_dir: str | Path) -> pd.DataFrame:
    return pd.read_parquet(Path(clips_dir) / MANIFEST)


def load_clips(clips_dir: str | Path, clip_ids: list[str] | None = None) -> dict[str, np.ndarray]:
    """clip_id -> (T, H, W, 3) uint8 for the given ids (all when None)."""
    clips_dir = Path(clips_dir)
    manifest = read_manifest(clips_dir)
    wanted = set(manifest.clip_id if clip_ids is None else clip_ids)
    out: dict[str, np.ndarray] = {}
    for shard in sorted(manifest.shard.unique()):
        with tarfile.open(clips_dir / shard) as tar:
            for member in tar:
                clip_id = member.name.removesuffix(".npy")
                if clip_id in wanted:
                    out[clip_id] = np.load(io.BytesIO(tar.extractfile(member).read()))
    missing = wanted - out.keys()
    if missing:
        raise FileNotFoundError(f"{len(missing)} clips listed in the manifest are missing from the shards")
    return out
