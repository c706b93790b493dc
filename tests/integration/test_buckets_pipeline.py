"""Two buckets in one run: landscape and portrait demo videos are ingested into a square and a portrait
bucket, captioned, trained on together (each batch of one bucket), evaluated bucket by bucket, and the
registered model generates at either size and refuses any other."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pytest

from reelforge.caption import stage as caption
from reelforge.config import (
    Bucket,
    CaptionConfig,
    CaptionParams,
    ClipParams,
    EvaluateConfig,
    IngestConfig,
    IngestParams,
    TrainConfig,
)
from reelforge.data import ingest
from reelforge.data.demo import make_demo_data
from reelforge.data.store import read_manifest
from reelforge.evaluate import stage as evaluate
from reelforge.registry.models import load_pipeline
from reelforge.registry.tracking import setup
from reelforge.train import stage as train

pytestmark = pytest.mark.slow
CLIP = ClipParams(
    buckets=[Bucket(width=32, height=32, num_frames=16), Bucket(width=32, height=48, num_frames=16)]
)


def test_two_buckets_train_evaluate_and_generate_together(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    raw, clips = tmp_path / "raw", tmp_path / "clips"
    truth = make_demo_data(raw, videos=12, seed=7, sizes=[(128, 96), (96, 128)])  # landscape, portrait
    ingest.run(
        IngestConfig(clip=CLIP, ingest=IngestParams(val_fraction=0.25)), raw, clips, tmp_path / "ingest.json"
    )
    manifest = read_manifest(clips)
    sizes = {v["file"]: (v["width"], v["height"]) for v in truth["videos"] if "width" in v}
    for row in manifest.itertuples():  # a 4:3 video goes to the square bucket, a 3:4 one to the portrait
        assert row.bucket == ("32x32x16" if sizes[row.source_path] == (128, 96) else "32x48x16")
    val = manifest[manifest.split == "val"].bucket.value_counts()
    assert len(val) == 2 and val.min() >= 2, val  # both buckets are scored (this seed's split)

    caption.run(
        CaptionConfig(caption=CaptionParams(steps=5)), clips, tmp_path / "captions", tmp_path / "c.json"
    )
    cfg = TrainConfig.model_validate({"clip": CLIP.model_dump(), "train": {"steps": 4, "batch_size": 4}})
    result = train.run(
        cfg, clips, tmp_path / "captions", tmp_path / "t2v", tmp_path / "reg.json", tmp_path / "ckpt"
    )
    reg = result.registration
    run = mlflow.get_run(reg.run_id)
    assert json.loads(run.data.params["model.space_shapes"].replace("'", '"')) in (
        [[16, 3, 32, 32], [16, 3, 48, 32]],
        [[16, 3, 48, 32], [16, 3, 32, 32]],
    )

    setup(cfg.registry)
    pipeline = load_pipeline(reg.model_name, reg.version)
    common = manifest[manifest.split == "train"].bucket.value_counts().index[0]
    default = (32, 32) if common == "32x32x16" else (32, 48)
    assert pipeline.sizes[0] == default and set(pipeline.sizes) == {(32, 32), (32, 48)}
    tall = pipeline.generate(["a red circle moves up"], [0], steps=2, width=32, height=48)
    assert tall.shape == (1, 16, 48, 32, 3)
    with pytest.raises(
        ValueError, match=r"48x32x16 is not a shape this model was trained at; use one of 32x"
    ):
        pipeline.generate(["a red circle moves up"], [0], steps=2, width=48, height=32)
    with pytest.raises(ValueError, match=r"32x48x8 is not a shape this model was trained at"):
        pipeline.generate(["a red circle moves up"], [0], steps=2, width=32, height=48, num_frames=8)

    prompts = tmp_path / "prompts.txt"
    prompts.write_text(
        "a red circle moves left over a black background\na blue square moves up over a gray background\n"
    )
    ev = EvaluateConfig.model_validate({"evaluate": {"bootstrap": 10, "i3d_path": None}})
    evaluate.run(
        ev,
        tmp_path / "reg.json",
        clips,
        tmp_path / "captions",
        prompts,
        raw / "ground_truth.json",
        tmp_path / "m.json",
    )
    report = json.loads((tmp_path / "m.json").read_text())
    head, other = val.index[0], val.index[1]
    assert report["protocol"]["bucket"].startswith(head)
    assert set(report["buckets"]) == {other} and report["buckets"][other]["n_real"] == val[other]
    scored = report["buckets"][other]["candidate"]
    assert np.isfinite(scored["fvd_ref"]) and np.isfinite(scored["clip_score_ref"])
    # 3 seeds per prompt for the headline bucket; one each here, all its floor's n (1) can use
    assert report["protocol"]["n_generated"] == 6 and scored["n_generated"] == 2
    assert np.isfinite(report["candidate"]["fvd_ref"]) and "pixel_background_acc" in report["candidate"]
    assert report["buckets"][other]["floor"] == {}  # 2 clips: halves of 1 have no covariance, so no floor
    assert "fvd_ref_floor_n" not in scored and "fvd_ref_floor_n" in report["candidate"]
