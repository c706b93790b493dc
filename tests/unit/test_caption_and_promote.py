import numpy as np
import pytest

from reelforge import caption
from reelforge.captioner import load_captioner, weights_sha256
from reelforge.clips import read_manifest
from reelforge.config import CaptionConfig, PromoteConfig
from reelforge.promote import decide


def test_caption_stage_captions_every_clip(ingested, tmp_path):
    result = caption.run(CaptionConfig(steps=40), ingested, tmp_path / "captions", tmp_path / "caption.json")
    rows = caption.read_captions(tmp_path / "captions")
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
        caption.run(CaptionConfig(steps=1), clips, tmp_path / "out", tmp_path / "m.json")


def _report(cand, champ=None, floor=100.0, real=50.0):
    r = {
        "candidate": {"version": "2", **cand},
        "real_fvd_ref_split_half": floor,
        "real": {"clip_score_ref": real},
    }
    return r | ({"champion": {"version": "1", **champ}} if champ else {})


def test_first_model_needs_only_the_absolute_gates():
    cfg = PromoteConfig(max_fvd_ref_ratio=2.0, min_clip_score_ref_ratio=0.5)
    assert decide(cfg, _report({"fvd_ref": 150, "clip_score_ref": 30})) == []
    failures = decide(cfg, _report({"fvd_ref": 250, "clip_score_ref": 20}))
    assert len(failures) == 2 and "max_fvd_ref_ratio" in failures[0]


def test_challenger_must_beat_the_champion():
    cfg = PromoteConfig(max_fvd_ref_ratio=2.0, min_clip_score_ref_ratio=0.5, clip_score_ref_tolerance=1.0)
    better = _report({"fvd_ref": 120, "clip_score_ref": 30}, {"fvd_ref": 130, "clip_score_ref": 30.5})
    assert decide(cfg, better) == []
    worse = _report({"fvd_ref": 140, "clip_score_ref": 30}, {"fvd_ref": 130, "clip_score_ref": 33})
    assert len(decide(cfg, worse)) == 2


def test_caption_match_ignores_words_every_prompt_shares():
    from reelforge.metrics import caption_match

    prompts = ["a red circle moves left", "a blue square moves up"]
    assert caption_match(["a red circle moves left", "a red circle moves left"], prompts) == 0.5
    assert caption_match(["a green square moves down", "a green triangle moves down"], prompts) == 0.0
    assert np.isclose(caption_match(["red", "square up"], prompts), (1 / 3 + 2 / 3) / 2)
