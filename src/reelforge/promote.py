"""Promote stage: move the registry alias to the candidate only when every gate in params passes.

Gates (params.promote), all read from one evaluation run (same prompts, seeds and reference encoder):
- absolute, every candidate: its Fréchet distance to half the real clips, at the floor's n, within a ratio
  of the real-vs-real split-half floor (like with like: both n = half the validation clips); its clip score
  at least a ratio of the real clips' score against their given captions. A floor or baseline that could
  not be measured fails the gate, with the reason: a gate is never skipped.
- against a champion: paired bootstrap tests over the same prompt/seed pairs. The candidate must beat the
  champion's fvd_ref (by min_fvd_ref_gain) and not trail its clip_score_ref by more than the tolerance, each
  at `confidence`; the decision states the mean difference, its interval and the p-value.
- demo world (evaluation ran the pixel check): for each attribute in `min_pixel_acc`, the share of the
  candidate's videos whose pixels show what their prompt asked, at least that threshold.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from reelforge.config import PromoteConfig, PromoteParams
from reelforge.files import write_json_atomic
from reelforge.registry.lineage import log_lock
from reelforge.registry.review import publish
from reelforge.registry.tracking import champion_version, move_alias, setup


@dataclass(frozen=True)
class PromoteResult:
    """The decision, as written to `reports/promotion.json`."""

    model_name: str
    candidate_version: str
    champion_before: str | None
    champion_after: str | None
    promoted: bool
    failures: list[str]
    evidence: list[str]  # the statistics each gate read, with intervals and p-values
    eval_run_id: str


def decide(cfg: PromoteParams, report: dict) -> tuple[list[str], list[str]]:
    """(reasons the candidate fails, the statistics each gate read); no reasons means promote."""
    candidate, champion = report["candidate"], report.get("champion")
    floor, real = report.get("floor", {}).get("fvd_ref"), report["real"].get("clip_score_ref")
    n = report["protocol"].get("floor_n")
    failures, evidence = [], []
    if floor is None:
        failures.append(
            "no real split-half floor: fewer than 4 validation clips; add videos or raise ingest.val_fraction"
        )
    else:
        gated = candidate["fvd_ref_floor_n"]
        evidence.append(f"fvd_ref at n={n}: candidate {_ci(candidate, 'fvd_ref_floor_n')}, real floor "
                        f"{_ci(report['floor'], 'fvd_ref')}")  # fmt: skip
        if not gated <= cfg.max_fvd_ref_ratio * floor:
            failures.append(
                f"fvd_ref {gated:.3f} (n={n}) > promote.max_fvd_ref_ratio {cfg.max_fvd_ref_ratio} x real "
                f"split-half floor {floor:.3f} (n={n})"
            )
    if real is None and cfg.min_clip_score_ref_ratio > 0:
        failures.append("no real clip_score_ref baseline: fewer than 2 validation clips came with a caption")
    elif real is not None:
        real_ci = _ci(report["real"], "clip_score_ref")
        evidence.append(f"clip_score_ref: candidate {_ci(candidate, 'clip_score_ref')}, real {real_ci}")
        if not candidate["clip_score_ref"] >= cfg.min_clip_score_ref_ratio * real:
            failures.append(
                f"clip_score_ref {candidate['clip_score_ref']:.3f} < promote.min_clip_score_ref_ratio "
                f"{cfg.min_clip_score_ref_ratio} x real clips' {real:.3f}"
            )
    failures += _pixel_check(cfg, report, evidence)
    if champion is not None:
        failures += _against_champion(cfg, report, evidence)
    return failures, evidence


def _pixel_check(cfg: PromoteParams, report: dict, evidence: list[str]) -> list[str]:
    """Demo data: the share of the candidate's videos whose pixels show each prompted attribute."""
    if not report["protocol"].get("pixel_check"):
        evidence.append("pixel check: not run (no ground-truth file with a palette: not the demo world)")
        return [
            f"pixel_{check}_acc: not measured (evaluation ran no pixel check); promote.min_pixel_acc needs "
            "it (set promote.min_pixel_acc: {} for data outside the demo world)"
            for check in cfg.min_pixel_acc
        ]  # a gate that cannot be measured fails, never passes unseen
    candidate, real, failures = report["candidate"], report["real"], []
    for check, least in cfg.min_pixel_acc.items():
        name = f"pixel_{check}_acc"
        if name not in candidate:
            failures.append(f"{name}: not measured (no evaluation prompt is a demo-world prompt)")
            continue
        on_real = _ci(real, name) if name in real else "not measured"
        evidence.append(f"{name}: candidate {_ci(candidate, name)}, real clips {on_real}")
        if not candidate[name] >= least:
            failures.append(
                f"{check}: {candidate[name]:.3f} of the videos show the prompted {check.replace('_', ' ')} "
                f"< promote.min_pixel_acc.{check} {least} ({_ci(candidate, name)})"
            )
    return failures


def _against_champion(cfg: PromoteParams, report: dict, evidence: list[str]) -> list[str]:
    """Paired bootstrap tests, one-sided at cfg.confidence."""
    paired, version = report.get("paired"), report["champion"]["version"]
    if not paired:
        return [f"no paired comparison with champion v{version}: evaluate.bootstrap is 0"]
    alpha, failures = 1 - cfg.confidence, []
    fvd = np.asarray(paired["fvd_ref_delta"])  # candidate - champion: negative is better
    p_fvd = float(np.mean(fvd >= -cfg.min_fvd_ref_gain))
    evidence.append(f"fvd_ref candidate - champion v{version}: {_delta(fvd, cfg.confidence)}, "
                    f"p(not better by {cfg.min_fvd_ref_gain}) = {p_fvd:.3f}")  # fmt: skip
    if not p_fvd < alpha:
        failures.append(
            f"fvd_ref does not beat champion v{version}'s by promote.min_fvd_ref_gain {cfg.min_fvd_ref_gain} "
            f"at confidence {cfg.confidence} (paired p = {p_fvd:.3f}; {_delta(fvd, cfg.confidence)})"
        )
    clip = np.asarray(paired["clip_score_ref_delta"])  # candidate - champion: negative is worse
    p_clip = float(np.mean(clip <= -cfg.clip_score_ref_tolerance))
    evidence.append(f"clip_score_ref candidate - champion v{version}: {_delta(clip, cfg.confidence)}, "
                    f"p(trails by {cfg.clip_score_ref_tolerance}) = {p_clip:.3f}")  # fmt: skip
    if not p_clip < alpha:
        failures.append(
            f"clip_score_ref may trail champion v{version}'s by more than promote.clip_score_ref_tolerance "
            f"{cfg.clip_score_ref_tolerance} (paired p = {p_clip:.3f}; {_delta(clip, cfg.confidence)})"
        )
    return failures


def _ci(scores: dict, name: str) -> str:
    if f"{name}_ci_low" in scores:
        return f"{scores[name]:.3f} [{scores[f'{name}_ci_low']:.3f}, {scores[f'{name}_ci_high']:.3f}]"
    return f"{scores[name]:.3f}"


def _delta(deltas: np.ndarray, confidence: float) -> str:
    lo, hi = np.quantile(deltas, [(1 - confidence) / 2, (1 + confidence) / 2])
    return (
        f"mean {deltas.mean():.3f}, {confidence:.0%} interval [{lo:.3f}, {hi:.3f}], {len(deltas)} resamples"
    )


def run(cfg: PromoteConfig, evaluation_path: str | Path, decision_path: str | Path) -> PromoteResult:
    """Move the alias to the candidate of the evaluation report when every gate passes; write the decision."""
    setup(cfg.registry)
    alias = cfg.registry.alias
    report = json.loads(Path(evaluation_path).read_text())
    name, candidate = report["model_name"], report["candidate"]
    champion_now = champion_version(name, alias)
    if champion_now != report["protocol"]["champion_version"]:
        raise RuntimeError(
            f"the champion moved to v{champion_now} after evaluation compared against "
            f"v{report['protocol']['champion_version']}; re-run evaluation (dvc repro -f evaluate)"
        )
    failures, evidence = decide(cfg.promote, report)
    promoted = not failures
    if promoted:
        move_alias(
            name, alias, candidate["version"], "promote",
            f"evaluation run {report['eval_run_id']}: every promotion gate passed",
        )  # fmt: skip
    decision = PromoteResult(
        model_name=name,
        candidate_version=candidate["version"],
        champion_before=champion_now,
        champion_after=candidate["version"] if promoted else champion_now,
        promoted=promoted,
        failures=failures,
        evidence=evidence,
        eval_run_id=report["eval_run_id"],
    )
    write_json_atomic(decision_path, asdict(decision))
    publish(report, asdict(decision))  # the evaluation run's and the version's descriptions in the MLflow UI
    log_lock(report["eval_run_id"])  # train's and evaluate's outputs included: what `reproduce` restores
    return decision
