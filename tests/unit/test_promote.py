from __future__ import annotations

from reelforge.config import PromoteParams
from reelforge.promote import decide


def _report(cand, champ=None, floor=100.0, real=50.0):
    r = {
        "candidate": {"version": "2", **cand},
        "real_fvd_ref_split_half": floor,
        "real": {"clip_score_ref": real},
    }
    return r | ({"champion": {"version": "1", **champ}} if champ else {})


def test_first_model_needs_only_the_absolute_gates():
    cfg = PromoteParams(max_fvd_ref_ratio=2.0, min_clip_score_ref_ratio=0.5)
    assert decide(cfg, _report({"fvd_ref": 150, "clip_score_ref": 30})) == []
    failures = decide(cfg, _report({"fvd_ref": 250, "clip_score_ref": 20}))
    assert len(failures) == 2 and "max_fvd_ref_ratio" in failures[0]


def test_challenger_must_beat_the_champion():
    cfg = PromoteParams(max_fvd_ref_ratio=2.0, min_clip_score_ref_ratio=0.5, clip_score_ref_tolerance=1.0)
    better = _report({"fvd_ref": 120, "clip_score_ref": 30}, {"fvd_ref": 130, "clip_score_ref": 30.5})
    assert decide(cfg, better) == []
    worse = _report({"fvd_ref": 140, "clip_score_ref": 30}, {"fvd_ref": 130, "clip_score_ref": 33})
    assert len(decide(cfg, worse)) == 2


def test_demo_videos_must_show_what_was_asked_by_the_pixel_check():
    cfg = PromoteParams(min_pixel_acc={"background": 0.9, "color": 0.8, "single_blob": 0.8, "direction": 0.6})
    good = {"fvd_ref": 150, "clip_score_ref": 30, "pixel_background_acc": 0.95, "pixel_color_acc": 0.85,
            "pixel_single_blob_acc": 0.9, "pixel_direction_acc": 0.7}  # fmt: skip
    assert decide(cfg, _report(good)) == []
    bad = good | {"pixel_color_acc": 0.5, "pixel_color_acc_ci_low": 0.3, "pixel_color_acc_ci_high": 0.7}
    assert decide(cfg, _report(bad)) == [
        "color: 0.500 of the videos show the prompted color, 95% interval [0.300, 0.700] < "
        "promote.min_pixel_acc.color 0.8"
    ]
    missing = {k: v for k, v in good.items() if k != "pixel_direction_acc"}
    assert decide(cfg, _report(missing))[0].startswith("pixel_direction_acc: not measured")
    assert decide(PromoteParams(), _report(missing)) == []  # no thresholds, no pixel gate
