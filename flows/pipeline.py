"""The Prefect flow: snapshot raw data with DVC, reproduce each DVC stage, then serve the champion.

Each stage task runs `dvc repro <stage>`: DVC decides what is stale and `dvc.lock` is the lineage record,
so Prefect's own caching is off for these tasks. Training runs inside its DVC command, a separate process,
so a multi-process launcher never re-executes this flow.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from prefect import flow, get_run_logger, task
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


@task(cache_policy=NO_CACHE, task_run_name="dvc repro {stage}")
def repro(project: Path, stage: str) -> dict:
    t0 = time.perf_counter()
    out = _dvc(project, "repro", "--single-item", stage)
    ran = f"Running stage '{stage}'" in out
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
