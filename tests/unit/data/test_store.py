"""The clip store: encoded clips with JSON metadata in tar shards, restarts that say why, old formats
refused and rebuilt."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from reelforge.config import Bucket, ClipParams, IngestConfig, IngestParams
from reelforge.data import ingest
from reelforge.data.store import (
    OldStoreFormat,
    StoredClips,
    UnreadableClips,
    in_shard_order,
    load_clips,
    read_manifest,
    stream_clips,
)
from reelforge.data.video import decode_bytes, encode_mp4, psnr_db


def test_changed_clip_settings_restart_the_store(demo, clip_cfg, tmp_path):
    out = tmp_path / "clips"
    ingest.run(IngestConfig(clip=clip_cfg, ingest=IngestParams()), demo[0], out, tmp_path / "s.json")
    smaller = ClipParams(buckets=[Bucket(width=16, height=16, num_frames=16)])
    r = ingest.run(IngestConfig(clip=smaller, ingest=IngestParams()), demo[0], out, tmp_path / "s.json")
    assert r.summary["store_restarted"] and r.summary["inputs_processed_this_run"] == r.inputs
    assert {c.shape[1] for c in load_clips(out).values()} == {16}


def test_changed_settings_name_what_changed(demo, clip_cfg, tmp_path):
    out = tmp_path / "clips"
    ingest.run(IngestConfig(clip=clip_cfg, ingest=IngestParams()), demo[0], out, tmp_path / "s.json")
    r = ingest.run(
        IngestConfig(clip=clip_cfg, ingest=IngestParams(crf=23)), demo[0], out, tmp_path / "s.json"
    )
    assert r.summary["store_restarted"] and r.summary["store_restart_reason"].endswith("changed: crf")


def test_shards_hold_encoded_clips_and_their_metadata(ingested, clip_cfg):
    manifest = read_manifest(ingested).set_index("clip_id")
    members: dict[str, dict[str, bytes]] = {}
    for shard in manifest.shard.unique():
        with tarfile.open(ingested / shard) as tar:
            for m in tar:
                clip_id, _, suffix = m.name.rpartition(".")
                members.setdefault(clip_id, {})[suffix] = tar.extractfile(m).read()
                if suffix == "mp4":  # the manifest's byte range is the member's, as tar itself reads it
                    assert (m.offset_data, m.size) == tuple(
                        manifest.loc[clip_id, ["member_offset", "encoded_bytes"]]
                    )
    assert set(members) == set(manifest.index) and {frozenset(v) for v in members.values()} == {
        frozenset({"mp4", "json"})
    }
    for clip_id, m in members.items():
        meta, row = json.loads(m["json"]), manifest.loc[clip_id]
        assert meta["codec"] == "h264" and meta["source_path"] == row.source_path
        bucket = clip_cfg.buckets[0]  # the fixture's videos are all landscape: the square bucket
        assert (meta["width"], meta["height"], meta["num_frames"]) == (bucket.width, bucket.height, 16)
        assert meta["bucket"] == row.bucket == bucket.name
        assert len(m["mp4"]) == row.encoded_bytes
        assert decode_bytes(m["mp4"]).shape == (16, bucket.height, bucket.width, 3)
    raw = bucket.num_frames * bucket.height * bucket.width * 3
    # The default (x264's lossless RGB) gives back exactly the frames cut: psnr_db is 100 only when MSE is 0.
    assert (manifest.psnr_db == 100).all() and raw / manifest.encoded_bytes.median() >= 5
    summary = json.loads((ingested.parent / "ingest.json").read_text())["storage"]
    assert summary["codec"] == "h264" and summary["raw_bytes_per_clip"] == raw
    assert summary["psnr_db_min"] == manifest.psnr_db.min()


def test_a_store_in_the_old_npy_format_is_refused_then_rebuilt(demo, clip_cfg, tmp_path):
    out = tmp_path / "clips"
    (out / "shards").mkdir(parents=True)
    (out / "ledger").mkdir()
    with tarfile.open(out / "shards" / "000000.tar", "w") as tar:  # what the old writer produced
        buf = io.BytesIO()
        np.save(buf, np.zeros((16, 32, 32, 3), np.uint8))
        info = tarfile.TarInfo("abc.npy")
        info.size = buf.tell()
        buf.seek(0)
        tar.addfile(info, buf)
    pd.DataFrame({"clip_id": ["abc"], "shard": ["shards/000000.tar"]}).to_parquet(out / "manifest.parquet")
    (out / "store.json").write_text(json.dumps({"clip": clip_cfg.model_dump()}))
    with pytest.raises(OldStoreFormat, match="npy.*dvc repro ingest"):
        load_clips(out)
    r = ingest.run(IngestConfig(clip=clip_cfg, ingest=IngestParams()), demo[0], out, tmp_path / "s.json")
    assert r.summary["store_restarted"] and "npy" in r.summary["store_restart_reason"]
    assert len(load_clips(out)) == r.clips > 0


def test_a_store_without_byte_ranges_is_refused(ingested, tmp_path):
    out = tmp_path / "clips"
    shutil.copytree(ingested, out)
    settings = json.loads((out / "store.json").read_text())
    (out / "store.json").write_text(json.dumps({**settings, "format": "encoded-mp4-v1"}))
    with pytest.raises(OldStoreFormat, match="format encoded-mp4-v1, not encoded-mp4-v3: rebuild it"):
        StoredClips(out)


def test_the_read_index_is_flat_arrays_of_a_few_dozen_bytes_a_clip(ingested):
    """What a training rank and each of its loader workers hold per clip: no Python object (whose reference
    counts make forked workers copy the pages), and at most 64 bytes."""
    stored = StoredClips(ingested)
    index = [stored.clip_ids, stored.shard, stored.offset, stored.size, stored.shape]
    assert all(a.dtype != object for a in index)
    assert sum(a.nbytes for a in index) / len(stored) <= 64
    manifest = read_manifest(ingested).set_index("clip_id")
    for i, clip_id in enumerate(stored.ids(np.arange(len(stored)))):
        assert stored.shards[stored.shard[i]] == manifest.shard[clip_id]
        assert stored.offset[i] == manifest.member_offset[clip_id]


def test_clips_read_by_byte_range_from_a_url_are_the_frames_ingest_cut(ingested, tmp_path):
    """Shards copied elsewhere and read through an fsspec URL (`read.shards_url`) give the same frames."""
    copy = tmp_path / "bucket" / "clips"
    shutil.copytree(ingested / "shards", copy / "shards")
    local = load_clips(ingested)
    stored = StoredClips(ingested, list(local), url=f"file://{copy}")
    for i, clip_id in enumerate(stored.ids(np.arange(len(stored)))):
        assert np.array_equal(stored.frames(i), local[clip_id])
    assert psnr_db(stored.frames(0), local[stored.clip_id(0)]) == 100  # lossless: bit for bit


@pytest.mark.parametrize(
    ("codec", "pix_fmt", "preset", "floor_db"),
    [
        ("h264", "rgb24", "medium", 100),
        ("h264", "yuv444p", "medium", 38),
        ("h264", "yuv420p", "medium", 28),
        ("hevc", "yuv444p", "fast", 38),
        ("vp9", "yuv444p", "4", 38),
        ("av1", "yuv420p", "8", 28),
    ],  # fmt: skip
)
def test_each_codec_round_trips_a_demo_clip(ingested, codec, pix_fmt, preset, floor_db):
    frames = next(iter(load_clips(ingested).values()))
    crf = 0 if pix_fmt == "rgb24" else 18 if codec in ("h264", "hevc") else 24
    p = IngestParams(codec=codec, pix_fmt=pix_fmt, preset=preset, crf=crf)
    back = decode_bytes(encode_mp4(frames, 8, p.crf, p.codec, p.pix_fmt, p.preset))
    assert back.shape == frames.shape and psnr_db(back, frames) >= floor_db


def test_encoder_settings_that_cannot_work_are_refused_by_key():
    with pytest.raises(ValidationError, match="ingest.preset='fast': vp9 takes a number 0-8"):
        IngestParams(codec="vp9", preset="fast", pix_fmt="yuv444p")
    with pytest.raises(ValidationError, match="SVT-AV1 encodes yuv420p only"):
        IngestParams(codec="av1", preset="8", pix_fmt="yuv444p")
    with pytest.raises(ValidationError, match="ingest.pix_fmt=rgb24 is h264 only"):
        IngestParams(codec="hevc")
    with pytest.raises(ValidationError, match="ingest.crf=60: h264 takes 0-51"):
        IngestParams(crf=60)


def _damage(store: Path, how: str) -> str:
    """Damage the first clip's MP4 member in place (zeroed, or its second half zeroed as by a copy cut
    short); return its member name. Every other member keeps its bytes and offsets."""
    row = read_manifest(store).sort_values(["shard", "member_offset"]).iloc[0]
    start, size = int(row.member_offset), int(row.encoded_bytes)
    if how == "truncated":
        start, size = start + size // 2, size - size // 2
    with open(store / row.shard, "r+b") as f:
        f.seek(start)
        f.write(b"\0" * size)
    return f"{row.clip_id}.mp4"


@pytest.mark.parametrize("how", ["zeros", "truncated"])
def test_an_unreadable_clip_is_named_and_skipped_within_the_budget(ingested, tmp_path, how):
    store = tmp_path / "clips"
    shutil.copytree(ingested, store)
    member = _damage(store, how)
    n = len(read_manifest(store))
    with pytest.raises(
        UnreadableClips, match=rf"1 of {n} clips .* read.max_unreadable=0 .*000000.tar:{member}"
    ):
        load_clips(store)
    clips = load_clips(store, max_unreadable=1 / n)
    assert len(clips) == n - 1 and member.removesuffix(".mp4") not in clips
    assert [(u["shard"], u["member"]) for u in clips.unreadable] == [("shards/000000.tar", member)]


@pytest.mark.parametrize("workers", [0, 2])
def test_streamed_batches_come_in_order_and_failures_in_workers_count_once(ingested, tmp_path, workers):
    store = tmp_path / "clips"
    shutil.copytree(ingested, store)
    member = _damage(store, "zeros")
    stored = StoredClips(store, max_unreadable=0.5)
    bad = stored.ids(np.arange(len(stored))).index(member.removesuffix(".mp4"))
    good = [i for i in range(len(stored)) if i != bad]
    batches = [np.array([good[2], bad, good[0]]), np.array([bad, good[1]]), np.array([good[3]])]
    got = list(stream_clips(stored, batches, workers))
    assert [k.tolist() for k, _ in got] == [
        [good[2], good[0]],
        [good[1]],
        [good[3]],
    ]  # order kept, bad left out
    for kept, frames in got:
        assert np.array_equal(frames, np.stack([stored.frames(int(i)) for i in kept]))
    assert [u["member"] for u in stored.unreadable] == [member]  # met twice, in any process: counted once
    with pytest.raises(UnreadableClips, match=member):  # the budget is the reading process's
        list(stream_clips(StoredClips(store, max_unreadable=0), batches, workers))


def test_shard_order_batches_hold_one_clip_shape(tmp_path):
    stored = StoredClips.__new__(StoredClips)  # the index alone: shapes and byte ranges
    stored.shape = np.array([[16, 32, 48], [16, 32, 32], [16, 32, 48], [16, 32, 32], [16, 32, 32]])
    stored.shard = np.array(["b", "a", "a", "a", "b"])
    stored.offset = np.array([0, 9, 5, 0, 7])
    batches = in_shard_order(stored, 2)
    assert [b.tolist() for b in batches] == [[3, 1], [4], [2, 0]]
