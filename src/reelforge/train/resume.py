"""Resume identity: a killed run continues from its last checkpoint only when it computes the same thing.

`checkpoint_dir` (outside DVC's outs) holds `last.ckpt` and `run.json` (the run's identity key and MLflow
run id). A rerun with the same key continues from `last.ckpt`: weights, optimizer, LR schedule, EMA, step
counter and, through the step-indexed data stream, the data position; it logs into the same MLflow run.
A changed key (params or data) starts fresh.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import mlflow
import torch

from reelforge.config import TrainConfig
from reelforge.files import write_json_atomic

LAST_CKPT, RUN_FILE = "last.ckpt", "run.json"
# Keys that change how a run is launched or reported, not what it computes: a resume may change them.
LAUNCH_KEYS = {
    "accelerator", "devices", "num_nodes", "strategy", "compile", "gradient_checkpointing",
    "accumulate_grad_batches", "log_every_n_steps", "val_every_n_steps", "checkpoint_every_n_steps",
    "sample_every_n_steps", "sample_prompts",
}  # fmt: skip


@dataclass(frozen=True)
class ResumePoint:
    """Where a run starts: a checkpoint, its step and its MLflow run id, or a fresh start (None, 0, None)."""

    checkpoint: Path | None
    step: int
    mlflow_run_id: str | None


def run_key(cfg: TrainConfig, data_identity: dict[str, str]) -> str:
    """Identity of what a run computes: a checkpoint is resumed only by a run with the same key."""
    train = {k: v for k, v in cfg.train.model_dump().items() if k not in LAUNCH_KEYS}
    blob = [train, cfg.clip.model_dump(), cfg.scheduler.model_dump(), data_identity]
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()


def resume_point(ckpt_dir: Path, key: str) -> ResumePoint:
    state_file, last = ckpt_dir / RUN_FILE, ckpt_dir / LAST_CKPT
    if not state_file.exists():
        return ResumePoint(None, 0, None)
    state = json.loads(state_file.read_text())
    if state.get("key") != key or not last.exists():
        return ResumePoint(None, 0, None)
    step = torch.load(last, map_location="cpu", mmap=True, weights_only=False)["global_step"]
    return ResumePoint(last, int(step), state["mlflow_run_id"])


def start_fresh(ckpt_dir: Path, key: str, run_id: str) -> None:
    """Rank 0: drop checkpoints of another run (their MLflow run, if left RUNNING by a crash, is FAILED)."""
    state_file = ckpt_dir / RUN_FILE
    if state_file.exists():
        old = json.loads(state_file.read_text()).get("mlflow_run_id")
        print(
            f"{ckpt_dir}: checkpoints of another run (params or data changed, or none saved): starting fresh"
        )
        try:
            if old and mlflow.MlflowClient().get_run(old).info.status == "RUNNING":
                mlflow.MlflowClient().set_terminated(old, "FAILED")
        except mlflow.exceptions.MlflowException:
            pass
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    ckpt_dir.mkdir(parents=True)
    write_json_atomic(state_file, {"key": key, "mlflow_run_id": run_id})


def weights_sha(model: torch.nn.Module) -> str:
    """sha256 of every tensor of a model: DDP replicas must agree bit for bit."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode() + t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
