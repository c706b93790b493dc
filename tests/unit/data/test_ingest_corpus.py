"""Ingest over a corpus of real encodings: every codec/container case and every broken file has the
outcome it must have; remote inputs come through a list file (HTTP and an fsspec URL)."""

from __future__ import annotations

import functools
import http.server
import json
import threading

import numpy as np
import pandas as pd
import pytest

from reelforge.config import Bucket, ClipParams, IngestConfig, IngestParams
from reelforge.data import ingest
from reelforge.data.store import load_clips, read_manifest
from tests.video_corpus import build_corpus

# 1 s clips (a 2.5 s shot gives 2), square or portrait
CLIP = ClipParams(
    fps=8, buckets=[Bucket(width=32, height=32, num_frames=8), Bucket(width=32, height=48, num_frames=8)]
)


LIMITS = IngestParams(workers=2, max_pixels=3840 * 2160, max_file_mb=2, max_duration_s=60)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root, outside = tmp_path_factory.mktemp("corpus"), tmp_path_factory.mktemp("outside")
    expected = build_corpus(root, outside)
    out = tmp_path_factory.mktemp("out")
    ingest.run(IngestConfig(clip=CLIP, ingest=LIMITS), root, out / "clips", out / "ingest.json")
    return root, outside, expected, out


def test_every_file_has_its_expected_outcome(corpus):
    root, _, expected, out = corpus
    sources = pd.read_parquet(out / "clips" / "sources.parquet").set_index("source_path")
    rejects = pd.read_parquet(out / "clips" / "rejects.parquet")
    assert set(sources.index) == set(expected)  # recursive, any-case extensions, non-ASCII names
    for name, want in expected.items():
        if want[0] == "clips":
            assert sources.loc[name, "clips"] == want[1], name
        else:
            mine = rejects[rejects.source_path == name]
            assert len(mine) and set(zip(mine.stage, mine.reason, strict=True)) == {want[1:]}, (name, mine)
            assert sources.loc[name, "clips"] == 0
    summary = json.loads((out / "ingest.json").read_text())
    assert summary["clips"] == sum(w[1] for w in expected.values() if w[0] == "clips")


def test_probe_facts_are_recorded(corpus):
    sources = pd.read_parquet(corpus[3] / "clips" / "sources.parquet").set_index("source_path")
    facts = {
        "hevc_10bit.MKV": {"codec": "hevc", "bit_depth": 10},
        "av1.mkv": {"codec": "av1"},
        "vp9.WebM": {"codec": "vp9", "container": "matroska,webm"},
        "anim.gif": {"codec": "gif", "fps": 10.0},
        "ffv1_odd.mkv": {"width": 97, "height": 75},
        "rotated.mp4": {"rotation": 90, "width": 96, "height": 128},
        "portrait.mp4": {"width": 72, "height": 128},
        "uhd_4k.mp4": {"width": 3840, "height": 2160},
        "with_audio.mp4": {"has_audio": True},
        "vfr.mkv": {"vfr": True},
        "h264.mp4": {"vfr": False, "has_audio": False},
    }
    for name, want in facts.items():
        for key, value in want.items():
            assert sources.loc[name, key] == value, (name, key, sources.loc[name, key])
    assert sources.sha256.dropna().str.len().eq(64).all()


def _square_centre(frame: np.ndarray) -> tuple[float, float]:
    """(row, col) centroid of the near-white moving square in a (H, W, 3) frame."""
    ys, xs = np.nonzero(frame.min(axis=-1) > 200)
    return float(ys.mean()), float(xs.mean())


def test_rotation_is_applied(corpus):
    """The square moves right in the coded frames; with a 90-degree (counter-clockwise) display matrix a
    viewer sees it move up, and so must the clip. Displayed, the video is portrait, and so is the clip."""
    manifest = read_manifest(corpus[3] / "clips")
    clips = load_clips(corpus[3] / "clips")
    shapes = manifest.groupby("source_path")[["width", "height"]].first()
    assert shapes.loc["rotated.mp4"].tolist() == shapes.loc["portrait.mp4"].tolist() == [32, 48]
    assert shapes.loc["h264.mp4"].tolist() == shapes.loc["uhd_4k.mp4"].tolist() == [32, 32]
    for name, moves in (("h264.mp4", "right"), ("rotated.mp4", "up")):
        second = manifest[manifest.source_path == name].sort_values("start_s").clip_id.iloc[1]  # in the crop
        (y0, x0), (y1, x1) = _square_centre(clips[second][0]), _square_centre(clips[second][-1])
        assert (x1 - x0 > 3 and abs(y1 - y0) < 1) if moves == "right" else (y0 - y1 > 3 and abs(x1 - x0) < 1)


def test_near_duplicates_and_exact_copies_point_at_the_kept_clip(corpus):
    rejects = pd.read_parquet(corpus[3] / "clips" / "rejects.parquet")
    manifest = read_manifest(corpus[3] / "clips")
    near = rejects[rejects.reason == "near_duplicate"]
    assert set(near.duplicate_of) <= set(manifest[manifest.source_path == "h264.mp4"].clip_id)
    copies = rejects[rejects.reason == "duplicate_file"].set_index("source_path").duplicate_of
    assert copies.to_dict() == {"h264_copy.mp4": "h264.mp4", "zz_link_inside.mp4": "sub/dir/nested.m4v"}


@pytest.fixture
def http_root(corpus):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(corpus[0]))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_list_file_with_http_and_fsspec_urls(corpus, http_root, tmp_path):
    root, outside, _, _ = corpus
    listing = tmp_path / "inputs.txt"
    listing.write_text(
        "# one input per line\n"
        f"{http_root}/h264.mp4\n"
        f"{http_root}/no_such_file.mp4\n"
        f"zip://zipped.mp4::{outside / 'archive.zip'}\n"
        "local_missing.mp4\n"
        f"{root / 'vp9.WebM'}\n"
    )
    r = ingest.run(IngestConfig(clip=CLIP, ingest=LIMITS), listing, tmp_path / "clips", tmp_path / "s.json")
    sources = pd.read_parquet(tmp_path / "clips" / "sources.parquet").set_index("source_path")
    assert sources.loc[f"{http_root}/h264.mp4", "clips"] == 2
    assert sources.loc[f"zip://zipped.mp4::{outside / 'archive.zip'}", "clips"] == 2
    assert sources.loc[f"{http_root}/no_such_file.mp4", "reason"] == "fetch_error"
    assert sources.loc["local_missing.mp4", "reason"] == "missing"
    # An absolute path outside the list file's folder is outside the input root.
    assert sources.loc[str(root / "vp9.WebM"), "reason"] == "outside_input_root"
    assert r.inputs == 5 and r.clips == 4
