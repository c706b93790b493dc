"""What evaluation leaves in MLflow besides metrics: sample grids, and the scores on the model version."""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow
import numpy as np
from mlflow import MlflowClient

from reelforge.data.video import encode_gif, encode_mp4


def sample_grid(videos: np.ndarray, per_prompt: int, rows: int) -> np.ndarray:
    """(P*S, T, H, W, 3) -> (T, rows*H, S*W, 3): one row per prompt, one column per seed."""
    n, t, h, w, c = videos.shape
    grid = videos[: rows * per_prompt].reshape(rows, per_prompt, t, h, w, c)
    return grid.transpose(2, 0, 3, 1, 4, 5).reshape(t, rows * h, per_prompt * w, c)


def log_samples(videos: np.ndarray, name: str, per_prompt: int, rows: int, fps: float) -> None:
    """Into the active run's `samples/`: the grid as GIF (the MLflow UI shows it inline) and MP4."""
    if rows:
        _log_grid(sample_grid(videos, per_prompt, rows), name, fps)


def log_side_by_side(
    left: np.ndarray, right: np.ndarray, name: str, per_prompt: int, rows: int, fps: float
) -> None:
    """Two versions' grids of the same prompts and seeds, left | right, a white column between them. Videos
    of different shapes (frames, size) are not put side by side: each has its own grid."""
    if not rows or left.shape != right.shape:
        return
    a, b = sample_grid(left, per_prompt, rows), sample_grid(right, per_prompt, rows)
    gap = np.full((*a.shape[:2], 2, 3), 255, dtype=a.dtype)
    _log_grid(np.concatenate([a, gap, b], axis=2), name, fps)


def _log_grid(grid: np.ndarray, name: str, fps: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        gif, mp4 = Path(tmp) / f"{name}.gif", Path(tmp) / f"{name}.mp4"
        gif.write_bytes(encode_gif(grid, fps, scale=4))
        big = grid.repeat(4, axis=1).repeat(4, axis=2)  # nearest-neighbour x4 so players show it
        mp4.write_bytes(encode_mp4(big, fps))
        mlflow.log_artifact(str(gif), "samples")
        mlflow.log_artifact(str(mp4), "samples")


def record_on_version(
    name: str, version: str, scores: dict[str, float], eval_run_id: str, train_run_id: str, extractor: str
) -> None:
    """Metrics as tags on the model version (what serving reports) and on its training run."""
    client = MlflowClient()
    for k, v in scores.items():
        client.set_model_version_tag(name, version, f"metric.{k}", f"{v:.6g}")
        client.log_metric(train_run_id, k, v)
    client.set_model_version_tag(name, version, "eval_run_id", eval_run_id)
    client.set_model_version_tag(name, version, "metric_extractor", extractor)
