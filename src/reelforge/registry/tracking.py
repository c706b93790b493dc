"""MLflow wiring: where runs and models live, the registered model and its serving alias."""

from __future__ import annotations

import getpass
import json
import os
import time
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from reelforge.config import RegistryParams

# The MLflow UI opens an experiment of this kind on its runs (untagged, it guesses GenAI and shows traces).
KIND_TAG, KIND = "mlflow.experimentKind", "custom_model_development"


PIPELINE_RUN_ENV = "REELFORGE_PIPELINE_RUN"  # set by the Prefect flow for the stages it runs


def run_tags(stage: str) -> dict[str, str]:
    """A stage run's tags: the stage, and the pipeline execution (Prefect flow run) it belongs to, so the
    runs of one execution can be found together (`tags.pipeline_run = '...'` in the MLflow UI)."""
    run = os.environ.get(PIPELINE_RUN_ENV)
    return {"stage": stage} | ({"pipeline_run": run} if run else {})


def tracking_uri(cfg: RegistryParams, project_root: str | Path | None = None) -> str:
    """MLFLOW_TRACKING_URI, else params, else a SQLite store in the project given as an absolute URI."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    if cfg.tracking_uri:
        return cfg.tracking_uri
    root = Path(project_root or Path.cwd()).resolve()
    return f"sqlite:///{root / 'mlflow.db'}"


def setup(cfg: RegistryParams, project_root: str | Path | None = None) -> str:
    """Point MLflow at the store and make sure the experiment exists with an absolute artifact location."""
    uri = tracking_uri(cfg, project_root)
    mlflow.set_tracking_uri(uri)  # note: this also exports MLFLOW_TRACKING_URI
    mlflow.set_registry_uri(uri)
    if mlflow.get_experiment_by_name(cfg.experiment) is None:
        # A local SQLite store keeps artifacts in the project; a tracking server decides its own root.
        root = Path(project_root or Path.cwd()).resolve()
        location = (root / "mlartifacts").as_uri() if uri.startswith("sqlite:") else None
        try:
            mlflow.create_experiment(cfg.experiment, artifact_location=location)
        except MlflowException:  # created by a concurrent process meanwhile
            pass
    experiment = mlflow.set_experiment(cfg.experiment)
    if experiment.tags.get(KIND_TAG) != KIND:
        MlflowClient().set_experiment_tag(experiment.experiment_id, KIND_TAG, KIND)
    return uri


def champion_version(name: str, alias: str) -> str | None:
    try:
        return str(MlflowClient().get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


HISTORY_KEEP = 20  # moves kept in the registered model's tag (MLflow caps tag length)


def _history_tag(alias: str) -> str:
    return f"alias_history.{alias}"


def alias_history(name: str, alias: str) -> list[dict]:
    """Every recorded move of `alias`, oldest first: version, previous, action, at, by, reason."""
    tags = MlflowClient().get_registered_model(name).tags
    return json.loads(tags.get(_history_tag(alias), "[]"))


def move_alias(name: str, alias: str, version: str, action: str, reason: str, by: str | None = None) -> dict:
    """Point `alias` at `version` and record who moved it, when and why: on the registered model (the history
    a rollback reads) and on the version (`<alias>.moved_*` tags, shown in the MLflow UI)."""
    client = MlflowClient()
    entry = {
        "version": str(version), "previous": champion_version(name, alias), "action": action,
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "by": by or _user(), "reason": reason,
    }  # fmt: skip
    client.set_registered_model_alias(name, alias, str(version))
    history = (alias_history(name, alias) + [entry])[-HISTORY_KEEP:]
    client.set_registered_model_tag(name, _history_tag(alias), json.dumps(history))
    for key in ("action", "at", "by", "reason"):
        client.set_model_version_tag(name, str(version), f"{alias}.moved_{key}", entry[key])
    return entry


def rollback_target(name: str, alias: str) -> str:
    """The champion before the current one: the `previous` of the move that promoted the current version
    (so a second rollback goes one further back, not forth)."""
    current = champion_version(name, alias)
    for entry in reversed(alias_history(name, alias)):
        if entry["version"] == current and entry["action"] == "promote" and entry["previous"]:
            return entry["previous"]
    raise LookupError(
        f"{name}@{alias} is v{current}, and no earlier champion is recorded for it: "
        "name the version to go back to (--to)"
    )


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return f"uid {os.getuid()}"


def version_metrics(name: str, version: str) -> dict[str, float]:
    """Evaluation metrics stored as `metric.*` tags on a model version."""
    tags = MlflowClient().get_model_version(name, version).tags
    return {k.removeprefix("metric."): float(v) for k, v in tags.items() if k.startswith("metric.")}
