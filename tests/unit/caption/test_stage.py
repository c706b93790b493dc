from __future__ import annotations

import pytest

from reelforge.caption import stage as caption
from reelforge.caption.captioner import load_captioner, read_captions, weights_sha256
from reelforge.config import CaptionConfig, CaptionParams, ReadParams
from reelforge.data.store import read_manifest


def test_caption_stage_captions_every_clip(ingested, tmp_path):
    result = caption.run(
        CaptionConfig(caption=CaptionParams(steps=40)),
        ingested,
        tmp_path / "captions",
        tmp_path / "caption.json",
    )
    rows = read_captions(tmp_path / "captions")
    manifest = read_manifest(ingested)
    assert set(rows.clip_id) == set(manifest.clip_id) and rows.caption.str.len().min() > 0
    given = manifest.caption.notna()
    assert (rows.caption_source == "given").sum() == given.sum() == result.given
    model_rows = rows[rows.caption_source == "model"]
    assert len(model_rows) == (~given).sum() and set(model_rows.captioner) == {result.captioner}
    ref = load_captioner(tmp_path / "captions" / "captioner")
    assert ref.sha256 == weights_sha256(tmp_path / "captions" / "captioner") and ref.name == result.captioner


def test_captioning_in_reading_workers_writes_the_same_captions_and_weights(ingested, tmp_path):
    """Clips decoded in 2 DataLoader processes, a batch at a time, train the same captioner and caption the
    same way as read in the stage's own process: workers change where clips are decoded, not what."""
    out = {}
    for workers in (0, 2):
        cfg = CaptionConfig(caption=CaptionParams(steps=6), read=ReadParams(loader_workers=workers))
        caption.run(cfg, ingested, tmp_path / f"c{workers}", tmp_path / f"c{workers}.json")
        out[workers] = (
            read_captions(tmp_path / f"c{workers}"),
            weights_sha256(tmp_path / f"c{workers}/captioner"),
        )
    assert out[0][1] == out[2][1] and out[0][0].equals(out[2][0])


def test_captioner_needs_captioned_clips(ingested, tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    manifest = read_manifest(ingested).assign(caption=None)
    manifest.to_parquet(clips / "manifest.parquet")
    with pytest.raises(ValueError, match="caption sidecar"):
        caption.run(
            CaptionConfig(caption=CaptionParams(steps=1)), clips, tmp_path / "out", tmp_path / "m.json"
        )
