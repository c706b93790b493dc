"""The streaming loader against the training step it feeds, and training's peak memory against dataset size.

1. Throughput, per --shapes TxHxW (the demo's 16x32x32, and 16x256x256): a store of --clips synthetic clips
   (the demo world at the demo shape, textured scenes above it; each encoding of --settings) read by the
   training stream (`BatchStream` over `StreamedPixels`) in a DataLoader with each of --workers worker
   processes. Reported: the median seconds per batch of --batch clips the loader delivers on its own, clips/s
   and frames/s per worker; the median step of the plain training loop (benchmarks/train_step.py, model
   --size) on in-memory batches (the baseline, same run) and on the streamed batches; and loader / step.
2. Peak RSS of each of --rss-stages, each run in a fresh process: training (`reelforge.train.stage.run`,
   pixel space, --rss-steps steps) and captioning (`reelforge.caption.stage.run`, --rss-steps captioner
   steps, then every clip read once), on stores of --rss-sizes demo-shaped clips, half of them with a
   caption; beside it, the float32 tensor that holding the clips the stage trains on in memory (as both
   did before the stream) would take. And, on the same stores, the bytes a rank holds per clip for its read
   index and captions once loaded (tracemalloc), against that index held as Python objects (the layout
   before, rebuilt here).

    python benchmarks/stream.py --out reports/bench_stream.json
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from loader import CONTENT, DEFAULT_SETTING, SCALE_SETTING
from torch.utils.data import DataLoader
from train_step import plain_loop

from reelforge.caption.captioner import CAPTIONS
from reelforge.config import IngestParams
from reelforge.data.store import MANIFEST, REJECTS, SOURCES, ClipStore, StoredClips, read_manifest
from reelforge.data.video import encode_mp4
from reelforge.train.data import StreamedPixels, TokenizedCaptions
from reelforge.train.module import BatchStream

CAPTION = "a red circle moves left over a black background"


def write_store(
    root: Path, n: int, shape: tuple[int, int, int], kind: str, setting: str,
    distinct: int = 64, shard_max_clips: int = 256,
) -> Path:  # fmt: skip
    """A clip store of `n` clips of `shape` (T, H, W) written as ingest writes one (`ClipStore` parts),
    cycling over `distinct` encoded clips of CONTENT[kind], 1 in 10 in the val split and every other one with
    a caption in the manifest; and beside it a caption stage's folder, every clip captioned
    (`root.parent / "captions"`). Returns that folder."""
    t, h, w = shape
    p = IngestParams(**dict(zip(("codec", "pix_fmt", "crf", "preset"), setting.split(":"), strict=True)))
    rng = np.random.default_rng(0)
    encoded = [
        encode_mp4(CONTENT[kind](rng, t, h, w), 8, p.crf, p.codec, p.pix_fmt, p.preset)
        for _ in range(min(distinct, n))
    ]
    store, part = ClipStore(root, {"synthetic": [n, shape, kind, setting]}), None
    for i in range(n):
        part = part or store.next_part()
        clip_id, data = f"c{i:08d}", encoded[i % len(encoded)]
        row = {"clip_id": clip_id, "split": "val" if i % 10 == 0 else "train", "bucket": f"{w}x{h}x{t}",
               "num_frames": t, "height": h, "width": w, "encoded_bytes": len(data),
               "caption": CAPTION if i % 2 else None}  # fmt: skip
        part.add_clip(row, data, {"clip_id": clip_id})
        if len(part.clips) == shard_max_clips:
            part.commit()
            part = None
    if part:
        part.commit()
    clips = store.consolidate({MANIFEST: [], REJECTS: [], SOURCES: []})[0]
    captions = root.parent / "captions"
    captions.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(
        {"clip_id": clips.clip_id, "caption": CAPTION, "caption_source": "given", "captioner": None}
    ).to_parquet(captions / CAPTIONS, index=False)
    return captions


def loader_seconds_per_batch(pixels: StreamedPixels, batch: int, workers: int, batches: int) -> float:
    """Median seconds between batches the loader hands over when nothing else runs, after its first."""
    ids = torch.zeros(len(pixels), 4, dtype=torch.long)
    stream = BatchStream(pixels, ids, batch, seed=0, rank=0, world=1, start=0)
    it = iter(DataLoader(stream, batch_size=None, num_workers=workers))
    next(it)  # workers started, prefetch primed
    times, last = [], time.perf_counter()
    for _ in range(batches):
        next(it)
        now = time.perf_counter()
        times.append(now - last)
        last = now
    return statistics.median(times)


def throughput(args: argparse.Namespace, scratch: Path) -> list[dict]:
    rows = []
    for shape_s in args.shapes:
        t, h, w = (int(v) for v in shape_s.split("x"))
        kind = "demo" if h * w <= 32 * 32 else "textured"
        step_args = argparse.Namespace(
            size=args.size, frames=t, channels=3, height=h, width=w, batch=args.batch, precision="32",
            grad_ckpt=False,
        )  # fmt: skip
        step_mem = statistics.median(plain_loop(step_args, torch.device("cpu"), args.steps + 2)[2:])
        for setting in args.settings:
            root = scratch / f"{shape_s}-{setting.replace(':', '_')}" / "clips"
            write_store(root, args.clips, (t, h, w), kind, setting)
            pixels = StreamedPixels(StoredClips(root))
            for workers in args.workers:
                load = loader_seconds_per_batch(pixels, args.batch, workers, args.batches)
                stream = BatchStream(pixels, torch.randint(4, 64, (len(pixels), 16)), args.batch, 0, 0, 1, 0)
                loader = DataLoader(stream, batch_size=None, num_workers=workers)
                step_stream = statistics.median(
                    plain_loop(step_args, torch.device("cpu"), args.steps + 2, loader)[2:]
                )
                per_worker = max(workers, 1)
                rows.append({
                    "shape": shape_s, "content": kind, "setting": setting, "workers": workers,
                    "loader_s_per_batch": round(load, 4),
                    "clips_per_s_per_worker": round(args.batch / load / per_worker, 1),
                    "frames_per_s_per_worker": round(args.batch * t / load / per_worker, 0),
                    "step_s_in_memory": round(step_mem, 4), "step_s_streamed": round(step_stream, 4),
                    "loader_over_step": round(load / step_mem, 3),
                    "streamed_over_in_memory": round(step_stream / step_mem, 3),
                })  # fmt: skip
                r = rows[-1]
                print(
                    f"{shape_s:>10} {setting:<24} {workers:>3} {load * 1e3:>9.1f} "
                    f"{r['clips_per_s_per_worker']:>9.1f} {r['frames_per_s_per_worker']:>9.0f} "
                    f"{step_mem * 1e3:>9.1f} {step_stream * 1e3:>9.1f} {r['loader_over_step']:>8.3f} "
                    f"{r['streamed_over_in_memory']:>8.3f}",
                    flush=True,
                )
    return rows


# Each stage run in a fresh process: clips, captions, out dir, steps, batch; prints its peak RSS.
RSS_SNIPPETS = {
    "train": """
import resource, sys
from reelforge.config import TrainConfig
from reelforge.train import stage
clips, captions, out, steps, batch = sys.argv[1:6]
cfg = TrainConfig.model_validate({"train": {"steps": int(steps), "batch_size": int(batch), "warmup_steps": 1,
    "val_every_n_steps": 10_000, "sample_every_n_steps": 10_000, "checkpoint_every_n_steps": 10_000}})
stage.run(cfg, clips, captions, f"{out}/model", f"{out}/reg.json", f"{out}/ckpt")
print("PEAK", *(resource.getrusage(w).ru_maxrss for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)))
""",
    "caption": """
import resource, sys
from reelforge.caption import stage
from reelforge.config import CaptionConfig
clips, captions, out, steps, batch = sys.argv[1:6]
cfg = CaptionConfig.model_validate({"caption": {"steps": int(steps), "batch_size": int(batch)}})
stage.run(cfg, clips, f"{out}/captions", f"{out}/caption.json")
print("PEAK", *(resource.getrusage(w).ru_maxrss for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)))
""",
}


def stage_peak_rss_mib(stage: str, clips: Path, captions: Path, steps: int, batch: int) -> float:
    """Peak RSS (MiB) of one run of `stage` in a fresh process (its own MLflow SQLite store in a temp dir)."""
    with tempfile.TemporaryDirectory() as tmp:
        args = [str(clips), str(captions), tmp, str(steps), str(batch)]
        out = subprocess.run(
            [sys.executable, "-c", RSS_SNIPPETS[stage], *args], cwd=tmp, capture_output=True, text=True,
            check=False,
        )  # fmt: skip
    if out.returncode:
        raise RuntimeError(out.stdout[-2000:] + out.stderr[-3000:])
    self_kib, children_kib = (int(v) for v in out.stdout.split("PEAK")[-1].split())
    return max(self_kib, children_kib) / 1024


INDEX_COLUMNS = ["clip_id", "shard", "member_offset", "encoded_bytes", "num_frames", "height", "width"]


def held_bytes(build) -> int:
    """Bytes still allocated (tracemalloc) once `build()` has returned and its temporaries are freed."""
    gc.collect()
    tracemalloc.start()
    kept = build()
    gc.collect()
    size = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del kept
    return size


def index_bytes_per_clip(root: Path) -> dict[str, float]:
    """What a training rank holds per clip once its read index and captions are loaded: `StoredClips` and
    `TokenizedCaptions` as they are, against the same index held as a Python object per clip id, shard name
    and caption (numpy object arrays, as the code held them before; rebuilt here as the baseline). Each
    caption is distinct, as auto-captions are."""
    n = len(read_manifest(root, ["clip_id"]))

    def captions() -> list[str]:
        return [f"{CAPTION}, take {i}" for i in range(n)]

    def objects() -> tuple:
        rows = read_manifest(root, INDEX_COLUMNS)
        return (
            rows.clip_id.to_numpy(dtype=object), rows.shard.to_numpy(dtype=object),
            rows.member_offset.to_numpy(np.int64), rows.encoded_bytes.to_numpy(np.int64),
            rows[["num_frames", "height", "width"]].to_numpy(np.int64), np.asarray(captions(), dtype=object),
        )  # fmt: skip

    def flat() -> tuple:
        return StoredClips(root), TokenizedCaptions(captions(), None)

    return {"flat_bytes_per_clip": held_bytes(flat) / n, "objects_bytes_per_clip": held_bytes(objects) / n}


def peak_rss(args: argparse.Namespace, scratch: Path) -> list[dict]:
    """Per stage and store size: peak RSS, beside what holding the clips it reads in memory would take (as
    float32 tensors, how training and the captioner held them before the stream)."""
    rows = []
    for n in args.rss_sizes:
        root = scratch / f"rss-{n}" / "clips"
        captions = write_store(root, n, (16, 32, 32), "demo", args.settings[0])
        index = index_bytes_per_clip(root)
        print(f"{'index':>8} {n:>8} {'':>14} {'':>20}  B/clip held: {index['flat_bytes_per_clip']:.0f} "
              f"flat, {index['objects_bytes_per_clip']:.0f} as objects", flush=True)  # fmt: skip
        rows.append({"stage": "index", "clips": n, **{k: round(v, 1) for k, v in index.items()}})
        for stage in args.rss_stages:
            mib = stage_peak_rss_mib(stage, root, captions, args.rss_steps, args.batch)
            # train: its training clips (9 in 10); caption: the captioned training clips (half of those)
            share = 0.9 if stage == "train" else 0.45
            in_memory = share * n * 16 * 3 * 32 * 32 * 4 / 2**20
            rows.append({"stage": stage, "clips": n, "peak_rss_mib": round(mib, 1),
                         "in_memory_tensor_mib": round(in_memory, 1)})  # fmt: skip
            print(f"{stage:>8} {n:>8} {mib:>14.1f} {in_memory:>20.1f}", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", nargs="*", default=["16x32x32", "16x256x256"])
    ap.add_argument(
        "--settings", nargs="+", default=[DEFAULT_SETTING, SCALE_SETTING],
        help="codec:pix_fmt:crf:preset; the first is params' default",
    )  # fmt: skip
    ap.add_argument("--workers", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--clips", type=int, default=256, help="clips per throughput store")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--batches", type=int, default=20, help="timed loader batches per cell")
    ap.add_argument("--steps", type=int, default=10, help="timed training steps per cell")
    ap.add_argument("--size", default="tiny-conv", help="model size of the training step (the demo's)")
    ap.add_argument("--rss-sizes", nargs="*", type=int, default=[1000, 10000])
    ap.add_argument("--rss-steps", type=int, default=20)
    ap.add_argument("--rss-stages", nargs="*", default=["train", "caption"], choices=sorted(RSS_SNIPPETS))
    ap.add_argument("--out", type=Path, default=Path("reports/bench_stream.json"))
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        print(f"{'shape':>10} {'setting':<24} {'wrk':>3} {'load ms':>9} {'clip/s/w':>9} {'frm/s/w':>9} "
              f"{'step ms':>9} {'streamed':>9} {'ld/step':>8} {'str/mem':>8}")  # fmt: skip
        rows = throughput(args, Path(tmp))
        print(f"{'stage':>8} {'clips':>8} {'peak RSS MiB':>14} {'in-memory clips MiB':>20}")
        rss = peak_rss(args, Path(tmp))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {"throughput": rows, "peak_rss": rss, "args": {k: str(v) for k, v in vars(args).items()}}
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
