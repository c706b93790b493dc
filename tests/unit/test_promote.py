from __future__ import annotations

import numpy as np

from reelforge.config import PromoteParams
from reelforge.promote import decide

CFG = PromoteParams(max_fvd_ref_ratio=2.0, min_clip_score_ref_ratio=0.5, clip_score_ref_tolerance=1.0)


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
    off = PromoteParams(min_clip_score_ref_ratio=0.0)  # a ratio of 0 needs no baseline
    assert decide(off, _report({"fvd_ref_floor_n": 1, "clip_score_ref": 99}, real=None))[0] == []


def test_a_challenger_must_beat_the_champion_at_the_configured_confidence():
    cand = {"fvd_ref_floor_n": 120, "clip_score_ref": 30}
    assert decide(CFG, _report(cand, paired=_paired(fvd_shift=-5, clip_shift=0.5)))[0] == []
    # Better on average, but within noise: not promoted, and the decision says why, with the p-value.
    failures, evidence = decide(CFG, _report(cand, paired=_paired(fvd_shift=-0.5, clip_shift=0.5)))
    assert (
        len(failures) == 1 and "does not beat champion v1's" in failures[0] and "paired p = 0." in failures[0]
    )
    assert "95% interval" in evidence[2]
    failures, _ = decide(CFG, _report(cand, paired=_paired(fvd_shift=-5, clip_shift=-3)))
    assert len(failures) == 1 and "clip_score_ref may trail champion v1's" in failures[0]


def test_without_a_paired_comparison_the_champion_gate_fails():
    failures, _ = decide(CFG, _report({"fvd_ref_floor_n": 120, "clip_score_ref": 30}, paired={}))
    assert failures == ["no paired comparison with champion v1: evaluate.bootstrap is 0"]
