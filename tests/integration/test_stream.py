"""The training stream over the clip store: 2-process DDP (gloo) with a DataLoader worker per rank, and
training's and captioning's peak memory against the dataset's size (through benchmarks/stream.py, which
reports it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import DataLoader

from reelforge.data.store import StoredClips
from reelforge.model.pixels import to_model
from reelforge.train.data import StreamedPixels
from reelforge.train.module import BatchStream

BATCH = 3


def _rank(rank: int, world: int, store: str, init: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    pixels = StreamedPixels(StoredClips(store))
    n = len(pixels)
    marks = torch.arange(n).view(n, 1)  # the "token ids" of sample i are [i]: which clip a row is
    stream = BatchStream(pixels, marks, BATCH, seed=5, rank=rank, world=world, start=0)
    seen = []
    for k, (x, ids, g) in enumerate(DataLoader(stream, batch_size=None, num_workers=1)):
        if k * world * BATCH >= n:
            break
        seen.append((int(g), ids.flatten().tolist()))
        i = int(ids[0])
        assert torch.equal(x[0], to_model(pixels.stored.frames(i)))  # the decoded clip of that index
    gathered = [None] * world
    dist.all_gather_object(gathered, seen)
    if rank == 0:
        Path(out).write_text(json.dumps(gathered))
    dist.destroy_process_group()


def test_two_ranks_read_disjoint_parts_that_cover_the_epoch(ingested, tmp_path):
    out = tmp_path / "seen.json"
    mp.spawn(_rank, (2, str(ingested), f"file://{tmp_path / 'rdzv'}", str(out)), nprocs=2)
    n = len(StoredClips(ingested))
    per_rank = []
    for seen in json.loads(out.read_text()):
        # Global micro-batch g holds epoch positions [g * BATCH, (g + 1) * BATCH): keep epoch 0's.
        per_rank.append([i for g, ids in seen for pos, i in enumerate(ids, g * BATCH) if pos < n])
    a, b = per_rank
    assert not set(a) & set(b)  # each rank its own part ...
    assert sorted(a + b) == list(range(n))  # ... and together every clip once


@pytest.mark.slow
def test_training_and_captioning_peak_memory_does_not_grow_with_the_dataset(tmp_path):
    """Training and captioning 10x the clips: peak RSS grows by under 64 MiB, where the clips each trains on
    as one float32 tensor (how both held them before the stream) would take ~480 and ~240 MiB more."""
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "benchmarks/stream.py", "--shapes", "--rss-sizes", "300", "3000"]
    subprocess.run([*cmd, "--rss-steps", "3", "--batch", "4", "--out", str(out)], check=True, timeout=900)
    rows = json.loads(out.read_text())["peak_rss"]
    for stage in ("train", "caption"):
        small, big = (r for r in rows if r["stage"] == stage)
        assert big["in_memory_tensor_mib"] - small["in_memory_tensor_mib"] > 200  # what streaming avoids
        assert big["peak_rss_mib"] - small["peak_rss_mib"] < 64, (small, big)
