"""Train stage: Lightning training of the text-to-video model, logged to MLflow and registered as a version.

Runs in its own process (its DVC stage's command), so Lightning's DDP launcher re-executes only this
command per rank. Only global rank 0 writes the model directory, logs to MLflow and registers. A killed
run resumes from its last checkpoint (`reelforge.train.resume`).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import mlflow
import torch
from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.strategies import FSDPStrategy
from torch.utils.data import DataLoader

from reelforge.config import TrainConfig, TrainParams
from reelforge.files import atomic_dir
from reelforge.model.autoencoder import Autoencoder
from reelforge.model.backbone import TextToVideoModel
from reelforge.model.fit import fit_problems
from reelforge.registry.lineage import dvc_lineage, git_commit
from reelforge.registry.models import Registration, log_and_register
from reelforge.registry.tracking import run_tags, setup
from reelforge.train.data import TrainData, load_data
from reelforge.train.module import Batches, BatchStream, TextToVideoModule, bucket_batches
from reelforge.train.resume import ResumePoint, resume_point, run_key, start_fresh, weights_sha
from reelforge.train.trainer import build_model, build_pipeline, callbacks, make_trainer


@dataclass(frozen=True)
class TrainResult:
    """What rank 0 registered; other ranks return `registration=None`."""

    registration: Registration | None
    final_step: int
    resumed_from_step: int


def run(
    cfg: TrainConfig,
    clips_dir: str | Path,
    captions_dir: str | Path,
    model_dir: str | Path,
    registration_path: str | Path,
    checkpoint_dir: str | Path,
    latent_cache: str | Path | None = None,
) -> TrainResult:
    """Train on the clips and captions, resuming from `checkpoint_dir`; rank 0 saves the pipeline to
    `model_dir`, registers it and writes `registration_path`. In latent space the latent cache is
    `latent_cache` (default: `checkpoint_dir`/latents)."""
    train, ckpt_dir = cfg.train, Path(checkpoint_dir)
    if problems := fit_problems(cfg):  # before any data is read
        raise ValueError("; ".join(problems))
    if train.accelerator == "cpu" and train.devices > 1:  # ranks share the cores instead of oversubscribing
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // train.devices))
    L.seed_everything(train.seed, workers=True)  # model init is identical on every rank

    # 1. Data in the training space (latents from the cache when there is an autoencoder), and the model.
    autoencoder = Autoencoder(train.vae_path)
    cache = Path(latent_cache) if latent_cache else ckpt_dir / "latents"
    data = load_data(
        train, cfg.clip, cfg.read, Path(clips_dir), Path(captions_dir), autoencoder, cache, cfg.latents
    )
    model = build_model(train, data)
    pipeline = build_pipeline(cfg, model, data, autoencoder)
    module = TextToVideoModule(model, pipeline.flow, train, data.tokenizer([""])[0])

    # 2. Resume point, MLflow run, trainer, data stream from the resumed step.
    key = run_key(cfg, data.identity)
    resume = resume_point(ckpt_dir, key)
    logger = MLFlowLogger(
        experiment_name=cfg.registry.experiment,
        tracking_uri=setup(cfg.registry),
        run_name="train",
        run_id=resume.mlflow_run_id,
        tags=run_tags("train") | {"git_commit": git_commit()},
    )
    trainer = make_trainer(train, logger, callbacks(cfg, pipeline, data, ckpt_dir), data.val_x is not None)
    train_loader, val_loader = _loaders(train, cfg.read.loader_workers, data, trainer, resume)
    if trainer.is_global_zero:
        _open_run(cfg, ckpt_dir, key, resume, logger, model, data)

    # 3. Fit. Every rank reports its step and weights: DDP replicas must agree bit for bit.
    t0 = time.perf_counter()
    trainer.fit(module, train_loader, val_loader, ckpt_path=resume.checkpoint)
    seconds = time.perf_counter() - t0
    print(f"rank {trainer.global_rank}/{trainer.world_size}: step {trainer.global_step}, "
          f"weights {weights_sha(model)[:16]}", flush=True)  # fmt: skip

    # 4. Rank 0: save the EMA weights (under FSDP, the full weights every rank gathers) with everything
    # needed to generate, log, register.
    if (plain := _unsharded(trainer, train, data)) is not None:
        pipeline.model = plain
    registration = None
    if trainer.is_global_zero:
        with atomic_dir(model_dir) as out, module.ema_weights():
            pipeline.save_pretrained(out)
        registration = _register(cfg, trainer, model_dir, resume.step, seconds)
        registration.save(registration_path)
    return TrainResult(registration, trainer.global_step, resume.step)


def _unsharded(trainer: L.Trainer, train: TrainParams, data: TrainData) -> TextToVideoModel | None:
    """Under FSDP, a plain copy of the trained network on rank 0, loaded from the full weights that every rank
    joins in gathering (sharded modules cannot be saved by one rank); None on other ranks and without FSDP."""
    if not isinstance(trainer.strategy, FSDPStrategy):
        return None
    state = trainer.strategy.lightning_module_state_dict()  # collective; the full weights land on rank 0
    if not trainer.is_global_zero:
        return None
    model = build_model(train, data)
    model.load_state_dict({k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")})
    return model


def _loaders(
    train: TrainParams, workers: int, data: TrainData, trainer: L.Trainer, resume: ResumePoint
) -> tuple[DataLoader, DataLoader | None]:
    """The endless step-indexed training stream of this rank, from the resumed step; validation batches.
    Both decode in `read.loader_workers` worker processes (none: in this process)."""
    stream = BatchStream(
        data.train_x, data.train_ids, train.micro_batch, train.seed, trainer.global_rank,
        trainer.world_size, start=resume.step * train.accumulate_grad_batches,
    )  # fmt: skip
    workers = {
        "num_workers": workers,
        "persistent_workers": workers > 0,
        "pin_memory": train.accelerator != "cpu" and torch.cuda.is_available(),
    }
    val = None
    if data.val_x is not None:
        batches = bucket_batches(data.val_x.buckets, train.micro_batch)
        val = DataLoader(Batches(data.val_x, data.val_ids), batch_size=None, sampler=batches, **workers)
    return DataLoader(stream, batch_size=None, **workers), val


def _open_run(
    cfg: TrainConfig, ckpt_dir: Path, key: str, resume: ResumePoint, logger: MLFlowLogger,
    model: torch.nn.Module, data: TrainData,
) -> None:  # fmt: skip
    """Rank 0: a fresh run records its identity and params; a resumed one says where it continues."""
    if resume.checkpoint is None:
        start_fresh(ckpt_dir, key, logger.run_id)
        logger.log_hyperparams(_hyperparams(cfg, model, data))
    else:
        print(
            f"resuming from step {resume.step} ({resume.checkpoint}), run {resume.mlflow_run_id}", flush=True
        )


def _hyperparams(cfg: TrainConfig, model: torch.nn.Module, data: TrainData) -> dict:
    sections = {name: getattr(cfg, name) for name in ("train", "clip", "scheduler", "sample")}
    out = {f"{name}.{k}": v for name, sec in sections.items() for k, v in sec.model_dump().items()}
    return {
        **out,
        "registry.model_name": cfg.registry.model_name,
        **data.identity,
        **dvc_lineage(),
        "model.parameters": sum(p.numel() for p in model.parameters()),
        "model.trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "model.space_shapes": [list(shape) for shape in data.train_x.shapes],
        "data.train_clips": len(data.train_x),
        "data.val_clips": 0 if data.val_x is None else len(data.val_x),
    }


def _register(
    cfg: TrainConfig, trainer: L.Trainer, model_dir: str | Path, start_step: int, seconds: float
) -> Registration:
    run_id = trainer.logger.run_id
    if "loss" in trainer.callback_metrics:
        final_loss = float(trainer.callback_metrics["loss"])
    else:  # no step ran here: the checkpoint was at train.steps already (a rerun after a code change)
        final_loss = mlflow.get_run(run_id).data.metrics["loss"]
    with mlflow.start_run(run_id=run_id):
        mlflow.log_metrics(
            {"final_loss": final_loss, "train_seconds": seconds, "resumed_from_step": start_step}
        )
        version = log_and_register(model_dir, cfg.registry.model_name)
    return Registration(
        run_id=trainer.logger.run_id,
        model_name=cfg.registry.model_name,
        version=version,
        final_loss=final_loss,
        final_step=trainer.global_step,
        resumed_from_step=start_step,
        train_seconds=round(seconds, 1),
        tracking_uri=mlflow.get_tracking_uri(),
    )
