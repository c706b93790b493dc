"""Shared fixtures: a small real demo corpus (H.264 files made with PyAV) and its ingested clip store."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from reelforge.config import ClipConfig, IngestConfig
from reelforge.demo_data import make_demo_data

REPO = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config, items):
    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs a CUDA device")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


def expected_clips(truth: dict, clip: ClipConfig, max_per_shot: int) -> dict[str, int]:
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


@pytest.fixture(scope="session")
def demo(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("demo")
    truth = make_demo_data(root / "raw", videos=10, seed=3)
    return root / "raw", truth


@pytest.fixture(scope="session")
def clip_cfg() -> ClipConfig:
    return ClipConfig()


@pytest.fixture(scope="session")
def ingested(demo, clip_cfg, tmp_path_factory) -> Path:
    from reelforge import ingest

    out = tmp_path_factory.mktemp("ingested")
    ingest.run(IngestConfig(workers=2), clip_cfg, demo[0], out / "clips", out / "ingest.json")
    return out / "clips"
