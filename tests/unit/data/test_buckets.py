"""Aspect-ratio buckets: which shape a source's clips take, how a shot is cut into clip lengths, and ingest
keeping portrait, landscape and 10-second clips as such."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from reelforge.config import Bucket, ClipParams, IngestConfig, IngestParams
from reelforge.data import ingest
from reelforge.data.buckets import choose_size, frame_counts
from reelforge.data.shots import ClipSampler
from reelforge.data.store import load_clips, read_manifest
from tests.video_corpus import encode, frames

TABLE = [
    Bucket(width=32, height=32, num_frames=8),
    Bucket(width=48, height=32, num_frames=8),
    Bucket(width=48, height=32, num_frames=80),  # 10 s at 8 fps
    Bucket(width=32, height=48, num_frames=8),
    Bucket(width=96, height=64, num_frames=8),
]


@pytest.mark.parametrize(
    "width,height,size",
    [
        (1920, 1080, (96, 64)),  # 16:9 is nearest 3:2; of the two 3:2 sizes, the larger it covers
        (720, 1280, (32, 48)),  # portrait
        (500, 500, (32, 32)),
        (90, 60, (48, 32)),  # covers 48x32 but not 96x64
        (40, 40, (32, 32)),
        (20, 40, None),  # smaller than every bucket once cropped to its aspect ratio
    ],
)
def test_a_source_takes_the_size_nearest_its_aspect_ratio_that_it_covers(width, height, size):
    assert choose_size(width, height, TABLE) == size


def test_frame_counts_of_a_size_longest_first():
    assert frame_counts(TABLE, (48, 32)) == [80, 8]
    assert frame_counts(TABLE, (32, 48)) == [8]


def _clips(counts: list[int], seconds: float, fps: float = 24, max_per_shot: int = 10) -> list[tuple]:
    sampler = ClipSampler(counts, 8, max_per_shot, lambda f: np.full((2, 2, 3), f.index % 256, np.uint8))
    out = []
    for i in range(round(seconds * fps)):
        out += sampler.push(i / fps, SimpleNamespace(index=i, width=2, height=2), i == 0)
    out += sampler.finish(seconds)
    return [(c.start_s, c.end_s, len(c.frames)) for c in out]


def test_a_long_shot_is_split_into_the_longest_clips_and_its_remainder_into_a_shorter_one():
    # 23 s at 8 fps with 10-s clips: two of 80 frames, then 3 s left: one clip of 16 (2 s), not of 32 (4 s).
    assert _clips([80, 32, 16, 8], 23) == [(0, 10, 80), (10, 20, 80), (20, 22, 16)]
    # A shot shorter than the longest clip still gives the longest shorter one it fills.
    assert _clips([80, 16], 5.5) == [(0, 2, 16)]
    assert _clips([80], 9.9) == []
    assert _clips([8, 4], 2.5, max_per_shot=2) == [(0, 1, 8), (1, 2, 8)]  # the per-shot cap counts all


def test_ingest_keeps_portrait_landscape_and_ten_second_clips(tmp_path):
    raw = tmp_path / "raw"
    encode(raw / "portrait.mp4", frames(1, 64, 96, 16), fps=8)
    encode(raw / "square.mp4", frames(2, 64, 64, 16), fps=8)
    encode(raw / "long_landscape.mp4", frames(3, 96, 64, 96), fps=8)  # 12 s
    encode(raw / "tiny.mp4", frames(4, 24, 24, 16), fps=8)
    clip = ClipParams(fps=8, buckets=[b for b in TABLE if b.width < 96])
    cfg = IngestConfig(clip=clip, ingest=IngestParams(workers=1, min_short_side=16))
    r = ingest.run(cfg, raw, tmp_path / "clips", tmp_path / "ingest.json")

    manifest = read_manifest(tmp_path / "clips").sort_values(["source_path", "start_s"])
    got = {
        (row.source_path, row.bucket, row.width, row.height, row.num_frames, row.start_s, row.duration_s)
        for row in manifest.itertuples()
    }
    assert got == {
        ("portrait.mp4", "32x48x8", 32, 48, 8, 0.0, 1.0),
        ("portrait.mp4", "32x48x8", 32, 48, 8, 1.0, 1.0),
        ("square.mp4", "32x32x8", 32, 32, 8, 0.0, 1.0),
        ("square.mp4", "32x32x8", 32, 32, 8, 1.0, 1.0),
        ("long_landscape.mp4", "48x32x80", 48, 32, 80, 0.0, 10.0),
        ("long_landscape.mp4", "48x32x8", 48, 32, 8, 10.0, 1.0),
    }
    for clip_id, f in load_clips(tmp_path / "clips").items():  # decoded as the manifest says, losslessly
        row = manifest.set_index("clip_id").loc[clip_id]
        assert f.shape == (row.num_frames, row.height, row.width, 3) and row.psnr_db == 100
    rejects = pd.read_parquet(tmp_path / "clips" / "rejects.parquet")
    (tiny,) = rejects.itertuples()
    assert (tiny.source_path, tiny.stage, tiny.reason) == ("tiny.mp4", "probe", "smaller_than_buckets")
    assert tiny.detail == "24x24 is smaller than every clip.buckets size (32x32, 32x48, 48x32)"
    summary = json.loads((tmp_path / "ingest.json").read_text())
    assert summary["clips_by_bucket"] == {"32x48x8": 2, "32x32x8": 2, "48x32x80": 1, "48x32x8": 1}
    assert r.clips == 6
