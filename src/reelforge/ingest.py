"""Ingest: raw videos -> shots -> normalised clips in tar shards, `manifest.parquet` and `rejects.parquet`.

Every input video ends up as at least one clip or as a reject row with a reason; nothing is dropped silently.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from rich.progress import Progress

from reelforge.clips import MANIFEST, REJECTS, ShardWriter, atomic_dir, write_json_atomic
from reelforge.config import ClipConfig, IngestConfig
from reelforge.video import VIDEO_EXTENSIONS, decode_resized, probe

DETECT_SIZE = 16  # shot detection compares 16x16 thumbnails: cheap, and blind to small motion


@dataclass(frozen=True)
class IngestResult:
    inputs: int
    clips: int
    rejects: int
    summary: dict


@dataclass
class VideoOutcome:
    source_path: str
    clips: list[tuple[dict, np.ndarray]]
    reject_reason: str | None = None


def find_videos(input_dir: Path) -> list[Path]:
    """Files with a video extension (any case), recursively, in a stable order."""
    return sorted(p for p in input_dir.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)


def detect_cuts(thumbs: np.ndarray, threshold: float) -> list[int]:
    """Frame indices where a new shot starts (0 included). thumbs: (N, h, w, 3) uint8."""
    x = thumbs.astype(np.float32) / 255.0
    change = np.abs(np.diff(x, axis=0)).mean(axis=(1, 2, 3))  # (N-1,)
    return [0] + [int(i) + 1 for i in np.flatnonzero(change > threshold)]


def _thumb(frame: np.ndarray) -> np.ndarray:
    s = frame.shape[0] // DETECT_SIZE
    return (
        frame
        if s <= 1
        else frame[: s * DETECT_SIZE, : s * DETECT_SIZE]
        .reshape(DETECT_SIZE, s, DETECT_SIZE, s, 3)
        .mean(axis=(1, 3))
    )


def cut_clips(
    times: np.ndarray,
    frames: np.ndarray,
    cuts: list[int],
    src_fps: float,
    clip: ClipConfig,
    max_clips_per_shot: int,
) -> list[tuple[float, float, np.ndarray]]:
    """Resample each shot to clip.fps; cut consecutive clips of clip.num_frames. A clip never spans a cut."""
    out = []
    bounds = cuts + [len(frames)]
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        start = times[a]
        end = times[b] if b < len(frames) else times[b - 1] + 1.0 / src_fps
        n = min(max_clips_per_shot, math.floor((end - start) / clip.duration_s + 1e-6))
        for j in range(n):
            t = start + j * clip.duration_s + np.arange(clip.num_frames) / clip.fps  # (num_frames,)
            # The latest source frame at or before each target time (within this shot).
            idx = np.clip(np.searchsorted(times[a:b], t + 1e-6, side="right") - 1, 0, b - a - 1) + a
            out.append((float(t[0]), float(t[0] + clip.duration_s), frames[idx]))
    return out


def process_video(path: Path, input_root: Path, clip: ClipConfig, cfg: IngestConfig) -> VideoOutcome:
    rel = str(path.relative_to(input_root))
    try:
        size_mb = path.stat().st_size / 2**20
        if size_mb == 0:
            return VideoOutcome(rel, [], "empty file")
        if size_mb > cfg.max_file_mb:
            return VideoOutcome(rel, [], f"file is {size_mb:.0f} MB > ingest.max_file_mb={cfg.max_file_mb}")
        info = probe(path)
        if info.duration_s > cfg.max_duration_s:
            return VideoOutcome(rel, [], f"duration {info.duration_s:.0f}s > ingest.max_duration_s")
        decoded = list(decode_resized(path, clip.size))
    except Exception as exc:  # noqa: BLE001 - any decoder failure is this file's reject reason
        return VideoOutcome(rel, [], f"decode error: {type(exc).__name__}: {exc}".strip()[:300])
    if len(decoded) < 2:
        return VideoOutcome(rel, [], f"only {len(decoded)} decodable frames")
    times = np.array([t for t, _ in decoded])
    frames = np.stack([f for _, f in decoded])  # (N, size, size, 3)
    src_fps = info.fps or (len(times) - 1) / max(times[-1] - times[0], 1e-6)
    cuts = detect_cuts(np.stack([_thumb(f) for f in frames]), cfg.shot_threshold)
    pieces = cut_clips(times, frames, cuts, src_fps, clip, cfg.max_clips_per_shot)
    if not pieces:
        return VideoOutcome(rel, [], f"no shot lasts {clip.duration_s:.2f}s (clip.num_frames / clip.fps)")
    sidecar = path.with_suffix(".txt")
    caption = sidecar.read_text().strip() or None if sidecar.exists() and len(cuts) == 1 else None
    rows = []
    for start_s, end_s, clip_frames in pieces:
        clip_id = hashlib.sha256(clip_frames.tobytes()).hexdigest()[:16]  # content hash: deterministic
        rows.append(
            (
                {
                    "clip_id": clip_id,
                    "source_path": rel,
                    "start_s": round(start_s, 4),
                    "end_s": round(end_s, 4),
                    "num_frames": clip.num_frames,
                    "fps": clip.fps,
                    "width": clip.size,
                    "height": clip.size,
                    "caption": caption,
                    "num_shots_in_source": len(cuts),
                    "source_fps": round(src_fps, 3),
                    "source_width": info.width,
                    "source_height": info.height,
                    "source_codec": info.codec,
                },
                clip_frames,
            )
        )
    return VideoOutcome(rel, rows)


def assign_splits(sources: list[str], val_fraction: float) -> dict[str, str]:
    """Split by source video (no video feeds both sides), ordered by a hash of its path: deterministic."""
    ranked = sorted(sources, key=lambda s: hashlib.sha256(s.encode()).hexdigest())
    n_val = math.ceil(len(ranked) * val_fraction) if val_fraction > 0 and len(ranked) > 1 else 0
    return {s: ("val" if i < n_val else "train") for i, s in enumerate(ranked)}


def run(
    cfg: IngestConfig,
    clip: ClipConfig,
    input_dir: str | Path,
    output_dir: str | Path,
    summary_path: str | Path,
) -> IngestResult:
    input_dir = Path(input_dir).resolve()
    if not input_dir.is_dir():
        raise FileNotFoundError(f"input directory {input_dir} does not exist")
    videos = find_videos(input_dir)
    outcomes: list[VideoOutcome] = []
    with ProcessPoolExecutor(cfg.workers) as pool, Progress() as progress:
        task = progress.add_task("ingest", total=len(videos))
        futures = [pool.submit(process_video, v, input_dir, clip, cfg) for v in videos]
        for fut in futures:  # in input order, so shards and manifest are deterministic
            outcomes.append(fut.result())
            progress.advance(task)

    splits = assign_splits([o.source_path for o in outcomes if o.clips], cfg.val_fraction)
    rows, seen = [], set()
    with atomic_dir(output_dir) as out:
        writer = ShardWriter(out, cfg.shard_max_clips)
        for o in outcomes:
            for row, frames in o.clips:
                if row["clip_id"] in seen:  # identical pixels twice: keep one
                    continue
                seen.add(row["clip_id"])
                rows.append(
                    {**row, "split": splits[o.source_path], "shard": writer.write(row["clip_id"], frames)}
                )
        writer.close()
        manifest = pd.DataFrame(rows)
        rejects = pd.DataFrame(
            [
                {"source_path": o.source_path, "reason": o.reject_reason, "stage": "ingest"}
                for o in outcomes
                if o.reject_reason
            ],
            columns=["source_path", "reason", "stage"],
        )
        manifest.to_parquet(out / MANIFEST, index=False)
        rejects.to_parquet(out / REJECTS, index=False)

    reasons = Counter(r.split(":")[0] for r in rejects.reason)
    summary = {
        "inputs": len(videos),
        "clips": len(manifest),
        "rejects": len(rejects),
        "rejects_by_reason": dict(reasons),
        "source_videos_with_clips": len(splits),
        "clip_hours": round(len(manifest) * clip.duration_s / 3600, 4),
        "train_clips": int((manifest.split == "train").sum()) if len(manifest) else 0,
        "val_clips": int((manifest.split == "val").sum()) if len(manifest) else 0,
    }
    write_json_atomic(summary_path, summary)
    return IngestResult(len(videos), len(manifest), len(rejects), summary)
