from __future__ import annotations

import json
import os
import time
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from reelforge.config import ClipParams, IngestConfig, IngestParams
from reelforge.data import ingest
from reelforge.data.shots import RAW_BUDGET, Clip
from reelforge.data.sources import Source
from reelforge.data.store import load_clips, read_manifest
from tests.conftest import expected_clips


def _clip_rows(ingested: object) -> pd.DataFrame:
    """Kept clips plus clip-level rejects (filtered or near-duplicate): every clip ingest cut."""
    rejects = pd.read_parquet(ingested / "rejects.parquet")
    return pd.concat([read_manifest(ingested), rejects[rejects.start_s.notna()]])


def test_clips_cut_match_ground_truth_shots(demo, ingested, clip_cfg):
    _, truth = demo
    got = _clip_rows(ingested).groupby("source_path").size().to_dict()
    assert got == expected_clips(truth, clip_cfg, IngestParams().max_clips_per_shot)


def test_no_clip_spans_a_cut(demo, ingested):
    _, truth = demo
    shots = {v["file"]: v["shots"] for v in truth["videos"]}
    for row in _clip_rows(ingested).itertuples():
        inside = [
            s
            for s in shots[row.source_path]
            if s["start_s"] - 1e-3 <= row.start_s and row.end_s <= s["end_s"] + 1e-3
        ]
        assert len(inside) == 1, f"clip {row.source_path} {row.start_s}-{row.end_s} is not inside one shot"


def test_every_broken_file_is_a_reject_with_reason(demo, ingested):
    _, truth = demo
    rejects = pd.read_parquet(ingested / "rejects.parquet")
    file_level = rejects[rejects.start_s.isna()]
    broken = {v["file"] for v in truth["videos"] if v["kind"] == "broken"}
    assert set(file_level.source_path) == broken
    by_file = file_level.set_index("source_path")
    assert by_file.loc["broken_empty.mp4", ["stage", "reason"]].tolist() == ["fetch", "empty_file"]
    assert by_file.loc["broken_text.mp4", ["stage", "reason"]].tolist() == ["probe", "not_video"]
    assert file_level.detail.str.len().min() > 5


def test_manifest_rows_clips_scores_and_captions(demo, ingested, clip_cfg):
    _, truth = demo
    manifest = read_manifest(ingested)
    clips = load_clips(ingested)
    assert set(clips) == set(manifest.clip_id) and manifest.clip_id.is_unique
    b = clip_cfg.buckets[0]  # the fixture's videos are all landscape: the square bucket
    assert all(c.shape == (b.num_frames, b.height, b.width, 3) for c in clips.values())
    assert (manifest.motion >= IngestParams().min_motion).all() and manifest.brightness.between(0, 1).all()
    sidecars = {v["file"]: v["caption_sidecar"] for v in truth["videos"]}
    for row in manifest.itertuples():
        assert (row.caption if isinstance(row.caption, str) else None) == sidecars[row.source_path]


def test_split_is_by_source_video(ingested):
    manifest = read_manifest(ingested)
    assert (manifest.groupby("source_path").split.nunique() == 1).all()
    assert set(manifest.split) == {"train", "val"}
    val = ingest.val_sources(list(pd.read_parquet(ingested / "sources.parquet").source_path), 0.25)
    assert set(manifest[manifest.split == "val"].source_path) <= val


def test_accounting_summary(demo, ingested):
    summary = json.loads((ingested.parent / "ingest.json").read_text())
    sources = pd.read_parquet(ingested / "sources.parquet")
    assert summary["inputs"] == len(sources) == len(demo[1]["videos"])
    assert summary["clips"] == len(read_manifest(ingested))
    assert sum(summary["rejects_by_reason"].values()) == summary["rejects"]
    assert summary["source_hours"] > summary["clip_hours"] > 0
    # Each input is clips, or has at least one reject row naming it.
    rejects = pd.read_parquet(ingested / "rejects.parquet")
    for row in sources.itertuples():
        assert row.clips > 0 or (rejects.source_path == row.source_path).any()


def test_rerun_is_deterministic_and_skips_ingested_inputs(demo, ingested, clip_cfg, tmp_path):
    fresh = tmp_path / "clips"
    ingest.run(
        IngestConfig(clip=clip_cfg, ingest=IngestParams(workers=1)), demo[0], fresh, tmp_path / "s.json"
    )
    pd.testing.assert_frame_equal(read_manifest(ingested), read_manifest(fresh))
    again = ingest.run(
        IngestConfig(clip=clip_cfg, ingest=IngestParams(workers=1)), demo[0], fresh, tmp_path / "s.json"
    )
    assert again.summary["inputs_processed_this_run"] == 0
    pd.testing.assert_frame_equal(read_manifest(ingested), read_manifest(fresh))


def test_missing_input_is_clear(tmp_path, clip_cfg):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ingest.run(
            IngestConfig(clip=clip_cfg, ingest=IngestParams()),
            tmp_path / "nope",
            tmp_path / "out",
            tmp_path / "s.json",
        )


def test_a_symlink_loop_is_a_reject_not_a_crash(demo, clip_cfg, tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "a.mp4").symlink_to(raw / "b.mp4")
    (raw / "b.mp4").symlink_to(raw / "a.mp4")
    good = next(v["file"] for v in demo[1]["videos"] if v["kind"] == "single")
    (raw / "good.mp4").write_bytes((demo[0] / good).read_bytes())
    r = ingest.run(
        IngestConfig(clip=clip_cfg, ingest=IngestParams()), raw, tmp_path / "out", tmp_path / "s.json"
    )
    rejects = pd.read_parquet(tmp_path / "out" / "rejects.parquet").set_index("source_path")
    assert r.inputs == 3 and r.clips > 0
    for name in ("a.mp4", "b.mp4"):
        assert rejects.loc[name, ["stage", "reason"]].tolist() == ["fetch", "symlink_loop"]
        assert "loop" in rejects.loc[name, "detail"].lower()


def test_a_run_whose_every_input_is_rejected_before_decoding_ends_with_its_rejects(clip_cfg, tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "a.mp4").symlink_to(raw / "b.mp4")
    (raw / "b.mp4").symlink_to(raw / "a.mp4")
    r = ingest.run(
        IngestConfig(clip=clip_cfg, ingest=IngestParams()), raw, tmp_path / "out", tmp_path / "s.json"
    )
    assert (r.inputs, r.clips, r.rejects) == (2, 0, 2) and r.summary["source_hours"] == 0


@pytest.mark.parametrize("spare_cores", [True, False], ids=["beside-decoding", "inline"])
def test_clips_are_finished_in_the_order_cut_with_at_most_two_waiting(monkeypatch, spare_cores):
    finished = []

    def slow_finish(self, clip):
        time.sleep(0.02)
        finished.append(clip.start_s)
        return {"start_s": clip.start_s}, b"mp4"

    monkeypatch.setattr(ingest._Finisher, "_finish", slow_finish)
    workers = os.cpu_count() - 1 if spare_cores else os.cpu_count()
    waiting = []
    with ingest._Finisher("a.mp4", ClipParams(), IngestParams(workers=workers)) as finisher:
        for i in range(6):
            finisher.submit([Clip(float(i), i + 1.0, [])])
            waiting.append(i + 1 - len(finished))  # cut, not yet finished
        rows = finisher.results()
    assert [row["start_s"] for row, _ in rows] == [0, 1, 2, 3, 4, 5] and finished == [0, 1, 2, 3, 4, 5]
    assert max(waiting) == (ingest.FINISHING if spare_cores else 0)


def test_frames_waiting_for_conversion_beside_decoding_stay_under_the_raw_budget(monkeypatch):
    def slow_to_rgb(frame, width, height):
        time.sleep(0.01)
        return np.zeros((height, width, 3), np.uint8)

    monkeypatch.setattr(ingest, "to_rgb", slow_to_rgb)
    frame = SimpleNamespace(width=3840, height=2160)  # 12 MB decoded (4:2:0)
    held = []
    with ingest._Finisher("a.mp4", ClipParams(), IngestParams(workers=os.cpu_count() - 1)) as finisher:
        futures = []
        for _ in range(20):
            futures.append(finisher.convert(frame, 64, 32))
            held.append(finisher.raw_bytes)  # of frames not yet converted, or not yet seen done
        assert all(f.result().shape == (32, 64, 3) for f in futures)
    assert 0 < max(held) <= RAW_BUDGET


@pytest.mark.parametrize("workers", [1, 2])
def test_a_clip_that_fails_to_finish_makes_its_source_a_reject(demo, clip_cfg, monkeypatch, workers):
    def broken_encoder(*args, **kwargs):
        raise ValueError("encoder refused the frames")

    monkeypatch.setattr(ingest, "encode_mp4", broken_encoder)
    raw, truth = demo
    name = next(v["file"] for v in truth["videos"] if expected_clips({"videos": [v]}, clip_cfg, 99))
    out = ingest.process_source(Source(name, str(raw)), clip_cfg, IngestParams(workers=workers))
    assert out.clips == [] and [r["reason"] for r in out.rejects] == ["decode_error"]
    assert "encoder refused the frames" in out.rejects[0]["detail"]
