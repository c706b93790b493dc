from __future__ import annotations

import pytest

from reelforge.caption import stage as caption
from reelforge.caption.captioner import load_captioner, read_captions, weights_sha256
from reelforge.config import CaptionConfig, CaptionParams
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


def test_captioner_needs_captioned_clips(ingested, tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    manifest = read_manifest(ingested).assign(caption=None)
    manifest.to_parquet(clips / "manifest.parquet")
    with pytest.raises(ValueError, match="caption sidecar"):
        caption.run(
            CaptionConfig(caption=CaptionParams(steps=1)), clips, tmp_path / "out", tmp_path / "m.json"
        )
