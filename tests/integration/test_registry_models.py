"""Registered versions load back as pipelines, through MLflow (SQLite) for real; and a version logged by an
older release, whose pickled wrapper class no longer imports, still loads: the champion keeps serving."""

from __future__ import annotations

import json
import subprocess
import sys

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch

from reelforge.config import RegistryParams, SchedulerParams
from reelforge.model.autoencoder import Autoencoder
from reelforge.model.backbone import ModelConfig, TextToVideoModel
from reelforge.model.pipeline import TextToVideoPipeline
from reelforge.model.text import PromptTokenizer, train_tokenizer
from reelforge.registry.models import ARTIFACT, load_pipeline, log_and_register
from reelforge.registry.tracking import setup

pytestmark = pytest.mark.slow
PROMPTS = ["a red circle moves left", "a blue square moves up"]


def _pipeline_dir(path):
    torch.manual_seed(0)
    tokenizer = PromptTokenizer(train_tokenizer(PROMPTS), 6)
    cfg = ModelConfig("tiny", 4, 16, 16, 3, tokenizer.tok.get_vocab_size(), 6)
    pipeline = TextToVideoPipeline(
        TextToVideoModel(cfg).eval(), tokenizer, Autoencoder(None), SchedulerParams(), 8.0, 4, 2, 3.0
    )
    path.mkdir()
    pipeline.save_pretrained(path)
    return pipeline


@pytest.fixture
def registry(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    setup(RegistryParams())
    return tmp_path


def test_a_registered_pipeline_loads_and_predicts_through_pyfunc_too(registry):
    pipeline = _pipeline_dir(registry / "t2v")
    with mlflow.start_run():
        version = log_and_register(registry / "t2v", "t2v")
    loaded = load_pipeline("t2v", version)
    want = pipeline.generate(PROMPTS, [0, 1])
    assert np.array_equal(loaded.generate(PROMPTS, [0, 1]), want)
    assert loaded.generation_config == pipeline.generation_config
    model = mlflow.pyfunc.load_model(f"models:/t2v/{version}")
    videos = model.predict(pd.DataFrame({"prompt": PROMPTS}))
    assert len(videos) == 2 and videos[1].shape == (4, 16, 16, 3) and np.array_equal(videos[0], want[0])
    inputs = model.metadata.get_input_schema().input_names()
    assert inputs == ["prompt", "seed"] and model.metadata.get_params_schema() is not None
    # `mlflow models predict`, as a user would call it on the registered version (this environment)
    (registry / "in.json").write_text(
        '{"dataframe_records": [{"prompt": "a red circle moves left", "seed": 3}]}'
    )
    cli = [sys.executable, "-m", "mlflow", "models", "predict", "-m", f"models:/t2v/{version}",
           "-i", "in.json", "-t", "json", "-o", "out.json", "--env-manager", "local"]  # fmt: skip
    subprocess.run(cli, check=True, capture_output=True, cwd=registry)
    [video] = json.loads((registry / "out.json").read_text())["predictions"]
    assert np.array_equal(np.asarray(video, dtype=np.uint8), pipeline.generate(PROMPTS[:1], [3])[0])


def test_a_version_whose_wrapper_class_no_longer_imports_still_loads(registry, monkeypatch):
    (registry / "legacy_wrapper.py").write_text(
        "import mlflow\n\nclass OldPyfunc(mlflow.pyfunc.PythonModel):\n"
        "    def predict(self, context, model_input, params=None):\n        return []\n"
    )
    monkeypatch.syspath_prepend(str(registry))
    import legacy_wrapper

    pipeline = _pipeline_dir(registry / "t2v")
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=legacy_wrapper.OldPyfunc(),
            artifacts={ARTIFACT: str(registry / "t2v")},
            registered_model_name="t2v",
        )
    (registry / "legacy_wrapper.py").unlink()
    monkeypatch.delitem(sys.modules, "legacy_wrapper")
    with pytest.raises(Exception, match="legacy_wrapper"):  # unpickling the wrapper fails now ...
        mlflow.pyfunc.load_model(f"models:/t2v/{info.registered_model_version}")
    loaded = load_pipeline("t2v", str(info.registered_model_version))  # ... the pipeline does not need it
    assert np.array_equal(loaded.generate(PROMPTS[:1], [3]), pipeline.generate(PROMPTS[:1], [3]))


def test_evaluation_frames_draws_the_champion_as_a_png(registry, monkeypatch, capsys):
    """evaluation/frames.py, which makes the pictures in the docs, on a registered champion."""
    import runpy
    import shutil

    from PIL import Image

    from tests.conftest import REPO

    _pipeline_dir(registry / "t2v")
    with mlflow.start_run():
        version = log_and_register(registry / "t2v", "reelforge-t2v")
    mlflow.MlflowClient().set_registered_model_alias("reelforge-t2v", "champion", version)
    shutil.copy(REPO / "params.yaml", registry / "params.yaml")
    out = registry / "frames.png"
    monkeypatch.setattr(
        sys, "argv", ["frames.py", *PROMPTS, "--out", str(out), "--frames", "3", "--scale", "2"]
    )
    runpy.run_path(str(REPO / "evaluation/frames.py"), run_name="__main__")
    assert Image.open(out).size == (
        3 * (16 + 2) * 2,
        2 * (16 + 2) * 2,
    )  # 3 frames x 2 prompts, 16 px + gutter
    assert f"reelforge-t2v v{version}" in capsys.readouterr().out


def test_rollback_moves_the_alias_back_and_records_who_when_and_why(registry):
    """`reelforge rollback`: back to the champion before the current one, one step further each time, with
    every move recorded in MLflow (on the registered model and on the version)."""
    import shutil

    from typer.testing import CliRunner

    from reelforge.cli import app
    from reelforge.registry.tracking import alias_history, champion_version, move_alias
    from tests.conftest import REPO

    _pipeline_dir(registry / "t2v")
    versions = []
    for _ in range(3):
        with mlflow.start_run():
            versions.append(log_and_register(registry / "t2v", "reelforge-t2v"))
    for v in versions:
        move_alias("reelforge-t2v", "champion", v, "promote", f"gates passed for v{v}")
    shutil.copy(REPO / "params.yaml", registry / "params.yaml")
    closed = ["--set", "serve.port=8139"]  # nothing listens there: the endpoint is down

    def rollback(*args):
        return CliRunner().invoke(app, ["rollback", *args, *closed])

    r = rollback("--reason", "v3 draws noise")
    assert r.exit_code == 0, r.output
    assert "v3 -> v2" in r.output and "endpoint is not up" in r.output
    assert champion_version("reelforge-t2v", "champion") == "2"
    last = alias_history("reelforge-t2v", "champion")[-1]
    assert (last["version"], last["previous"], last["action"], last["reason"]) == (
        "2", "3", "rollback", "v3 draws noise"
    )  # fmt: skip
    assert last["by"] and last["at"].endswith("Z")
    tags = mlflow.MlflowClient().get_model_version("reelforge-t2v", "2").tags
    assert tags["champion.moved_action"] == "rollback" and tags["champion.moved_reason"] == "v3 draws noise"
    assert "v2 -> v1" in rollback("--reason", "v2 too").output  # further back, not forth to v3
    r = rollback("--reason", "again")
    assert r.exit_code == 1 and "no earlier champion" in r.output  # v1 was the first
    assert "v1 -> v3" in rollback("--reason", "fixed", "--to", "3").output
    assert [h["version"] for h in alias_history("reelforge-t2v", "champion")] == [
        "1",
        "2",
        "3",
        "2",
        "1",
        "3",
    ]


def test_the_mlflow_ui_shows_the_decision_on_the_evaluation_run_and_the_lineage_on_the_version(registry):
    """What promote publishes for a reviewer: the evaluation run's description (candidate, champion, real,
    intervals, the decision and its reasons) and the version's description (runs, commit, data md5s); and
    the experiment is a model-training one, so the UI opens on its runs."""
    from mlflow import MlflowClient

    from reelforge.registry.review import publish
    from reelforge.registry.tracking import KIND, KIND_TAG

    _pipeline_dir(registry / "t2v")
    with mlflow.start_run(tags={"git_commit": "abc123"}) as train:
        mlflow.log_params({"data.dvc.ingest.data/clips.md5": "0f0f.dir"})
        version = log_and_register(registry / "t2v", "t2v")
    with mlflow.start_run() as ev:
        pass
    ci = {"fvd_ref_floor_n": 60.0, "fvd_ref_floor_n_ci_low": 50.0, "fvd_ref_floor_n_ci_high": 80.0}
    report = {
        "model_name": "t2v", "eval_run_id": ev.info.run_id,
        "candidate": {"version": version, **ci, "clip_score_ref": 30.0, "pixel_color_acc": 0.5},
        "champion": {"version": "0", "fvd_ref_floor_n": 70.0, "clip_score_ref": 31.0, "pixel_color_acc": 0.4},
        "real": {"clip_score_ref": 60.0, "pixel_color_acc": 1.0},
        "floor": {"fvd_ref": 40.0, "fvd_ref_ci_low": 35.0, "fvd_ref_ci_high": 55.0},
        "protocol": {"prompts": 12, "samples_per_prompt": 2, "n_generated": 24, "n_real": 36,
                     "extractor": "reelforge-ref-x", "bootstrap_resamples": 200, "floor": "half A vs half B"},
    }  # fmt: skip
    decision = {
        "promoted": False,
        "failures": ["pixel color 0.5 < 0.8"],
        "evidence": ["fvd_ref at n=18: ..."],
    }
    publish(report, decision)
    client = MlflowClient()
    note = client.get_run(ev.info.run_id).data.tags["mlflow.note.content"]
    assert "**Not promoted**" in note and "- ✗ pixel color 0.5 < 0.8" in note
    assert (
        "| fvd_ref at the floor's n, the gated distance | lower | 60 [50, 80] | 70 | floor 40 [35, 55] |"
        in note
    )
    assert "| pixel check: colour | higher | 0.5 | 0.4 | 1 |" in note
    described = client.get_model_version("t2v", version).description
    assert f"runs/{train.info.run_id}" in described and f"runs/{ev.info.run_id}" in described
    assert "`abc123`" in described and "`ingest.data/clips.md5`: `0f0f.dir`" in described
    assert client.get_experiment_by_name("reelforge").tags[KIND_TAG] == KIND
