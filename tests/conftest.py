"""Shared fixtures: a small real demo corpus (H.264 files made with PyAV) and its ingested clip store."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from reelforge.config import ClipParams, IngestConfig, IngestParams
from reelforge.data.demo import make_demo_data

REPO = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config, items):
    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs a CUDA device")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


def expected_clips(truth: dict, clip: ClipParams, max_per_shot: int) -> dict[str, int]:
    """Clips per source file implied by the ground-truth shot spans (the rule ingest documents)."""
    out = {}
    for v in truth["videos"]:
        n = sum(
            min(max_per_shot, math.floor((s["end_s"] - s["start_s"]) / clip.duration_s + 1e-6))
            for s in v["shots"]
        )
        if n:
            out[v["file"]] = n
    return out


def default_params(folder: Path) -> Path:
    """An empty params file in `folder`: every value is the code default (equal to the project's params.yaml,
    which tests/project/test_params_yaml.py checks), so tests do not depend on the live file."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "params.yaml").write_text("{}\n")
    return folder / "params.yaml"


@pytest.fixture(scope="session")
def demo(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("demo")
    truth = make_demo_data(root / "raw", videos=10, seed=3)
    return root / "raw", truth


@pytest.fixture(scope="session")
def clip_cfg() -> ClipParams:
    return ClipParams()


@pytest.fixture(scope="session")
def ingested(demo, clip_cfg, tmp_path_factory) -> Path:
    from reelforge.data import ingest

    out = tmp_path_factory.mktemp("ingested")
    ingest.run(
        IngestConfig(clip=clip_cfg, ingest=IngestParams(workers=2, val_fraction=0.25)),  # 3 of 10 videos
        demo[0],
        out / "clips",
        out / "ingest.json",
    )
    return out / "clips"
