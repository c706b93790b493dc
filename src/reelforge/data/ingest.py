"""Ingest: raw videos -> shots -> normalised clips in tar shards, `manifest.parquet` and `rejects.parquet`.

Every input ends up as clips or as reject rows with a reason and the stage that rejected it; nothing is
dropped silently. Reruns append: inputs already in the store are skipped, and a killed run loses at most
its uncommitted part (see `ClipStore`). Per-video work (`process_source`) is a pure function of one input,
run by local worker processes or by Ray Data; the driver alone decides duplicates and writes the store,
in input order, so both executors produce the same manifest.
"""

from __future__ import annotations

import hashlib
import math
import multiprocessing
import os
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
import pandas as pd
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from reelforge.config import ClipParams, IngestConfig, IngestParams
from reelforge.data.buckets import choose_size, frame_counts, listed_sizes
from reelforge.data.quality import NearDuplicateIndex, scores, signature, thumbnails
from reelforge.data.shots import RAW_BUDGET, Clip, ClipSampler, CutDetector
from reelforge.data.sources import Source, SourceRejected, list_sources, local_copy
from reelforge.data.store import MANIFEST, REJECTS, SOURCES, ClipStore
from reelforge.data.video import Probe, VideoFile, decode_bytes, encode_mp4, psnr_db, thumbnail, to_rgb
from reelforge.files import file_sha256, write_json_atomic
from reelforge.ray_session import ray_session

REJECT_COLUMNS = ["source_path", "stage", "reason", "detail", "start_s", "end_s", "duplicate_of", "motion",
                  "brightness", "contrast"]  # fmt: skip
SOURCE_COLUMNS = ["source_path", "outcome", "clips", "reason", "sha256", "size_bytes"]
CLIP_COLUMNS = ["clip_id", "source_path", "start_s", "end_s", "split", "shard", "caption", "bucket",
                "width", "height", "num_frames", "fps", "duration_s", "member_offset", "encoded_bytes",
                "psnr_db"]  # fmt: skip
# What each clip's JSON member in its shard says, beside the manifest row.
SHARD_META = [
    "clip_id",
    "source_path",
    "start_s",
    "end_s",
    "bucket",
    "width",
    "height",
    "num_frames",
    "fps",
    "duration_s",
]


@dataclass(frozen=True)
class IngestResult:
    inputs: int
    clips: int
    rejects: int
    summary: dict


@dataclass
class SourceOutcome:
    """What one worker learned about one input. `clips` pairs manifest rows with encoded clips (MP4)."""

    source: dict  # the sources.parquet row: probe, hash, decode facts
    clips: list[tuple[dict, bytes]] = field(default_factory=list)
    rejects: list[dict] = field(default_factory=list)


def _reject(uri: str, stage: str, reason: str, detail: str, **extra: object) -> dict:
    return {"source_path": uri, "stage": stage, "reason": reason, "detail": detail, **extra}


def process_source(source: Source, clip: ClipParams, cfg: IngestParams) -> SourceOutcome:
    """Fetch, check, probe, decode, cut and score one input. Never raises for a bad input."""
    out = SourceOutcome({"source_path": source.uri})
    try:
        with local_copy(source, int(cfg.max_file_mb * 2**20)) as path:
            out.source.update(size_bytes=path.stat().st_size, sha256=file_sha256(path))
            _decode_and_cut(path, source, clip, cfg, out)
            if not source.remote and path.with_suffix(".txt").is_file():
                out.source["caption"] = path.with_suffix(".txt").read_text(encoding="utf-8").strip() or None
    except SourceRejected as exc:
        out.rejects.append(_reject(source.uri, "fetch", exc.reason, exc.detail))
    except (av.FFmpegError, ValueError, OSError) as exc:
        stage = "decode" if "decoded_frames" in out.source else "probe"
        reason = "decode_error" if stage == "decode" else "not_video"
        detail = f"{type(exc).__name__}: {exc}".strip()[:300]
        out.clips, out.rejects = [], [_reject(source.uri, stage, reason, detail)]
    return out


def _check_probe(info: Probe, cfg: IngestParams) -> tuple[str, str] | None:
    if info.width * info.height > cfg.max_pixels:
        return "too_many_pixels", f"{info.width}x{info.height} > ingest.max_pixels={cfg.max_pixels}"
    if min(info.width, info.height) < cfg.min_short_side:
        return "low_resolution", f"{info.width}x{info.height}: short side < ingest.min_short_side"
    if info.duration_s > cfg.max_duration_s:
        return "too_long", f"{info.duration_s:.0f} s > ingest.max_duration_s={cfg.max_duration_s:g}"
    return None


def _decode_and_cut(
    path: Path, source: Source, clip: ClipParams, cfg: IngestParams, out: SourceOutcome
) -> None:
    """Decode, detect cuts and sample clips; the frames clips take are converted, and each clip once cut is
    finished (scored, encoded, checked), by `_Finisher`: beside decoding where cores are spare."""
    with VideoFile(path) as video, _Finisher(source.uri, clip, cfg) as finisher:
        info = video.probe
        out.source.update(info.as_row())
        if problem := _check_probe(info, cfg):
            out.rejects.append(_reject(source.uri, "probe", *problem))
            return
        if (size := choose_size(info.width, info.height, clip.buckets)) is None:
            detail = f"{info.width}x{info.height} is smaller than every clip.buckets size"
            out.rejects.append(
                _reject(
                    source.uri, "probe", "smaller_than_buckets", f"{detail} ({listed_sizes(clip.buckets)})"
                )
            )
            return
        width, height = size
        counts = frame_counts(clip.buckets, size)
        detector = CutDetector(cfg.shot_threshold, cfg.cut_check_stride, thumbnail)
        sampler = ClipSampler(
            counts, clip.fps, cfg.max_clips_per_shot, lambda f: finisher.convert(f, width, height)
        )
        times: list[float] = []
        out.source["decoded_frames"] = 0
        for frame in video.frames():
            # Decode-time limits: headers can lie about size and length (a decompression bomb does).
            if frame.width * frame.height > cfg.max_pixels:
                out.rejects.append(
                    _reject(source.uri, "decode", "too_many_pixels", f"a {frame.width}x{frame.height} frame")
                )
                return
            t = frame.time if frame.time is not None else (times[-1] + 1 / (info.fps or 25) if times else 0.0)
            t = t if not times or t > times[-1] else times[-1] + 1e-3  # timestamps must increase
            if t > cfg.max_duration_s:
                out.rejects.append(_reject(source.uri, "decode", "too_long", f"frames past {t:.0f} s"))
                return
            times.append(t)
            out.source["decoded_frames"] += 1
            for checked in detector.push(t, frame):
                finisher.submit(sampler.push(*checked))
        for checked in detector.finish():
            finisher.submit(sampler.push(*checked))
        steps = np.diff(times)
        last = float(np.median(steps)) if len(steps) else 1 / (info.fps or 25)
        finisher.submit(sampler.finish(times[-1] + last))
        finished = finisher.results()
    out.source.update(
        decoded_s=round(times[-1] + last - times[0], 4),
        vfr=bool(len(steps) > 1 and steps.std() > 0.05 * steps.mean()),
        shots=sampler.shots,
    )
    if not finished:
        out.rejects.append(
            _reject(
                source.uri,
                "cut",
                "no_full_clip",
                f"longest shot {sampler.longest_shot_s:.2f} s < the shortest {width}x{height} clip, "
                f"{counts[-1] / clip.fps:.2f} s (num_frames / clip.fps)",
            )
        )
    for clip_row, data in finished:
        if data is None:
            out.rejects.append(clip_row)
        else:
            out.clips.append((clip_row, data))


FINISHING = 2  # cut clips waiting for the finishing thread, at most: decoding waits beyond that


class _Finisher:
    """Frame conversions (`convert`) and cut clips (`submit`), done in order: each clip is finished into
    (manifest row, MP4 bytes), or (reject row, None) when a quality filter refuses it. Leaving the block
    early (a reject, an error) drops the work not yet done.

    The work runs on one thread beside decoding when the machine has more cores than ingest workers:
    decoding one file keeps about 1.4 of 2 cores busy, and one 720p worker ran at 0.81-0.89x the speed of
    decoding alone with the thread (three runs), 0.71x without. With a worker per core it runs inline,
    as the cores are busy already (the thread cost more than it gave there). Decoded frames waiting for
    conversion stay under RAW_BUDGET, and at most FINISHING cut clips wait: decoding waits beyond either."""

    def __init__(self, uri: str, clip: ClipParams, cfg: IngestParams):
        self.uri, self.clip, self.cfg = uri, clip, cfg
        spare = cfg.workers < (os.cpu_count() or 1)
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="finish-clip") if spare else None
        self.clips: list[Future] = []
        self.converting: deque[tuple[Future, int]] = deque()  # (conversion, raw bytes of its frame)
        self.raw_bytes = 0

    def _run(self, fn: Callable, *args: object) -> Future:
        if self.pool is not None:
            return self.pool.submit(fn, *args)
        done: Future = Future()
        try:
            done.set_result(fn(*args))
        except Exception as exc:  # raised where the result is read, as from the thread
            done.set_exception(exc)
        return done

    def convert(self, frame: av.VideoFrame, width: int, height: int) -> Future:
        """`to_rgb(frame, width, height)`, in turn."""
        nbytes = frame.width * frame.height * 3 // 2
        while self.converting and (self.converting[0][0].done() or self.raw_bytes + nbytes > RAW_BUDGET):
            done, n = self.converting.popleft()
            done.exception()  # waits; an error is raised where the clip reads the frame
            self.raw_bytes -= n
        self.converting.append((self._run(to_rgb, frame, width, height), nbytes))
        self.raw_bytes += nbytes
        return self.converting[-1][0]

    def submit(self, clips: list[Clip]) -> None:
        for c in clips:
            if len(self.clips) >= FINISHING:
                self.clips[-FINISHING].result()  # the work before it (in order) is done too
            self.clips.append(self._run(self._finish, c))

    def results(self) -> list[tuple[dict, bytes | None]]:
        return [f.result() for f in self.clips]

    def __enter__(self) -> _Finisher:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def _finish(self, c: Clip) -> tuple[dict, bytes | None]:
        clip, cfg = self.clip, self.cfg
        frames = np.stack([f.result() for f in c.frames])  # (T, H, W, 3), converted by this thread
        s = scores(frames)
        span = {"start_s": round(c.start_s, 4), "end_s": round(c.end_s, 4)}
        if problem := _check_scores(s, cfg):
            return _reject(self.uri, "filter", *problem, **span, **s), None
        data = encode_mp4(frames, clip.fps, cfg.crf, cfg.codec, cfg.pix_fmt, cfg.preset)
        height, width = frames.shape[1:3]
        row = {
            "clip_id": hashlib.sha256(frames.tobytes()).hexdigest()[:16],  # content hash: deterministic
            "source_path": self.uri,
            **span,
            "bucket": f"{width}x{height}x{len(frames)}",
            "num_frames": len(frames),
            "fps": clip.fps,
            "duration_s": round(len(frames) / clip.fps, 4),
            "width": width,
            "height": height,
            "encoded_bytes": len(data),
            "psnr_db": round(psnr_db(decode_bytes(data), frames), 2),  # what readers get vs what was cut
            **s,
            **{f"phash_{i}": np.uint64(h) for i, h in enumerate(signature(frames))},
            "thumbs": thumbnails(frames),
        }
        return row, data


def _check_scores(s: dict[str, float], cfg: IngestParams) -> tuple[str, str] | None:
    if s["brightness"] < cfg.min_brightness:
        return "too_dark", f"brightness {s['brightness']:.3f} < ingest.min_brightness={cfg.min_brightness}"
    if s["contrast"] < cfg.min_contrast:
        return "blank", f"contrast {s['contrast']:.4f} < ingest.min_contrast={cfg.min_contrast}"
    if s["motion"] < cfg.min_motion:
        return "static", f"motion {s['motion']:.5f} < ingest.min_motion={cfg.min_motion}"
    return None


def val_sources(uris: list[str], val_fraction: float) -> set[str]:
    """The ceil(n * val_fraction) inputs with the smallest path hashes: split by source video, so no video
    feeds both sides. A source keeps the split it was first ingested with (the store records it), so
    adding videos later never moves one across."""
    ranked = sorted(uris, key=lambda s: hashlib.sha256(s.encode()).hexdigest())
    n_val = math.ceil(len(ranked) * val_fraction) if val_fraction > 0 and len(ranked) > 1 else 0
    return set(ranked[:n_val])


def _local_outcomes(fn: Callable, sources: list[Source], workers: int) -> Iterator[SourceOutcome]:
    """Worker processes, at most 2 x workers videos in flight, results in input order (bounded memory).

    Workers start from a fork server, not by forking this process: it has threads (the progress bar's, an
    orchestrator's, a test's HTTP server), and a fork copies whatever lock one of them held at that moment.
    Forked beside them, a worker hung for good importing the HTTP reader (tests/unit/data)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["reelforge.data.ingest"])
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        todo, pending = iter(sources), deque()
        for s in todo:
            pending.append(pool.submit(fn, s))
            if len(pending) >= 2 * workers:
                break
        while pending:
            done = pending.popleft().result()
            if (s := next(todo, None)) is not None:
                pending.append(pool.submit(fn, s))
            yield done


def _ray_outcomes(fn: Callable, sources: list[Source], workers: int, address: str | None) -> Iterator:
    """Ray Data runs the same per-video function on a Ray cluster (a local one when address is None)."""
    import pickle

    import ray

    with ray_session(address, num_cpus=workers):
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True  # same order as the local executor: same shards
        items = [{"uri": s.uri, "root": s.root} for s in sources]
        ds = ray.data.from_items(items, override_num_blocks=max(len(items), 1))
        ds = ds.map(lambda r: {"outcome": pickle.dumps(fn(Source(r["uri"], r["root"])))}, concurrency=workers)
        for row in ds.iter_rows():
            yield pickle.loads(row["outcome"])


class _Work:
    """Picklable per-source function with the stage's settings bound."""

    def __init__(self, clip: ClipParams, cfg: IngestParams):
        self.clip, self.cfg = clip, cfg

    def __call__(self, source: Source) -> SourceOutcome:
        return process_source(source, self.clip, self.cfg)


def run(
    cfg: IngestConfig, input_path: str | Path, output_dir: str | Path, summary_path: str | Path
) -> IngestResult:
    """Ingest every input under `input_path` (a folder or a list file) not yet in the store at
    `output_dir`; write the store's tables and the summary JSON."""
    clip, cfg = cfg.clip, cfg.ingest
    sources = list_sources(input_path)
    settings = {"clip": clip.model_dump(), **cfg.model_dump(include=CLIP_SHAPING)}
    store = ClipStore(output_dir, settings)
    clips, rejects, done = store.tables()
    seen = set(done.source_path) if len(done) else set()
    todo = [s for s in sources if s.uri not in seen]
    files: dict[str, str] = {}  # sha256 -> first source with those bytes
    for sha, uri in zip(done.get("sha256", ()), done.get("source_path", ()), strict=True):
        if isinstance(sha, str):
            files.setdefault(sha, uri)
    index = NearDuplicateIndex(cfg.dup_max_hamming, cfg.dup_max_colour_diff)
    for row in clips.itertuples() if len(clips) else ():
        index.add(row.clip_id, [int(getattr(row, f"phash_{i}")) for i in range(3)], row.thumbs)

    work = _Work(clip, cfg)
    outcomes = (
        _ray_outcomes(work, todo, cfg.workers, cfg.ray_address)
        if cfg.executor == "ray"
        else _local_outcomes(work, todo, cfg.workers)
    )
    val = val_sources([s.uri for s in sources], cfg.val_fraction)
    added = _write(store, outcomes, len(todo), files, index, val, cfg)
    clips, rejects, done = store.consolidate(
        {MANIFEST: CLIP_COLUMNS, REJECTS: REJECT_COLUMNS, SOURCES: SOURCE_COLUMNS}
    )
    missing = {s.uri for s in sources} - set(done.source_path if len(done) else ())
    if missing:  # accounting is an invariant, not a hope
        raise RuntimeError(f"{len(missing)} inputs have neither clips nor a reject row, e.g. {min(missing)}")
    summary = _summary(sources, todo, added, clips, rejects, done, cfg, store)
    write_json_atomic(summary_path, summary)
    return IngestResult(len(sources), len(clips), len(rejects), summary)


# Settings that change what a stored clip is; the store restarts when they change (see ClipStore).
CLIP_SHAPING = {"shot_threshold", "cut_check_stride", "max_clips_per_shot", "min_motion", "min_brightness",
                "min_contrast", "dup_max_hamming", "dup_max_colour_diff", "max_pixels", "min_short_side",
                "val_fraction", "codec", "crf", "preset", "pix_fmt"}  # fmt: skip


def _write(
    store: ClipStore,
    outcomes: Iterable[SourceOutcome],
    total: int,
    files: dict[str, str],
    index: NearDuplicateIndex,
    val: set[str],
    cfg: IngestParams,
) -> int:
    """Dedup in input order, then append each outcome to the open part; commit parts as shards fill."""
    added, part = 0, store.next_part()
    columns = [
        TextColumn("ingest"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("videos · {task.fields[clips]} clips · {task.fields[rate]:.1f} clips/s"),
        TimeElapsedColumn(),
    ]
    start = time.perf_counter()
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task("ingest", total=total, clips=0, rate=0.0)
        for o in outcomes:
            src, uri = o.source, o.source["source_path"]
            rejects = list(o.rejects)
            kept = []
            if src.get("sha256") in files:
                twin = files[src["sha256"]]
                rejects = [_reject(uri, "dedup", "duplicate_file", "same bytes", duplicate_of=twin)]
            else:
                if src.get("sha256"):
                    files[src["sha256"]] = uri
                for row, data in o.clips:
                    sig = [int(row[f"phash_{i}"]) for i in range(3)]
                    if (twin := index.find(sig, row["thumbs"])) is not None:
                        span = {k: row[k] for k in ("start_s", "end_s", "brightness", "contrast", "motion")}
                        rejects.append(
                            _reject(
                                uri,
                                "dedup",
                                "near_duplicate",
                                "pHash and colour match",
                                duplicate_of=twin,
                                **span,
                            )
                        )
                        continue
                    index.add(row["clip_id"], sig, row["thumbs"])
                    kept.append((row, data))
            caption = src.get("caption")
            for row, data in kept:
                row.update(
                    source_caption=caption,
                    caption=caption if src.get("shots") == 1 else None,  # a sidecar describes one shot
                    num_shots_in_source=src.get("shots"),
                    source_sha256=src.get("sha256"),
                    split="val" if uri in val else "train",
                )
                part.add_clip(row, data, {k: row[k] for k in SHARD_META} | {"codec": cfg.codec})
            file_level = any("start_s" not in r for r in rejects)
            outcome = "clips" if kept else "rejected" if file_level else "all_clips_rejected"
            reason = None if kept else rejects[0]["reason"]
            part.sources.append({**src, "outcome": outcome, "clips": len(kept), "reason": reason})
            part.rejects += rejects
            added += len(kept)
            elapsed = time.perf_counter() - start
            progress.update(task, advance=1, clips=added, rate=added / max(elapsed, 1e-9))
            if len(part.clips) >= cfg.shard_max_clips or part.bytes >= cfg.shard_max_mb * 2**20:
                part.commit()
                part = store.next_part()
        if part.sources:
            part.commit()
    return added


def _summary(
    sources: list[Source],
    todo: list[Source],
    added: int,
    clips: pd.DataFrame,
    rejects: pd.DataFrame,
    done: pd.DataFrame,
    cfg: IngestParams,
    store: ClipStore,
) -> dict:
    n = len(clips)
    return {
        "inputs": len(sources),
        "inputs_processed_this_run": len(todo),
        "inputs_already_ingested": len(sources) - len(todo),
        "clips": n,
        "clips_added_this_run": added,
        "rejects": len(rejects),
        "rejects_by_reason": dict(Counter(rejects.reason)) if len(rejects) else {},
        "sources_by_outcome": dict(Counter(done.outcome)) if len(done) else {},
        "source_hours": round(float(done["decoded_s"].fillna(0).sum()) / 3600, 4)
        if "decoded_s" in done
        else 0,
        "clip_hours": round(float(clips.duration_s.sum()) / 3600, 4) if n else 0,
        "clips_by_bucket": dict(Counter(clips.bucket)) if n else {},
        "train_clips": int((clips.split == "train").sum()) if n else 0,
        "val_clips": int((clips.split == "val").sum()) if n else 0,
        "store_restarted": store.restarted,
        "store_restart_reason": store.restart_reason,
        **_storage(clips, cfg),
        "uncommitted_files_removed": store.recovered,
    }


def _storage(clips: pd.DataFrame, cfg: IngestParams) -> dict:
    """What the encoded store costs and keeps: bytes per clip against raw uint8 frames, and the PSNR of what
    readers decode against the frames ingest cut."""
    settings = cfg.model_dump(include={"codec", "crf", "preset", "pix_fmt"})
    if not len(clips):
        return {"storage": settings}
    raw = clips.num_frames * clips.width * clips.height * 3
    encoded = float(clips.encoded_bytes.median())
    return {
        "storage": {
            **settings,
            "bytes_per_clip_median": int(encoded),
            "raw_bytes_per_clip": int(raw.median()),
            "compression_ratio_median": round(float((raw / clips.encoded_bytes).median()), 1),
            "psnr_db_median": round(float(clips.psnr_db.median()), 2),
            "psnr_db_min": round(float(clips.psnr_db.min()), 2),
        }
    }
