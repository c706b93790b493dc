"""Train stage: Lightning training of the text-to-video model, logged to MLflow and registered as a version.

Runs in its own process (its DVC stage's command), so Lightning's DDP launcher re-executes only this
command per rank. Only global rank 0 writes the model directory, logs the model and registers it.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import mlflow
import numpy as np
import torch
from lightning.pytorch.loggers import MLFlowLogger
from torch.utils.data import DataLoader, TensorDataset

from reelforge.caption import CAPTIONS, read_captions
from reelforge.clips import MANIFEST, atomic_dir, load_clips, read_manifest, write_json_atomic
from reelforge.config import Params
from reelforge.diffusion import RectifiedFlow
from reelforge.generate import GENERATION_CONFIG
from reelforge.hashing import file_sha256
from reelforge.model import ModelConfig, TextToVideoModel
from reelforge.text import PAD_ID, encode, train_tokenizer
from reelforge.tracking import TextToVideoPyfunc, git_commit, setup


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    model_name: str
    version: str
    final_loss: float


class TextToVideoModule(L.LightningModule):
    """Wires the network and the noise process; holds no model or schedule logic of its own."""

    def __init__(self, model_cfg: ModelConfig, params: Params):
        super().__init__()
        self.model = TextToVideoModel(model_cfg)
        self.flow = RectifiedFlow(params.scheduler)
        self.cfg = params.train
        self._t_last: float | None = None

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x0, ids = batch  # (B, T, C, H, W), (B, L)
        drop = (
            torch.rand(len(ids), device=ids.device) < self.cfg.caption_dropout
        )  # CFG: learn the null prompt
        ids = torch.where(drop[:, None], torch.full_like(ids, PAD_ID), ids)
        loss = self.flow.training_loss(self.model, x0, ids)
        now = time.perf_counter()
        if self._t_last is not None:
            self.log("samples_per_s", len(x0) * self.trainer.world_size / (now - self._t_last))
        self._t_last = now
        self.log("loss", loss, prog_bar=True)
        self.log("lr", self.optimizers().param_groups[0]["lr"])
        return loss

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.model.parameters(), lr=self.cfg.lr, weight_decay=0.01)
        warmup, total = self.cfg.warmup_steps, self.cfg.steps

        def lr_lambda(step: int) -> float:  # linear warm-up, then cosine decay to 10%
            if step < warmup:
                return (step + 1) / warmup
            progress = (step - warmup) / max(total - warmup, 1)
            return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class PrintProgress(L.Callback):
    """One plain line every N steps: readable through DVC and Prefect logs, where a redrawn bar is not."""

    def __init__(self, every: int):
        self.every, self.t0 = every, time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if trainer.is_global_zero and (step % self.every == 0 or step == trainer.max_steps):
            m = trainer.callback_metrics
            print(
                f"step {step}/{trainer.max_steps} loss {float(m.get('loss', float('nan'))):.4f} "
                f"samples/s {float(m.get('samples_per_s', float('nan'))):.1f} "
                f"elapsed {time.perf_counter() - self.t0:.0f}s",
                flush=True,
            )


def build_dataset(clips_dir: Path, captions_dir: Path, max_tokens: int):
    """Training split clips with their captions -> (TensorDataset, tokenizer)."""
    manifest = read_manifest(clips_dir)
    captions = read_captions(captions_dir).set_index("clip_id").caption
    train = manifest[manifest.split == "train"]
    if train.empty:
        raise ValueError(f"{clips_dir}/{MANIFEST} has no training clips")
    clips = load_clips(clips_dir, list(train.clip_id))
    texts = [captions[c] for c in train.clip_id]
    tok = train_tokenizer(texts)
    frames = np.stack([clips[c] for c in train.clip_id])  # (N, T, H, W, 3) uint8
    x0 = torch.from_numpy(frames).permute(0, 1, 4, 2, 3).float() / 127.5 - 1  # (N, T, C, H, W)
    return TensorDataset(x0, encode(tok, texts, max_tokens)), tok


def run(
    params: Params,
    clips_dir: str | Path,
    captions_dir: str | Path,
    model_dir: str | Path,
    registration_path: str | Path,
) -> TrainResult | None:
    cfg, clip = params.train, params.clip
    clips_dir, captions_dir = Path(clips_dir), Path(captions_dir)
    L.seed_everything(cfg.seed, workers=True)
    dataset, tok = build_dataset(clips_dir, captions_dir, max_tokens=cfg.max_text_tokens)
    model_cfg = ModelConfig(
        size=cfg.model_size,
        num_frames=clip.num_frames,
        height=clip.size,
        width=clip.size,
        channels=3,
        vocab_size=tok.get_vocab_size(),
        max_text_tokens=cfg.max_text_tokens,
    )
    module = TextToVideoModule(model_cfg, params)

    uri = setup(params.mlflow)
    logger = MLFlowLogger(
        experiment_name=params.mlflow.experiment,
        tracking_uri=uri,
        run_name="train",
        tags={"stage": "train", "git_commit": git_commit()},
    )
    trainer = L.Trainer(
        max_steps=cfg.steps,
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        precision=cfg.precision,
        gradient_clip_val=cfg.grad_clip,
        logger=logger,
        log_every_n_steps=cfg.log_every_n_steps,
        enable_checkpointing=False,
        enable_progress_bar=False,
        callbacks=[PrintProgress(cfg.log_every_n_steps * 5)],
        enable_model_summary=False,
        deterministic=False,
    )
    loader = DataLoader(
        dataset, batch_size=cfg.batch_size, shuffle=True, drop_last=len(dataset) >= cfg.batch_size
    )
    if trainer.is_global_zero:
        logger.log_hyperparams(
            {
                **{f"train.{k}": v for k, v in cfg.model_dump().items()},
                **{f"clip.{k}": v for k, v in clip.model_dump().items()},
                **{f"scheduler.{k}": v for k, v in params.scheduler.model_dump().items()},
                "model.parameters": sum(p.numel() for p in module.model.parameters()),
                "data.train_clips": len(dataset),
                "data.manifest_sha256": file_sha256(clips_dir / MANIFEST),
                "data.captions_sha256": file_sha256(captions_dir / CAPTIONS),
            }
        )
    t0 = time.perf_counter()
    trainer.fit(module, loader)
    train_seconds = time.perf_counter() - t0
    if not trainer.is_global_zero:
        return None

    final_loss = float(trainer.callback_metrics["loss"])
    with atomic_dir(model_dir) as out:
        module.model.save_pretrained(out)
        tok.save(str(out / "tokenizer.json"))
        (out / GENERATION_CONFIG).write_text(
            json.dumps(
                {
                    "scheduler": params.scheduler.model_dump(),
                    "fps": clip.fps,
                    "steps": params.sample.steps,
                    "guidance": params.sample.guidance,
                },
                indent=2,
            )
        )
    with mlflow.start_run(run_id=logger.run_id):
        mlflow.log_metrics({"final_loss": final_loss, "train_seconds": train_seconds})
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=TextToVideoPyfunc(),
            artifacts={"generator": str(Path(model_dir).resolve())},
            registered_model_name=cfg.registered_model_name,
            pip_requirements=["reelforge"],
        )
    result = TrainResult(
        logger.run_id, cfg.registered_model_name, str(info.registered_model_version), final_loss
    )
    write_json_atomic(
        registration_path,
        {
            "run_id": result.run_id,
            "model_name": result.model_name,
            "version": result.version,
            "final_loss": final_loss,
            "train_seconds": round(train_seconds, 1),
            "tracking_uri": uri,
        },
    )
    return result
