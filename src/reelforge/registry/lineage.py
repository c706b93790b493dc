"""Lineage recorded with every training run: the git commit and what DVC says the data is."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from reelforge.files import file_sha256


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (subprocess.CalledProcessError, FileNotFoundError):
        return "unknown"


def dvc_lineage(project_root: str | Path | None = None) -> dict[str, str]:
    """The data identity DVC recorded: sha256 of dvc.lock and the md5 of each stage output it lists."""
    lock = Path(project_root or Path.cwd()) / "dvc.lock"
    if not lock.exists():
        return {"data.dvc_lock": "none (not run through dvc repro)"}
    out = {"data.dvc_lock_sha256": file_sha256(lock)}
    for stage, entry in (yaml.safe_load(lock.read_text()) or {}).get("stages", {}).items():
        for o in entry.get("outs", []):
            if "md5" in o:
                out[f"data.dvc.{stage}.{o['path']}.md5"] = o["md5"]
    return out


def log_lock(run_id: str, project_root: str | Path | None = None) -> None:
    """Keep the project's dvc.lock with a run (as `lineage/dvc.lock`): what `reelforge reproduce` restores."""
    from mlflow import MlflowClient

    lock = Path(project_root or Path.cwd()) / "dvc.lock"
    if lock.exists():
        MlflowClient().log_artifact(run_id, str(lock), "lineage")
