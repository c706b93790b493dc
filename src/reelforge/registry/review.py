"""What a reviewer reads in the MLflow UI, so a candidate can be decided on there alone: the evaluation
run's description (candidate against champion and the real clips, with intervals, and the promotion
decision with its reasons) and the model version's description (where it came from)."""

from __future__ import annotations

from mlflow import MlflowClient

# MLflow 3.17's UI shows an experiment by its GenAI / model-training switch, which a URL can set: this opens
# an experiment on its runs (the experiment's `mlflow.experimentKind` tag says the same to UIs that read it).
UI_WORKFLOW = "workflowType=machine_learning"

# (metric, what it is, which way is better); rows with no value in the report are left out.
ROWS = (
    ("fvd_ref_floor_n", "fvd_ref at the floor's n, the gated distance", "lower"),
    ("fvd_ref", "fvd_ref, every generated clip", "lower"),
    ("fvd_floor_n", "standard fvd (Kinetics-400 I3D) at the floor's n", "lower"),
    ("fvd", "standard fvd, every generated clip", "lower"),
    ("fvd_custom_floor_n", "fvd_custom (an I3D that is not the pinned one) at the floor's n", "lower"),
    ("fvd_custom", "fvd_custom, every generated clip", "lower"),
    ("clip_score_ref", "clip_score_ref", "higher"),
    ("clip_score", "standard clip_score", "higher"),
    ("caption_match_ref", "caption_match_ref", "higher"),
    ("pixel_background_acc", "pixel check: background", "higher"),
    ("pixel_color_acc", "pixel check: colour", "higher"),
    ("pixel_single_blob_acc", "pixel check: single blob", "higher"),
    ("pixel_shape_acc", "pixel check: shape", "higher"),
    ("pixel_direction_acc", "pixel check: direction", "higher"),
    ("pixel_all_acc", "pixel check: all attributes", "higher"),
)


def _value(scores: dict | None, name: str) -> str:
    if not scores or name not in scores:
        return "—"
    if f"{name}_ci_low" in scores:
        return f"{scores[name]:.3g} [{scores[f'{name}_ci_low']:.3g}, {scores[f'{name}_ci_high']:.3g}]"
    return f"{scores[name]:.3g}"


def evaluation_markdown(report: dict, decision: dict) -> str:
    """The evaluation run's description: the decision, then one table (95% intervals in brackets)."""
    candidate, champion = report["candidate"], report.get("champion")
    protocol, floor = report["protocol"], report.get("floor", {})
    verdict = (
        f"**Promoted**: v{candidate['version']} is the new champion."
        if decision["promoted"]
        else f"**Not promoted**: v{candidate['version']} failed {len(decision['failures'])} gate(s)."
    )
    lines = [f"## v{candidate['version']} against "
             + (f"champion v{champion['version']}" if champion else "no champion (the first candidate)"),
             "", verdict, ""]  # fmt: skip
    lines += [f"- ✗ {f}" for f in decision["failures"]]
    lines += [f"- {e}" for e in decision["evidence"]]
    head = ["metric", "better", f"candidate v{candidate['version']}"]
    head += [f"champion v{champion['version']}"] if champion else []
    head += ["real clips"]
    lines += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, label, better in ROWS:
        if name not in candidate:
            continue
        real_cell = _value(report["real"], name)
        base = name.removesuffix("_floor_n")
        if name.endswith("_floor_n") and base in floor:  # the real-vs-real floor at the same n
            real_cell = f"floor {_value(floor, base)}"
        cells = [label, better, _value(candidate, name)]
        cells += [_value(champion, name)] if champion else []
        lines.append("| " + " | ".join([*cells, real_cell]) + " |")
    lines += [
        "",
        f"{protocol['prompts']} prompts × {protocol['samples_per_prompt']} seeds "
        f"({protocol['n_generated']} generated clips) against {protocol['n_real']} real validation clips; "
        f"reference encoder `{protocol['extractor']}`; {protocol['bootstrap_resamples']} bootstrap "
        f"resamples. Floor: {protocol.get('floor', 'not measured')}. Samples: `samples/` (candidate | "
        "champion, the same prompts and seeds).",
    ]
    return "\n".join(lines)


def version_markdown(name: str, version: str, eval_run_id: str, decision: dict) -> str:
    """The model version's description: its training and evaluation runs, git commit and data md5s."""
    client = MlflowClient()
    mv = client.get_model_version(name, version)
    train = client.get_run(mv.run_id)
    exp = train.info.experiment_id
    data = {k.removeprefix("data.dvc."): v for k, v in train.data.params.items() if k.startswith("data.dvc.")}
    outcome = "promoted" if decision["promoted"] else "not promoted: " + "; ".join(decision["failures"])
    lines = [
        f"Training run: [{mv.run_id}](#/experiments/{exp}/runs/{mv.run_id}?{UI_WORKFLOW})",
        f"Evaluation run: [{eval_run_id}](#/experiments/{exp}/runs/{eval_run_id}?{UI_WORKFLOW})",
        f"Git commit: `{train.data.tags.get('git_commit', 'unknown')}`",
        f"Promotion: {outcome}",
        "",
        "Data (md5 in dvc.lock):",
    ]
    lines += [f"- `{k}`: `{v}`" for k, v in sorted(data.items())] or ["- not run through `dvc repro`"]
    return "\n".join(lines)


def publish(report: dict, decision: dict) -> None:
    """Write both descriptions (the evaluation run's is its `mlflow.note.content` tag)."""
    client = MlflowClient()
    client.set_tag(report["eval_run_id"], "mlflow.note.content", evaluation_markdown(report, decision))
    client.set_tag(report["eval_run_id"], "promotion", "promoted" if decision["promoted"] else "rejected")
    name, version = report["model_name"], report["candidate"]["version"]
    client.update_model_version(
        name, version, description=version_markdown(name, version, report["eval_run_id"], decision)
    )
