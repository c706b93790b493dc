"""The clip store: tar shards of encoded clips plus `manifest.parquet` (one row per clip).

Shards are WebDataset-style: per clip, `<clip_id>.mp4` (the frames ingest produced, encoded with params'
`ingest.codec`, `crf`, `preset` and `pix_fmt`) and `<clip_id>.json` (its shape, timing and source), and the
manifest's `member_offset` and `encoded_bytes` give each MP4's byte range, so one clip is one ranged read
(`StoredClips`) from a local store or an object store.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import av
import fsspec
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from reelforge.data.video import decode_bytes
from reelforge.files import write_json_atomic

MANIFEST = "manifest.parquet"
REJECTS = "rejects.parquet"
SOURCES = "sources.parquet"
SHARDS, LEDGER, STORE_JSON = "shards", "ledger", "store.json"
# What a shard member is and how the manifest finds it. Stores without a format hold raw uint8 `.npy` clips;
# `encoded-mp4-v1` stores lack the manifest's `member_offset`, v2 its `bucket`. Ingest rebuilds them, readers
# refuse them.
FORMAT = "encoded-mp4-v3"
log = logging.getLogger(__name__)


class OldStoreFormat(ValueError):
    """The store was written in a format this version does not read."""


class ClipStore:
    """An append-only clip store that a kill at any moment cannot corrupt.

    Layout: `shards/NNNNNN.tar` (WebDataset-style: `<clip_id>.mp4` and `<clip_id>.json` per clip)
    and, per shard, a committed *part* in `ledger/`: `NNNNNN.clips.parquet`, `NNNNNN.rejects.parquet`
    and, written last, `NNNNNN.sources.parquet` — the commit marker. Every file is written under a
    `.partial` name and renamed into place. On open, anything not covered by a commit marker is deleted,
    so a rerun after a crash neither trusts a half-written shard nor sees its clips twice.
    `manifest.parquet`, `rejects.parquet` and `sources.parquet` are the committed parts consolidated
    (rewritten atomically by `consolidate`). `store.json` holds the store's format and the settings that
    shape clips; if either changes, the store restarts and says why (`restart_reason`).
    """

    def __init__(self, root: str | Path, settings: dict):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / SHARDS).mkdir(exist_ok=True)
        (self.root / LEDGER).mkdir(exist_ok=True)
        saved = self.root / STORE_JSON
        settings = {"format": FORMAT, **settings}
        before = json.loads(saved.read_text()) if saved.exists() else None
        self.restart_reason = _restart_reason(before, settings)
        self.restarted = self.restart_reason is not None
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

    def add_clip(self, row: dict, data: bytes, meta: dict) -> None:
        """Append one encoded clip (`data`, MP4 bytes) and its JSON metadata as two members."""
        if self._tar is None:
            self._tar = tarfile.open(self.root / (self.shard + ".partial"), "w")
        offsets = []
        for suffix, payload in (("mp4", data), ("json", json.dumps(meta, sort_keys=True).encode())):
            info = tarfile.TarInfo(f"{row['clip_id']}.{suffix}")
            info.size = len(payload)
            header = info.tobuf(self._tar.format, self._tar.encoding, self._tar.errors)
            offsets.append(self._tar.offset + len(header))  # where the member's bytes start
            self._tar.addfile(info, io.BytesIO(payload))
            self.bytes += info.size
        # The MP4's byte range (member_offset, encoded_bytes) lets a reader fetch one clip without the shard.
        self.clips.append({**row, "shard": self.shard, "member_offset": offsets[0]})

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


def read_manifest(clips_dir: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    return pd.read_parquet(Path(clips_dir) / MANIFEST, columns=columns)


def check_format(clips_dir: str | Path) -> None:
    """Refuse a store this version would misread, with the fix."""
    saved = Path(clips_dir) / STORE_JSON
    found = json.loads(saved.read_text()).get("format") if saved.exists() else None
    if found != FORMAT:
        raise OldStoreFormat(
            f"{clips_dir} holds clips in format {found or 'npy (raw uint8 clips)'}, not {FORMAT}: "
            "rebuild it with `dvc repro ingest` (or `reelforge ingest`), which restarts the store"
        )


class Clips(dict):
    """clip_id -> (T, H, W, 3) uint8 frames of the clips that decoded; `unreadable` lists the others, each
    with its shard, member and error."""

    def __init__(self, frames: dict[str, np.ndarray], unreadable: list[dict]):
        super().__init__(frames)
        self.unreadable = unreadable


class UnreadableClips(ValueError):
    """More clips failed to decode than the reading stage's budget (`read.max_unreadable`) allows."""


class StoredClips:
    """Clips of a store, read one at a time by the byte range the manifest gives (`shard`, `member_offset`,
    `encoded_bytes`) and decoded on demand: nothing but the index is held in memory.

    `url` is where the shards are read from: the store itself, or any fsspec URL holding a copy of its
    `shards/` (e.g. `s3://bucket/clips`). A clip that fails to decode is recorded in `unreadable`, named by
    shard and member, and logged once; once more than `max_unreadable` of the clips here have failed, reading
    raises UnreadableClips. Picklable: each DataLoader worker opens its own filesystem handle, and counts
    the failures it meets against the budget itself."""

    def __init__(
        self,
        clips_dir: str | Path,
        clip_ids: list[str] | None = None,
        max_unreadable: float = 0.0,
        url: str | None = None,
    ):
        check_format(clips_dir)
        columns = ["clip_id", "shard", "member_offset", "encoded_bytes", "num_frames", "height", "width"]
        manifest = read_manifest(clips_dir, columns).set_index("clip_id", drop=False)
        rows = manifest if clip_ids is None else manifest.loc[list(clip_ids)]
        # Flat arrays, no Python object per clip: 48 B a clip with 16-character ids, and no reference
        # counts for forked DataLoader workers to write to (docs/data.md, "Not yet").
        self.clip_ids = rows.clip_id.to_numpy().astype("S")  # ASCII ids (content hashes), bytes
        self.shards, shard = np.unique(rows.shard.to_numpy().astype(str), return_inverse=True)
        self.shard = shard.astype(np.int32)  # index into `shards` (sorted, so shard order is kept)
        self.offset = rows.member_offset.to_numpy(np.int64)
        self.size = rows.encoded_bytes.to_numpy(np.int64)
        self.shape = rows[["num_frames", "height", "width"]].to_numpy(np.int32)
        self.url = str(url or clips_dir).rstrip("/")
        self.max_unreadable = max_unreadable
        self.unreadable: list[dict] = []
        self._failed: set[int] = set()  # each clip counts once, however many epochs meet it
        self._fs, self._pid = None, None

    def __len__(self) -> int:
        return len(self.clip_ids)

    def clip_id(self, i: int) -> str:
        return self.clip_ids[i].decode()

    def ids(self, positions: np.ndarray) -> list[str]:
        return [c.decode() for c in self.clip_ids[positions]]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_fs": None}  # a filesystem handle is per process (fork or spawn)

    def read(self, i: int) -> bytes:
        """Clip i's encoded bytes: one ranged read of its shard."""
        if self._fs is None or self._pid != os.getpid():
            (self._fs, self._root), self._pid = fsspec.core.url_to_fs(self.url), os.getpid()
        start = int(self.offset[i])
        return self._fs.cat_file(
            f"{self._root}/{self.shards[self.shard[i]]}", start=start, end=start + int(self.size[i])
        )

    def frames(self, i: int, enforce_budget: bool = True) -> np.ndarray | None:
        """Clip i as (T, H, W, 3) uint8, or None when it does not decode to the manifest's shape (recorded
        in `unreadable`; past the budget this raises, unless `enforce_budget` is off)."""
        if i in self._failed:
            return None
        try:
            frames = decode_bytes(self.read(i))
            expected = (*self.shape[i], 3)
            if frames.shape != expected:
                raise ValueError(f"decoded {frames.shape}, the manifest says {expected}")
            return frames
        except (av.FFmpegError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"[:300]
            clip_id = self.clip_id(i)
            u = {"clip_id": clip_id, "shard": str(self.shards[self.shard[i]]), "member": f"{clip_id}.mp4"}
            self.unreadable.append({**u, "error": error})
            self._failed.add(i)
            log.warning("skipped an unreadable clip: %s member %s: %s", u["shard"], u["member"], error)
            if enforce_budget:
                self.check_budget()
            return None

    def record(self, failures: list[dict]) -> None:
        """Count failures met by another process's copy (a DataLoader worker's) here, each clip once, and
        check the budget."""
        for u in failures:
            i = int(np.flatnonzero(self.clip_ids == u["clip_id"].encode())[0])
            if i not in self._failed:
                self._failed.add(i)
                self.unreadable.append(u)
        self.check_budget()

    def check_budget(self) -> None:
        if len(self.unreadable) > self.max_unreadable * len(self):
            listed = "; ".join(f"{u['shard']}:{u['member']} ({u['error']})" for u in self.unreadable[:5])
            raise UnreadableClips(
                f"{len(self.unreadable)} of {len(self)} clips in {self.url} failed to decode, more than "
                f"read.max_unreadable={self.max_unreadable:g} allows: {listed}"
            )


class ClipBatches(Dataset):
    """Stored clips a batch at a time, for a DataLoader with `batch_size=None` and a sampler of index arrays:
    item `idx` is (the indices that decoded, their (B, T, H, W, 3) uint8 frames, or resampled to `shape`,
    and the failures met). The failures travel with the batch, so the reading process counts them against
    the budget whichever worker met them (`stream_clips`)."""

    def __init__(self, stored: StoredClips, shape: tuple[int, int, int, int] | None = None):
        self.stored, self.shape = stored, shape

    def __len__(self) -> int:
        return len(self.stored)

    def __getitem__(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, list[dict]]:
        met = len(self.stored.unreadable)
        kept, frames = [], []
        for i in idx:
            if (f := self.stored.frames(int(i), enforce_budget=False)) is not None:
                kept.append(int(i))
                frames.append(f if self.shape is None else resample(f, self.shape))
        return np.array(kept, np.int64), np.stack(frames) if frames else None, self.stored.unreadable[met:]


def _as_read(batch: tuple) -> tuple:
    return batch  # the arrays as ClipBatches made them (the default would turn them into tensors)


def stream_clips(
    stored: StoredClips,
    batches: Iterable[np.ndarray],
    workers: int = 0,
    shape: tuple[int, int, int, int] | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(indices, (B, T, H, W, 3) uint8 frames) of `stored`'s clips, batch by batch in the order of `batches`
    (index arrays), decoded in `workers` DataLoader processes (0: this one): nothing but the batches in
    flight is held. Clips that fail to decode are left out of their batch and recorded in `stored`, which
    raises UnreadableClips once they pass its budget."""
    loader = DataLoader(
        ClipBatches(stored, shape), batch_size=None, sampler=batches, num_workers=workers, collate_fn=_as_read
    )
    for kept, frames, failed in loader:
        stored.record(failed)
        if len(kept):
            yield kept, frames


def in_shard_order(stored: StoredClips, batch_size: int) -> list[np.ndarray]:
    """Every clip of `stored`, in batches of one clip shape that read each shard front to back."""
    t, h, w = stored.shape.T
    order = np.lexsort((stored.offset, stored.shard, w, h, t))
    same = np.split(order, np.flatnonzero(np.diff(stored.shape[order], axis=0).any(axis=1)) + 1)
    return [part[i : i + batch_size] for part in same for i in range(0, len(part), batch_size)]


def resample(frames: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """(T, H, W, 3) uint8 -> `shape` (T', H', W', 3): evenly spaced frames, resized (antialiased bilinear).
    A clip of that shape already is returned as it is."""
    if frames.shape == tuple(shape):
        return frames
    t, h, w, _ = shape
    x = torch.from_numpy(frames[np.linspace(0, len(frames) - 1, t).round().astype(int)]).permute(0, 3, 1, 2)
    x = torch.nn.functional.interpolate(x.float(), size=(h, w), mode="bilinear", antialias=True)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def load_clips(
    clips_dir: str | Path,
    clip_ids: list[str] | None = None,
    max_unreadable: float = 0.0,
    url: str | None = None,
) -> Clips:
    """The given clips (all when None), decoded into memory: for sets known to be small (a study's
    validation clips, a test's); the stages stream instead (`stream_clips`). Unreadable clips are skipped
    and reported within `max_unreadable`, as `StoredClips` does, with every failure named."""
    stored = StoredClips(clips_dir, clip_ids, max_unreadable, url)
    out = {}
    for kept, frames in stream_clips(stored, in_shard_order(stored, 64)):
        out.update(zip(stored.ids(kept), frames, strict=True))
    return Clips(out, stored.unreadable)


def _restart_reason(before: dict | None, now: dict) -> str | None:
    """Why a store written with `before` cannot be appended to with `now`; None when it can."""
    if before is None or before == now:
        return None
    if before.get("format") != FORMAT:
        return (
            f"written in format {before.get('format', 'npy (raw uint8 clips)')}, this version writes {FORMAT}"
        )
    return "the settings that shape clips changed: " + ", ".join(sorted(_changed(before, now)))


def _changed(before: dict, after: dict, prefix: str = "") -> set[str]:
    out = set()
    for k in set(before) | set(after):
        a, b = before.get(k), after.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out |= _changed(a, b, f"{prefix}{k}.")
        elif a != b:
            out.add(f"{prefix}{k}")
    return out
