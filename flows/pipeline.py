"""The Prefect flow: snapshot raw data with DVC, reproduce each DVC stage, then serve the champion.

Each stage task runs `dvc repro <stage>`: DVC decides what is stale and `dvc.lock` is the lineage record,
so Prefect's own caching is off for these tasks. Training runs inside its DVC command, a separate process,
so a multi-process launcher never re-executes this flow.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from reelforge.registry.tracking import PIPELINE_RUN_ENV

STAGES = ("ingest", "caption", "train", "evaluate", "promote")
RAW_DIR = "data/raw"


def _dvc(project: Path, *args: str) -> str:
    """Run a DVC command in the project, streaming its output to the flow log; raise on failure."""
    logger = get_run_logger()
    bin_dir = str(Path(sys.executable).parent)  # stage commands (`reelforge ...`) come from this environment
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    if flow_run.id:  # the stages tag their MLflow runs with this flow run
        env[PIPELINE_RUN_ENV] = f"{flow_run.name}/{flow_run.id}"
    proc = subprocess.Popen(
        [os.path.join(bin_dir, "dvc"), *args],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    for line in proc.stdout:
        lines.append(line.rstrip())
        logger.info(line.rstrip())
    if proc.wait() != 0:
        tail = "\n".join(lines[-30:])
        raise RuntimeError(f"`dvc {' '.join(args)}` failed (exit {proc.returncode}):\n{tail}")
    return "\n".join(lines)


@task(cache_policy=NO_CACHE)
def snapshot_raw(project: Path) -> str:
    """`dvc add` the raw videos so every run records (and caches) the exact input set; returns its md5."""
    if not (project / RAW_DIR).is_dir():
        raise FileNotFoundError(
            f"{project / RAW_DIR} does not exist: put videos there (or run `make demo-data`)"
        )
    _dvc(project, "add", RAW_DIR)
    return re.search(r"md5: (\S+)", (project / f"{RAW_DIR}.dvc").read_text()).group(1)


# Each stage's report, shown on the flow run's page as the stage task's artifact.
SUMMARIES = {
    "ingest": "reports/ingest.json", "caption": "reports/caption.json", "train": "models/registration.json",
    "evaluate": "reports/metrics.json", "promote": "reports/promotion.json",
}  # fmt: skip


def summary_markdown(stage: str, ran: bool, report: dict) -> str:
    """A stage's report as a two-column table: its numbers and short strings, one level of nesting."""
    rows = []
    for key, value in report.items():
        items = value.items() if isinstance(value, dict) else [("", value)]
        for sub, v in items:
            if isinstance(v, list) and all(isinstance(x, str) for x in v):  # e.g. promote's failures
                v = "; ".join(v) or "none"
            if isinstance(v, bool | int | float | str) and len(str(v)) <= 400 and "_ci_" not in sub:
                text = f"{v:.6g}" if isinstance(v, float) else str(v).replace("|", "\\|")
                rows.append(f"| {key}{'.' + sub if sub else ''} | {text} |")
    head = f"## {stage}: {'ran' if ran else 'up to date (not re-run)'}"
    return "\n".join([head, "", "| | |", "|---|---|", *rows])


@task(cache_policy=NO_CACHE, task_run_name="dvc repro {stage}")
def repro(project: Path, stage: str) -> dict:
    t0 = time.perf_counter()
    out = _dvc(project, "repro", "--single-item", stage)
    ran = f"Running stage '{stage}'" in out
    report = project / SUMMARIES[stage]
    if report.is_file():
        markdown = summary_markdown(stage, ran, json.loads(report.read_text()))
        create_markdown_artifact(markdown, key=f"{stage}-summary", description=f"{stage}: {SUMMARIES[stage]}")
    return {"stage": stage, "ran": ran, "seconds": round(time.perf_counter() - t0, 1)}


@task(cache_policy=NO_CACHE)
def serve_champion(project: Path) -> dict:
    from reelforge.config import ServeConfig, load_params
    from serving.deploy import deploy

    return deploy(load_params(project / "params.yaml").stage(ServeConfig), project)


@flow(name="reelforge-pipeline", log_prints=True)
def pipeline(project: str = ".", serve: bool = True) -> dict:
    """Raw videos -> clips -> captions -> model -> evaluation -> promotion -> endpoint."""
    root = Path(project).resolve()
    data_version = snapshot_raw(root)
    stages = [repro(root, s) for s in STAGES]  # sequential: each waits for the one before
    served = serve_champion(root) if serve else None
    return {"data_version": data_version, "stages": stages, "served": served}


def scheduled_deployment(project: str, cron: str):
    """The pipeline as a Prefect deployment on a cron schedule (served by `reelforge schedule`)."""
    return pipeline.to_deployment(
        name="reelforge-scheduled",
        cron=cron,
        parameters={"project": str(Path(project).resolve()), "serve": True},
        description="Raw videos -> served text-to-video model, on a schedule.",
    )
