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
from pathlib import Path

import numpy as np
import pandas as pd

from reelforge.files import write_json_atomic

MANIFEST = "manifest.parquet"
REJECTS = "rejects.parquet"
SOURCES = "sources.parquet"
SHARDS, LEDGER, STORE_JSON = "shards", "ledger", "store.json"


class ClipStore:
    """An append-only clip store that a kill at any moment cannot corrupt.

    Layout: `shards/NNNNNN.tar` (WebDataset-style: one `<clip_id>.npy` member per clip) and, per shard, a
    committed *part* in `ledger/`: `NNNNNN.clips.parquet`, `NNNNNN.rejects.parquet` and, written last,
    `NNNNNN.sources.parquet` — the commit marker. Every file is written under a `.partial` name and
    renamed into place. On open, anything not covered by a commit marker is deleted, so a rerun after a
    crash neither trusts a half-written shard nor sees its clips twice. `manifest.parquet`,
    `rejects.parquet` and `sources.parquet` are the committed parts consolidated (rewritten atomically by
    `consolidate`). `store.json` holds the settings that shape clips; if they change, the store restarts.
    """

    def __init__(self, root: str | Path, settings: dict):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / SHARDS).mkdir(exist_ok=True)
        (self.root / LEDGER).mkdir(exist_ok=True)
        saved = self.root / STORE_JSON
        self.restarted = saved.exists() and json.loads(saved.read_text()) != settings
        if self.restarted:
            for sub in (SHARDS, LEDGER):
                shutil.rmtree(self.root / sub)
                (self.root / sub).mkdir()
        write_json_atomic(saved, settings)
        self.recovered = self._recover()

    def _committed(self) -> list[str]:
        return sorted(p.name.split(".")[0] for p in (self.root / LEDGER).glob("*.sources.parquet"))

    def _recover(self) -> int:
        """Delete every file no commit marker covers; return how many."""
        keep = set(self._committed())
        removed = 0
        for sub in (SHARDS, LEDGER):
            for p in (self.root / sub).iterdir():
                if p.name.endswith(".partial") or p.name.split(".")[0] not in keep:
                    p.unlink()
                    removed += 1
        return removed

    def tables(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """(clips, rejects, sources) of every committed part, in commit order."""
        parts = self._committed()
        out = []
        for kind in ("clips", "rejects", "sources"):
            frames = [pd.read_parquet(self.root / LEDGER / f"{p}.{kind}.parquet") for p in parts]
            frames = [f for f in frames if len(f)]
            out.append(pd.concat(frames, ignore_index=True) if frames else pd.DataFrame())
        return out[0], out[1], out[2]

    def next_part(self) -> Part:
        parts = self._committed()
        return Part(self.root, int(parts[-1]) + 1 if parts else 0)

    def consolidate(self, columns: dict[str, list[str]]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """Write manifest.parquet, rejects.parquet and sources.parquet from the committed parts."""
        tables = self.tables()
        for name, table in zip((MANIFEST, REJECTS, SOURCES), tables, strict=True):
            table = table.reindex(columns=list(dict.fromkeys(columns[name] + list(table.columns))))
            tmp = self.root / (name + ".partial")
            table.to_parquet(tmp, index=False)
            os.replace(tmp, self.root / name)
        return tables


class Part:
    """One shard of clips plus the ledger rows of the sources processed into it."""

    def __init__(self, root: Path, index: int):
        self.root, self.index = root, index
        self.shard = f"{SHARDS}/{index:06d}.tar"
        self.clips: list[dict] = []
        self.rejects: list[dict] = []
        self.sources: list[dict] = []
        self.bytes = 0
        self._tar: tarfile.TarFile | None = None

    def add_clip(self, row: dict, frames: np.ndarray) -> None:
        if self._tar is None:
            self._tar = tarfile.open(self.root / (self.shard + ".partial"), "w")
        buf = io.BytesIO()
        np.save(buf, frames)
        info = tarfile.TarInfo(f"{row['clip_id']}.npy")
        info.size = buf.tell()
        buf.seek(0)
        self._tar.addfile(info, buf)
        self.bytes += info.size
        self.clips.append({**row, "shard": self.shard})

    def commit(self) -> None:
        """Make the part durable: shard, then clip and reject rows, then the sources marker."""
        if self._tar is not None:
            self._tar.close()
            _fsync_replace(self.root / (self.shard + ".partial"), self.root / self.shard)
        for kind, rows in (("clips", self.clips), ("rejects", self.rejects), ("sources", self.sources)):
            final = self.root / LEDGER / f"{self.index:06d}.{kind}.parquet"
            tmp = final.with_name(final.name + ".partial")
            pd.DataFrame(rows).to_parquet(tmp, index=False)
            _fsync_replace(tmp, final)


def _fsync_replace(tmp: Path, final: Path) -> None:
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)


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
