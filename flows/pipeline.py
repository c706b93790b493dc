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

from reelforge.registry.reproduce import REMOTE_NAME
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


# Safe to repeat, so transient failures (a busy disk, a Ray head still starting) are retried with backoff. A
# stage is not: `dvc repro` of a failed stage fails fast, and the next run repeats it from its last output.
def _transient(task, task_run, state) -> bool:
    """Retry what may pass on a second try; a missing input or a bad setting will not."""
    try:
        state.result()
    except (FileNotFoundError, ValueError):
        return False
    except Exception:  # noqa: BLE001 -- anything else may be transient
        return True
    return True


RETRY = {"retries": 2, "retry_delay_seconds": [10, 60], "retry_condition_fn": _transient}


@task(cache_policy=NO_CACHE, **RETRY)
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


@task(cache_policy=NO_CACHE, **RETRY)
def serve_champion(project: Path) -> dict:
    from reelforge.config import ServeConfig, load_params
    from serving.deploy import deploy

    return deploy(load_params(project / "params.yaml").stage(ServeConfig), project)


def check_backends(root: Path) -> None:
    """Log the tracking store and Prefect API this run uses; fail before any stage if one does not answer."""
    from reelforge.config import load_params
    from reelforge.registry.tracking import tracking_uri
    from reelforge.stack import unreachable

    uri, api = (
        tracking_uri(load_params(root / "params.yaml").registry, root),
        os.environ.get("PREFECT_API_URL"),
    )
    logger = get_run_logger()
    logger.info(f"tracking: {uri}; orchestration: {api or 'an ephemeral Prefect API'}")
    if problems := unreachable(uri, api):
        raise RuntimeError("; ".join(f"{what} {url}: {why}" for what, url, why in problems))


def notify_failure(flow, flow_run, state) -> None:
    """on_failure: POST the run, its failed task and the error's tail to params' notify.webhook_url."""
    from reelforge.config import load_params

    root = Path(flow_run.parameters.get("project", ".")).resolve()
    url = load_params(root / "params.yaml").notify.webhook_url
    if url:
        send_failure(url, flow_run, state)


def send_failure(url: str, flow_run, state) -> None:
    import httpx
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        failed = [
            t.name for t in client.read_task_runs(flow_run_filter=_by_id(flow_run.id))
            if t.state and t.state.is_failed()
        ]  # fmt: skip
    message = state.message or ""
    body = {
        "flow_run": flow_run.name, "flow_run_id": str(flow_run.id), "state": state.name,
        "failed_stage": failed[0] if failed else None, "message": message.splitlines()[0] if message else "",
        "log_tail": "\n".join(message.splitlines()[-30:]),
    }  # fmt: skip
    try:
        httpx.post(url, json=body, timeout=10).raise_for_status()
    except httpx.HTTPError as exc:  # a notification that fails must not hide the failure it reports
        print(f"failure notification to {url} failed: {exc}")


def _by_id(run_id):
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    return FlowRunFilter(id=FlowRunFilterId(any_=[run_id]))


@task(cache_policy=NO_CACHE)
def push_data(project: Path) -> str:
    """`dvc push` the data and model of this run to `dvc.remote` (after serving: an unreachable remote fails
    the run but loses nothing, and the next run's push sends what this one could not)."""
    from reelforge.config import load_params

    remote = load_params(project / "params.yaml").dvc.remote
    if not remote:
        print("dvc.remote is not set: the data stays in this machine's DVC cache only")
        return "not pushed"
    url = remote if "://" in remote else str((project / remote).resolve())
    _dvc(project, "remote", "add", "--local", "--force", "--default", REMOTE_NAME, url)
    try:
        _dvc(project, "push")
    except RuntimeError as exc:
        raise RuntimeError(f"dvc push to remote {REMOTE_NAME!r} ({url}) failed: {exc}") from None
    return url


@flow(name="reelforge-pipeline", log_prints=True, on_failure=[notify_failure])
def pipeline(project: str = ".", serve: bool = True) -> dict:
    """Raw videos -> clips -> captions -> model -> evaluation -> promotion -> endpoint."""
    root = Path(project).resolve()
    check_backends(root)
    data_version = snapshot_raw(root)
    stages = [repro(root, s) for s in STAGES]  # sequential: each waits for the one before
    served = serve_champion(root) if serve else None
    pushed = push_data(root)
    return {"data_version": data_version, "stages": stages, "served": served, "pushed": pushed}


DEPLOYMENT = "reelforge-scheduled"


def deploy_scheduled(project: str, cron: str, work_pool: str, env: dict[str, str]):
    """Register the pipeline on a Prefect work pool on a cron schedule; the pool's worker runs it in the
    project folder with `env` (where the stack is). At most one run at a time: a run that comes while one is
    running waits in the state AwaitingConcurrencySlot, then runs (and finds the DVC stages up to date unless
    the data changed)."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy

    root = Path(project).resolve()
    return pipeline.from_source(str(root), "flows/pipeline.py:pipeline").deploy(
        name=DEPLOYMENT,
        work_pool_name=work_pool,
        cron=cron,
        parameters={"project": str(root), "serve": True},
        job_variables={"env": env},
        concurrency_limit=ConcurrencyLimitConfig(
            limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE
        ),
        description="Raw videos -> served text-to-video model, on a schedule.",
        build=False,
        push=False,
        print_next_steps=False,
        ignore_warnings=True,
    )
