import pandas as pd
import pytest

from reelforge import ingest
from reelforge.clips import atomic_dir, load_clips, read_manifest
from reelforge.config import IngestConfig
from tests.conftest import expected_clips


def test_clip_counts_match_ground_truth_shots(demo, ingested, clip_cfg):
    _, truth = demo
    manifest = read_manifest(ingested)
    got = manifest.groupby("source_path").size().to_dict()
    assert got == expected_clips(truth, clip_cfg, IngestConfig().max_clips_per_shot)


def test_no_clip_spans_a_cut(demo, ingested):
    _, truth = demo
    manifest = read_manifest(ingested)
    shots = {v["file"]: v["shots"] for v in truth["videos"]}
    for row in manifest.itertuples():
        inside = [
            s
            for s in shots[row.source_path]
            if s["start_s"] - 1e-3 <= row.start_s and row.end_s <= s["end_s"] + 1e-3
        ]
        assert len(inside) == 1, f"clip {row.clip_id} {row.start_s}-{row.end_s} is not inside one shot"


def test_every_broken_file_is_a_reject_with_reason(demo, ingested):
    _, truth = demo
    rejects = pd.read_parquet(ingested / "rejects.parquet")
    broken = {v["file"] for v in truth["videos"] if v["kind"] == "broken"}
    assert set(rejects.source_path) == broken
    assert rejects.reason.str.len().min() > 5 and set(rejects.stage) == {"ingest"}
    assert rejects.set_index("source_path").reason["broken_empty.mp4"] == "empty file"


def test_manifest_rows_clips_and_captions(demo, ingested, clip_cfg):
    _, truth = demo
    manifest = read_manifest(ingested)
    clips = load_clips(ingested)
    assert set(clips) == set(manifest.clip_id) and manifest.clip_id.is_unique
    assert all(c.shape == (clip_cfg.num_frames, clip_cfg.size, clip_cfg.size, 3) for c in clips.values())
    sidecars = {v["file"]: v["caption_sidecar"] for v in truth["videos"]}
    for row in manifest.itertuples():
        assert (row.caption if isinstance(row.caption, str) else None) == sidecars[row.source_path]


def test_split_is_by_source_video(ingested):
    manifest = read_manifest(ingested)
    assert (manifest.groupby("source_path").split.nunique() == 1).all()
    assert set(manifest.split) == {"train", "val"}


def test_rerun_is_deterministic(demo, ingested, clip_cfg, tmp_path):
    ingest.run(IngestConfig(workers=1), clip_cfg, demo[0], tmp_path / "clips", tmp_path / "s.json")
    a, b = read_manifest(ingested), read_manifest(tmp_path / "clips")
    pd.testing.assert_frame_equal(a, b)


def test_crash_mid_write_leaves_no_output(tmp_path):
    out = tmp_path / "clips"
    with pytest.raises(RuntimeError), atomic_dir(out) as scratch:
        (scratch / "manifest.parquet").write_text("half")
        raise RuntimeError("killed")
    assert not out.exists()


def test_missing_input_dir_is_clear(tmp_path, clip_cfg):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ingest.run(IngestConfig(), clip_cfg, tmp_path / "nope", tmp_path / "out", tmp_path / "s.json")
