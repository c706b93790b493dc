"""Registered model versions: log a pipeline directory as an MLflow pyfunc model and register it; load a
version back as a `TextToVideoPipeline`; the `registration.json` train writes and evaluate reads.

Loading reads the version's copy of the pipeline directory with `TextToVideoPipeline.from_pretrained`, not
the pickled wrapper, so versions stay loadable whatever module the wrapper class lived in when they were
logged. `mlflow.pyfunc.load_model("models:/name/N")` works too (for `mlflow models predict`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import mlflow
import pandas as pd
import yaml
from mlflow import MlflowClient
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

from reelforge.files import write_json_atomic
from reelforge.model.pipeline import TextToVideoPipeline

ARTIFACT = "generator"  # the pyfunc artifact holding the pipeline directory
# What `predict` takes: prompts (and seeds) as rows; the sampling settings as params (None: the model's).
SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec("string", "prompt"), ColSpec("long", "seed", required=False)]),
    params=ParamSchema([
        ParamSpec("num_frames", "long", None), ParamSpec("width", "long", None),
        ParamSpec("height", "long", None), ParamSpec("steps", "long", None),
        ParamSpec("guidance", "double", None),
    ]),
)  # fmt: skip
INPUT_EXAMPLE = pd.DataFrame({"prompt": ["a red circle moves left over a black background"], "seed": [0]})


@dataclass(frozen=True)
class Registration:
    """A registered version and the training run that made it (`models/registration.json`)."""

    run_id: str
    model_name: str
    version: str
    final_loss: float | None = None
    final_step: int | None = None
    resumed_from_step: int | None = None
    train_seconds: float | None = None
    tracking_uri: str | None = None

    def save(self, path: str | Path) -> None:
        write_json_atomic(path, asdict(self))

    @classmethod
    def load(cls, path: str | Path) -> Registration:
        return cls(**json.loads(Path(path).read_text()))

    @classmethod
    def of_version(cls, name: str, version: str) -> Registration:
        """An existing version, rebuilt from the registry (`reelforge evaluate --version N`)."""
        mv = MlflowClient().get_model_version(name, version)
        return cls(run_id=mv.run_id, model_name=name, version=str(mv.version))


class TextToVideoPyfunc(mlflow.pyfunc.PythonModel):
    """MLflow wrapper so a registered version loads with `mlflow.pyfunc.load_model("models:/name/N")`."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        self.pipeline = TextToVideoPipeline.from_pretrained(context.artifacts[ARTIFACT])

    def predict(
        self, context: mlflow.pyfunc.PythonModelContext, model_input: pd.DataFrame, params: dict | None = None
    ) -> list:
        """model_input: a `prompt` column (and optional `seed`); params: num_frames, width, height (a size
        it was trained at), steps, guidance (None: the model's). Returns one (T, H, W, 3) uint8 video per
        row."""
        params = {k: v for k, v in (params or {}).items() if v is not None}
        seeds = model_input["seed"].tolist() if "seed" in model_input else list(range(len(model_input)))
        return list(self.pipeline.generate(model_input["prompt"].tolist(), seeds, **params))


def log_and_register(model_dir: str | Path, model_name: str) -> str:
    """Inside an active run: log the pipeline directory as the run's pyfunc model, register it; the
    version."""
    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=TextToVideoPyfunc(),
        artifacts={ARTIFACT: str(Path(model_dir).resolve())},
        registered_model_name=model_name,
        pip_requirements=["reelforge"],
        signature=SIGNATURE,
        input_example=INPUT_EXAMPLE,
    )
    return str(info.registered_model_version)


def load_pipeline(name: str, version: str) -> TextToVideoPipeline:
    """The pipeline of a registered version, from the version's own copy of the model directory."""
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/{version}"))
    flavor = yaml.safe_load((local / "MLmodel").read_text())["flavors"]["python_function"]
    return TextToVideoPipeline.from_pretrained(local / flavor["artifacts"][ARTIFACT]["path"])
