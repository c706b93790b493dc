"""Promote stage: move the `champion` alias to the candidate only when the gates in params pass.

Gates (params.promote): absolute ones every candidate must clear (ratios to the real validation clips),
then — when a champion exists — the candidate must beat it on fvd_ref and not trail it on clip_score_ref
by more than a tolerance. Both were scored in the same evaluation run, on the same prompts, seeds and
reference encoder. On demo data, `min_pixel_acc` adds per-attribute thresholds on the pixel check: the share
of the candidate's videos that show what their prompt asked.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from mlflow import MlflowClient

from reelforge.config import PromoteConfig, PromoteParams
from reelforge.files import write_json_atomic
from reelforge.registry.tracking import champion_version, setup


@dataclass(frozen=True)
class PromoteResult:
    """The decision, as written to `reports/promotion.json`."""

    model_name: str
    candidate_version: str
    champion_before: str | None
    champion_after: str | None
    promoted: bool
    failures: list[str]
    eval_run_id: str


def decide(cfg: PromoteParams, report: dict) -> list[str]:
    """Reasons the candidate in an evaluation report fails; an empty list means promote."""
    candidate, champion = report["candidate"], report.get("champion")
    floor, real_score = report["real_fvd_ref_split_half"], report["real"]["clip_score_ref"]
    failures = []
    if floor is not None and not candidate["fvd_ref"] <= cfg.max_fvd_ref_ratio * floor:
        failures.append(
            f"fvd_ref {candidate['fvd_ref']:.3f} > promote.max_fvd_ref_ratio {cfg.max_fvd_ref_ratio} "
            f"x real split-half floor {floor:.3f}"
        )
    if not candidate["clip_score_ref"] >= cfg.min_clip_score_ref_ratio * real_score:
        failures.append(
            f"clip_score_ref {candidate['clip_score_ref']:.3f} < promote.min_clip_score_ref_ratio "
            f"{cfg.min_clip_score_ref_ratio} x real clips' {real_score:.3f}"
        )
    failures += _pixel_check(cfg, report)
    if champion is not None:
        if not candidate["fvd_ref"] < champion["fvd_ref"] - cfg.min_fvd_ref_gain:
            failures.append(
                f"fvd_ref {candidate['fvd_ref']:.3f} does not beat champion v{champion['version']}'s "
                f"{champion['fvd_ref']:.3f} by promote.min_fvd_ref_gain {cfg.min_fvd_ref_gain}"
            )
        if candidate["clip_score_ref"] < champion["clip_score_ref"] - cfg.clip_score_ref_tolerance:
            failures.append(
                f"clip_score_ref {candidate['clip_score_ref']:.3f} trails champion's "
                f"{champion['clip_score_ref']:.3f} by more than {cfg.clip_score_ref_tolerance}"
            )
    return failures


def _pixel_check(cfg: PromoteParams, report: dict) -> list[str]:
    """Demo data: per check in `min_pixel_acc`, the share of the candidate's videos whose pixels show what
    their prompt asked (reelforge.evaluate.pixelcheck). Thresholds without a pixel check fail, saying why."""
    candidate, failures = report["candidate"], []
    for check, least in cfg.min_pixel_acc.items():
        name = f"pixel_{check}_acc"
        if name not in candidate:
            failures.append(
                f"{name}: not measured (evaluation ran no pixel check: no ground-truth file, or no "
                "evaluation prompt of the demo world); promote.min_pixel_acc needs it"
            )
        elif not candidate[name] >= least:
            ci = ""
            if f"{name}_ci_low" in candidate:
                ci = f", 95% interval [{candidate[name + '_ci_low']:.3f}, {candidate[name + '_ci_high']:.3f}]"
            failures.append(
                f"{check}: {candidate[name]:.3f} of the videos show the prompted {check.replace('_', ' ')}"
                f"{ci} < promote.min_pixel_acc.{check} {least}"
            )
    return failures


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
    failures = decide(cfg.promote, report)
    promoted = not failures
    if promoted:
        MlflowClient().set_registered_model_alias(name, alias, candidate["version"])
    decision = PromoteResult(
        model_name=name,
        candidate_version=candidate["version"],
        champion_before=champion_now,
        champion_after=candidate["version"] if promoted else champion_now,
        promoted=promoted,
        failures=failures,
        eval_run_id=report["eval_run_id"],
    )
    write_json_atomic(decision_path, asdict(decision))
    return decision
