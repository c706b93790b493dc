"""MLflow wiring: where runs and models live, the registered model and its serving alias."""

from __future__ import annotations

import os
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from reelforge.config import RegistryParams


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
    mlflow.set_experiment(cfg.experiment)
    return uri


def champion_version(name: str, alias: str) -> str | None:
    try:
        return str(MlflowClient().get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def version_metrics(name: str, version: str) -> dict[str, float]:
    """Evaluation metrics stored as `metric.*` tags on a model version."""
    tags = MlflowClient().get_model_version(name, version).tags
    return {k.removeprefix("metric."): float(v) for k, v in tags.items() if k.startswith("metric.")}
