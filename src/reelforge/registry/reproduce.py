"""Bring back what made a registered model version, in a fresh folder, and check that it is the same.

A version records its lineage: the training run's `git_commit` tag, and the `dvc.lock` that promote saw
(after train and evaluate), logged as `lineage/dvc.lock` on the version's evaluation run. `reproduce`
clones the project's Git repository at that commit, puts that `dvc.lock` in it, pulls the stages' outputs
from the DVC remote, and checks each output's content against the md5 the lock records (`dvc status`
hashes the pulled files afresh once the hashes `dvc pull` recorded are removed: a corrupted file in the
remote is pulled without complaint, and only hashing it again shows it).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml
from mlflow import MlflowClient

LOCK_ARTIFACT = "lineage/dvc.lock"
CHECKED = {"ingest": "data/clips", "caption": "data/captions", "train": "models/t2v"}  # stage -> output
REMOTE_NAME = "reelforge"


@dataclass
class Check:
    path: str
    md5: str | None
    state: str  # match | mismatch | missing

    def line(self) -> str:
        return f"{self.path:<14} {self.md5 or '-':<40} {self.state}"


def _dvc(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    dvc = shutil.which("dvc", path=str(Path(sys.executable).parent)) or "dvc"
    return subprocess.run([dvc, *args], cwd=cwd, capture_output=True, text=True)


def _git(*args: str, cwd: Path | None = None) -> None:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {proc.stderr.strip()}")


def lineage(name: str, version: str) -> tuple[str, str]:
    """(git commit, dvc.lock text) recorded for a model version."""
    client = MlflowClient()
    mv = client.get_model_version(name, version)
    commit = client.get_run(mv.run_id).data.tags.get("git_commit", "unknown")
    eval_run = mv.tags.get("eval_run_id")
    if commit == "unknown" or not eval_run:
        raise LookupError(f"{name} v{version} has no recorded git commit or evaluation run to reproduce from")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            lock = Path(client.download_artifacts(eval_run, LOCK_ARTIFACT, tmp)).read_text()
        except Exception as exc:  # noqa: BLE001 -- MLflow raises several kinds for a missing artifact
            raise LookupError(f"{name} v{version}: evaluation run {eval_run} has no {LOCK_ARTIFACT}") from exc
    return commit, lock


def reproduce(name: str, version: str, repo: str, remote: str, into: Path) -> list[Check]:
    """Clone `repo` at the version's commit into `into`, pull its data from `remote`, check the md5s."""
    commit, lock = lineage(name, version)
    if into.exists() and any(into.iterdir()):
        raise FileExistsError(f"{into} is not empty")
    _git("clone", "--quiet", "--no-checkout", repo, str(into))
    _git("checkout", "--quiet", commit, cwd=into)
    (into / "dvc.lock").write_text(lock)
    added = _dvc("remote", "add", "--local", "--force", "--default", REMOTE_NAME, remote, cwd=into)
    if added.returncode != 0:
        raise RuntimeError(f"dvc remote add {remote}: {added.stderr.strip()}")
    stages = yaml.safe_load(lock).get("stages", {})
    expected = {
        path: next((o.get("md5") for o in stages.get(stage, {}).get("outs", []) if o["path"] == path), None)
        for stage, path in CHECKED.items()
    }
    pulled = _dvc("pull", *[s for s in CHECKED if s in stages], cwd=into)
    pull_error = pulled.returncode != 0
    shutil.rmtree(into / ".dvc" / "tmp", ignore_errors=True)  # pull records the hashes it meant to write
    status = _dvc("status", "--json", *[s for s in CHECKED if s in stages], cwd=into)
    changed: dict[str, str] = {}
    for entries in json.loads(status.stdout or "{}").values():
        for entry in entries if isinstance(entries, list) else []:
            if isinstance(entry, dict):
                changed |= entry.get("changed outs", {})
    checks = []
    for path, md5 in expected.items():
        if md5 is None or not (into / path).exists():
            checks.append(Check(path, md5, "missing"))
        else:
            checks.append(Check(path, md5, "mismatch" if path in changed else "match"))
    if pull_error and all(c.state == "match" for c in checks):  # a failure that left nothing to point at
        raise RuntimeError(f"dvc pull from {remote} failed:\n{pulled.stderr.strip()[-2000:]}")
    return checks
