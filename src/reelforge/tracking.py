"""MLflow wiring: where runs and models live, the registered model and its `champion` alias."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from reelforge.config import MlflowConfig


def tracking_uri(cfg: MlflowConfig, project_root: str | Path | None = None) -> str:
    """MLFLOW_TRACKING_URI, else params, else a SQLite store in the project given as an absolute URI."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    if cfg.tracking_uri:
        return cfg.tracking_uri
    root = Path(project_root or Path.cwd()).resolve()
    return f"sqlite:///{root / 'mlflow.db'}"


def setup(cfg: MlflowConfig, project_root: str | Path | None = None) -> str:
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


def champion_version(name: str, alias: str = "champion") -> str | None:
    try:
        return str(MlflowClient().get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def version_metrics(name: str, version: str) -> dict[str, float]:
    """Evaluation metrics stored as `metric.*` tags on a model version."""
    tags = MlflowClient().get_model_version(name, version).tags
    return {k.removeprefix("metric."): float(v) for k, v in tags.items() if k.startswith("metric.")}


def registration(name: str, version: str) -> dict:
    """What `train` writes to registration.json, rebuilt from the registry for an existing version."""
    mv = MlflowClient().get_model_version(name, version)
    return {"model_name": name, "version": str(mv.version), "run_id": mv.run_id}


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (subprocess.CalledProcessError, FileNotFoundError):
        return "unknown"


class TextToVideoPyfunc(mlflow.pyfunc.PythonModel):
    """MLflow wrapper so a registered version loads with `mlflow.pyfunc.load_model("models:/name/N")`."""

    def load_context(self, context) -> None:
        from reelforge.generate import VideoGenerator

        self.generator = VideoGenerator.from_dir(context.artifacts["generator"])

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> list:
        """model_input: a `prompt` column (and optional `seed`); returns (T, H, W, 3) uint8 arrays."""
        params = params or {}
        seeds = model_input["seed"].tolist() if "seed" in model_input else list(range(len(model_input)))
        videos = self.generator.generate(model_input["prompt"].tolist(), seeds, **params)
        return list(videos)


def load_generator(name: str, version: str):
    """The VideoGenerator of a registered model version, loaded through MLflow."""
    model = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    return model.unwrap_python_model().generator


def dvc_lineage(project_root: str | Path | None = None) -> dict[str, str]:
    """The data identity DVC recorded: sha256 of dvc.lock and the md5 of each stage output it lists."""
    import yaml

    from reelforge.hashing import file_sha256

    lock = Path(project_root or Path.cwd()) / "dvc.lock"
    if not lock.exists():
        return {"data.dvc_lock": "none (not run through dvc repro)"}
    out = {"data.dvc_lock_sha256": file_sha256(lock)}
    for stage, entry in (yaml.safe_load(lock.read_text()) or {}).get("stages", {}).items():
        for o in entry.get("outs", []):
            if "md5" in o:
                out[f"data.dvc.{stage}.{o['path']}.md5"] = o["md5"]
    return out
