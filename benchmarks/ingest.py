"""Ingest throughput against decode-only throughput of the same files, and peak memory vs dataset size.

In one run, on a generated set of H.264 videos (textured, moving, two shots each), it measures:
  pyav decode   a plain PyAV decode loop over every frame (worker processes, as ingest uses)
  ffmpeg null   `ffmpeg -i FILE -f null -` per file (N in parallel)
  ingest        `reelforge.data.ingest.run` into a new store (probe, hash, cut, resample, score, dedup, write)
at 1 and 2 workers, in interleaved rounds; medians over rounds (ratios: of the per-round ratios), videos/s,
clip-seconds/s and per-worker rates. Then peak RSS of the ingest driver and of its largest worker at
--rss-sizes videos (each in a fresh process). Prints a table, writes JSON.

    python benchmarks/ingest.py --videos 100 --repeats 3 --rss-sizes 100 1000 --out reports/bench_ingest.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import av
import numpy as np

from reelforge.config import Bucket, ClipParams, IngestConfig, IngestParams
from reelforge.data import ingest
from reelforge.data.video import encode_mp4

CLIP = ClipParams(fps=8, buckets=[Bucket(width=64, height=64, num_frames=16)])


def make_video(args: tuple[Path, int, int, int, float]) -> None:
    """Two shots, each a textured scene (colour regions plus fine detail) panning under a moving square;
    H.264 at 30 fps."""
    path, seed, w, h, seconds = args
    rng = np.random.default_rng(seed)
    half = int(seconds * 30) // 2
    th, tw = h + half, w + 2 * half  # room to pan 1 px down and 2 px right per frame
    shots = []
    for s in range(2):
        regions = rng.integers(30, 225, (6, 10, 3)).astype(np.int16)
        scene = regions.repeat(-(-th // 6), 0).repeat(-(-tw // 10), 1)[:th, :tw]
        detail = (
            rng.integers(-30, 30, (-(-th // 4), -(-tw // 4), 3), dtype=np.int16).repeat(4, 0).repeat(4, 1)
        )
        scene = np.clip(scene + detail[:th, :tw], 0, 255).astype(np.uint8)
        frames = np.empty((half, h, w, 3), np.uint8)
        for i in range(half):
            frames[i] = scene[i : i + h, 2 * i : 2 * i + w]
            x = int((w - 40) * i / half)
            frames[i, h // 2 - 20 : h // 2 + 20, x : x + 40] = 255 * (s % 2)
        shots.append(frames)
    path.write_bytes(encode_mp4(np.concatenate(shots), 30, crf=23))


def make_set(root: Path, count: int, w: int, h: int, seconds: float) -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    paths = [root / f"v{i:05d}.mp4" for i in range(count)]
    todo = [(p, i, w, h, seconds) for i, p in enumerate(paths) if not p.exists()]
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        list(pool.map(make_video, todo, chunksize=8))
    return paths


def pyav_decode(path: Path) -> int:
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        stream.thread_type = "AUTO"  # as ingest decodes
        return sum(1 for _ in c.decode(stream))


def bench_pyav(paths: list[Path], workers: int) -> float:
    t0 = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(pyav_decode, paths, chunksize=4))
    return time.perf_counter() - t0


def bench_ffmpeg(paths: list[Path], workers: int) -> float:
    t0 = time.perf_counter()
    running: list[subprocess.Popen] = []
    for p in paths:
        if len(running) >= workers:
            running.pop(0).wait()
        running.append(
            subprocess.Popen(["ffmpeg", "-v", "error", "-nostdin", "-i", str(p), "-f", "null", "-"])
        )
    for proc in running:
        proc.wait()
    return time.perf_counter() - t0


def bench_ingest(root: Path, workers: int, scratch: Path) -> tuple[float, int]:
    out = scratch / "clips"
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    r = ingest.run(
        IngestConfig(clip=CLIP, ingest=IngestParams(workers=workers)), root, out, scratch / "ingest.json"
    )
    return time.perf_counter() - t0, r.clips


RSS_SNIPPET = """
import resource, sys
from reelforge.config import ClipParams, IngestConfig, IngestParams
from reelforge.data import ingest
cfg = IngestConfig(clip=ClipParams.model_validate_json(sys.argv[4]), ingest=IngestParams(workers=2))
r = ingest.run(cfg, *sys.argv[1:4])
# Workers are children of the fork server: stop it (and wait for it) so that RUSAGE_CHILDREN counts them.
import multiprocessing.forkserver
multiprocessing.forkserver._forkserver._stop()
peak = [resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
print(r.clips, *peak)
"""


def peak_rss(root: Path, scratch: Path) -> tuple[int, float, float]:
    """(clips, driver and largest worker peak RSS in MiB) for one ingest of `root` in a fresh process."""
    shutil.rmtree(scratch / "rss", ignore_errors=True)
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            RSS_SNIPPET,
            str(root),
            str(scratch / "rss"),
            str(scratch / "rss.json"),
            CLIP.model_dump_json(),
        ],  # fmt: skip
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return int(out[-3]), int(out[-2]) / 1024, int(out[-1]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=100)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=360)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rss-sizes", type=int, nargs="*", default=[100, 1000])
    ap.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "reelforge-bench-ingest")
    ap.add_argument("--out", type=Path, default=Path("reports/bench_ingest.json"))
    args = ap.parse_args()
    if shutil.which("ffmpeg") is None:
        sys.exit("ffmpeg not found: `make bench-ingest` installs it (apt-get install ffmpeg)")

    main_set = args.data / f"{args.videos}x{args.width}x{args.height}x{args.seconds:g}s"
    paths = make_set(main_set, args.videos, args.width, args.height, args.seconds)
    frames = sum(pyav_decode(p) for p in paths[:5]) / 5 * len(paths)  # frames in the set (est.)
    scratch = Path(tempfile.mkdtemp(prefix="reelforge-bench-"))
    rows = []
    for w in args.workers:
        rounds = []
        for _ in range(args.repeats):  # interleaved, so drift on a shared machine hits all three alike
            ingest_s, clips = bench_ingest(main_set, w, scratch)
            if clips == 0:  # ingest would have skipped the work it is measured on
                sys.exit(f"no clips: each of the 2 shots must last >= {CLIP.duration_s:g} s; raise --seconds")
            pyav_s, ffmpeg_s = bench_pyav(paths, w), bench_ffmpeg(paths, w)
            rounds.append({"pyav": pyav_s, "ffmpeg": ffmpeg_s, "ingest": ingest_s})
        med = {k: statistics.median(r[k] for r in rounds) for k in ("pyav", "ffmpeg", "ingest")}
        n = len(paths)
        rows.append(
            {
                "workers": w,
                "videos": n,
                "source_frames_est": int(frames),
                "pyav_decode_videos_per_s": n / med["pyav"],
                "ffmpeg_null_videos_per_s": n / med["ffmpeg"],
                "ingest_videos_per_s": n / med["ingest"],
                "ingest_videos_per_s_per_worker": n / med["ingest"] / w,
                "ingest_clip_seconds_per_s": clips * CLIP.duration_s / med["ingest"],
                "clips": clips,
                # medians of the per-round ratios: each compares runs made moments apart
                "ingest_vs_pyav_decode": statistics.median(r["pyav"] / r["ingest"] for r in rounds),
                "ingest_vs_ffmpeg_null": statistics.median(r["ffmpeg"] / r["ingest"] for r in rounds),
                "rounds_s": rounds,
            }
        )
    rss = []
    for size in args.rss_sizes:
        rss_set = args.data / f"rss-{size}x320x180x5s"
        make_set(rss_set, size, 320, 180, 5.0)  # 2 shots of 2.5 s: one 2-s clip each
        clips, driver, worker = peak_rss(rss_set, scratch)
        rss.append(
            {"videos": size, "clips": clips, "driver_peak_rss_mib": driver, "worker_peak_rss_mib": worker}
        )
    shutil.rmtree(scratch, ignore_errors=True)

    shape = f"{CLIP.buckets[0].name} @ {CLIP.fps:g} fps"
    print(f"\n{args.videos} videos, {args.width}x{args.height}, {args.seconds:g} s, 30 fps, H.264; "
          f"clips {shape}; medians of {args.repeats} interleaved rounds")  # fmt: skip
    print("| workers | pyav decode v/s | ffmpeg null v/s | ingest v/s | per worker | clip-s/s | vs pyav "
          "| vs ffmpeg |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['workers']} | {r['pyav_decode_videos_per_s']:.2f} | {r['ffmpeg_null_videos_per_s']:.2f} | "
            f"{r['ingest_videos_per_s']:.2f} | {r['ingest_videos_per_s_per_worker']:.2f} | "
            f"{r['ingest_clip_seconds_per_s']:.1f} | {r['ingest_vs_pyav_decode']:.2f}x | "
            f"{r['ingest_vs_ffmpeg_null']:.2f}x |"
        )
    if rss:
        print("\n| videos (320x180, 5 s) | clips | driver peak RSS MiB | largest worker peak RSS MiB |")
        print("|---|---|---|---|")
        for r in rss:
            mib = f"{r['driver_peak_rss_mib']:.0f} | {r['worker_peak_rss_mib']:.0f}"
            print(f"| {r['videos']} | {r['clips']} | {mib} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"config": vars(args) | {"data": str(args.data), "out": str(args.out)},
                                    "throughput": rows, "peak_rss": rss}, indent=2))  # fmt: skip
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
