from __future__ import annotations

import numpy as np

from reelforge.config import PromoteParams
from reelforge.promote import decide

CFG = PromoteParams(
    max_fvd_ref_ratio=2.0, min_clip_score_ref_ratio=0.5, clip_score_ref_tolerance=1.0, min_pixel_acc={}
)
TARGETS = {"background": 0.9, "color": 0.8, "single_blob": 0.8, "direction": 0.6}  # what the demo aims for


def _report(cand: dict, floor: float | None = 100.0, real: float | None = 50.0, paired: dict | None = None):
    r = {
        "candidate": {"version": "2", **cand},
        "floor": {}
        if floor is None
        else {"fvd_ref": floor, "fvd_ref_ci_low": 80.0, "fvd_ref_ci_high": 140.0},
        "real": {} if real is None else {"clip_score_ref": real},
        "protocol": {"floor_n": 11},
    }
    if paired is not None:
        r |= {"champion": {"version": "1"}, "paired": paired}
    return r


def _paired(fvd_shift: float, clip_shift: float, spread: float = 1.0) -> dict:
    rng = np.random.default_rng(0)  # stand-ins for the bootstrap distributions evaluation writes
    return {
        "fvd_ref_delta": (fvd_shift + spread * rng.standard_normal(200)).tolist(),
        "clip_score_ref_delta": (clip_shift + spread * rng.standard_normal(200)).tolist(),
    }


def test_first_model_needs_only_the_absolute_gates_at_the_floors_n():
    assert decide(CFG, _report({"fvd_ref_floor_n": 150, "clip_score_ref": 30}))[0] == []
    # The gate reads the distance at the floor's n, not the one at all real clips.
    failures, evidence = decide(CFG, _report({"fvd_ref_floor_n": 250, "fvd_ref": 90, "clip_score_ref": 20}))
    assert len(failures) == 2 and "fvd_ref 250.000 (n=11) > promote.max_fvd_ref_ratio 2.0" in failures[0]
    assert "real floor 100.000 [80.000, 140.000]" in evidence[0]


def test_a_floor_or_baseline_that_cannot_be_measured_fails_the_gate_with_its_reason():
    failures, _ = decide(CFG, _report({"fvd_ref_floor_n": 1, "clip_score_ref": 99}, floor=None, real=None))
    assert failures[0].startswith("no real split-half floor: fewer than 4 validation clips")
    assert failures[1].startswith("no real clip_score_ref baseline")
    off = PromoteParams(min_clip_score_ref_ratio=0.0, min_pixel_acc={})  # a ratio of 0 needs no baseline
    assert decide(off, _report({"fvd_ref_floor_n": 1, "clip_score_ref": 99}, real=None))[0] == []


def test_a_challenger_must_beat_the_champion_at_the_configured_confidence():
    cand = {"fvd_ref_floor_n": 120, "clip_score_ref": 30}
    assert decide(CFG, _report(cand, paired=_paired(fvd_shift=-5, clip_shift=0.5)))[0] == []
    # Better on average, but within noise: not promoted, and the decision says why, with the p-value.
    failures, evidence = decide(CFG, _report(cand, paired=_paired(fvd_shift=-0.5, clip_shift=0.5)))
    assert (
        len(failures) == 1 and "does not beat champion v1's" in failures[0] and "paired p = 0." in failures[0]
    )
    assert "95% interval" in evidence[3]
    failures, _ = decide(CFG, _report(cand, paired=_paired(fvd_shift=-5, clip_shift=-3)))
    assert len(failures) == 1 and "clip_score_ref may trail champion v1's" in failures[0]


def test_without_a_paired_comparison_the_champion_gate_fails():
    failures, _ = decide(CFG, _report({"fvd_ref_floor_n": 120, "clip_score_ref": 30}, paired={}))
    assert failures == ["no paired comparison with champion v1: evaluate.bootstrap is 0"]


def _pixel_report(cand: dict) -> dict:
    report = _report({"fvd_ref_floor_n": 150, "clip_score_ref": 30, **cand})
    report["protocol"]["pixel_check"] = "demo palette from the ground-truth file, read from pixels"
    report["real"] |= {"pixel_color_acc": 1.0}
    return report


def test_demo_videos_must_show_what_was_asked_by_the_pixel_check():
    cfg = CFG.model_copy(update={"min_pixel_acc": TARGETS})
    good = {"pixel_background_acc": 0.95, "pixel_color_acc": 0.85, "pixel_single_blob_acc": 0.9,
            "pixel_direction_acc": 0.7}  # fmt: skip
    assert decide(cfg, _pixel_report(good))[0] == []
    bad = {"pixel_color_acc": 0.5, "pixel_color_acc_ci_low": 0.3, "pixel_color_acc_ci_high": 0.7}
    failures, evidence = decide(cfg, _pixel_report(good | bad))
    assert failures == [
        "color: 0.500 of the videos show the prompted color < promote.min_pixel_acc.color 0.8 "
        "(0.500 [0.300, 0.700])"
    ]
    assert "pixel_color_acc: candidate 0.500 [0.300, 0.700], real clips 1.000" in evidence
    missing = {k: v for k, v in good.items() if k != "pixel_direction_acc"}
    assert "pixel_direction_acc: not measured" in decide(cfg, _pixel_report(missing))[0][0]
    # Without a ground-truth file (a user's own videos) there is nothing to read back: with thresholds the
    # gate fails saying so; without (the project's params) there is no pixel gate.
    no_check = _report({"fvd_ref_floor_n": 150, "clip_score_ref": 30})
    failures, evidence = decide(cfg, no_check)
    assert len(failures) == 4 and all("not measured (evaluation ran no pixel check)" in f for f in failures)
    failures, evidence = decide(CFG, no_check)
    assert failures == [] and "pixel check: not run" in evidence[-1]
