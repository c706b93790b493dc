"""The Lightning side of training: the network built for the data, the launch strategy, the callbacks and
the Trainer. Everything here comes from the train config; nothing is decided twice."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.strategies import DDPStrategy, FSDPStrategy, Strategy

from reelforge.config import TrainConfig, TrainParams
from reelforge.model.autoencoder import Autoencoder
from reelforge.model.backbone import ModelConfig, TextToVideoModel, load_backbone
from reelforge.model.pipeline import TextToVideoPipeline
from reelforge.model.text import PretrainedTextEncoder
from reelforge.train.data import TrainData, most_common_shape
from reelforge.train.monitor import (
    ResumableCheckpoint,
    SampleGifs,
    StepMonitor,
    backbone_flops,
    enable_tf32,
)


def build_model(cfg: TrainParams, data: TrainData) -> TextToVideoModel:
    """The network for the data: its config's shape (the default it generates at) is the most common
    bucket's; it trains on every bucket's."""
    t, c, h, w = most_common_shape(data.train_x)
    text_encoder = PretrainedTextEncoder(cfg.text_encoder_path) if cfg.text_encoder_path else None
    model_cfg = ModelConfig(
        size=cfg.model_size,
        num_frames=t,
        height=h,
        width=w,
        channels=c,
        vocab_size=data.tokenizer.tok.get_vocab_size() if not data.tokenizer.pretrained else 0,
        max_text_tokens=cfg.max_text_tokens,
        pretrained_text_encoder=text_encoder is not None,
    )
    backbone = load_backbone(cfg.pretrained_path) if cfg.pretrained_path else None
    return TextToVideoModel(model_cfg, backbone, text_encoder)


def build_pipeline(
    cfg: TrainConfig, model: TextToVideoModel, data: TrainData, autoencoder: Autoencoder
) -> TextToVideoPipeline:
    """What the trained model generates with: by default the most common bucket's frames and size, and any
    size it trained at."""
    return TextToVideoPipeline(
        model, data.tokenizer, autoencoder, cfg.scheduler, cfg.clip.fps, data.pixel_shapes[0][0],
        cfg.sample.steps, cfg.sample.guidance, "ema" if cfg.train.ema_decay > 0 else "final",
        shapes=[(shape[3], shape[2], shape[0]) for shape in data.pixel_shapes],
    )  # fmt: skip


def strategy(cfg: TrainParams) -> Strategy | str:
    if cfg.strategy == "ddp":
        # EMA weights are buffers every rank updates identically: no need to broadcast them each forward.
        return DDPStrategy(
            broadcast_buffers=False, process_group_backend="gloo" if cfg.accelerator == "cpu" else None
        )
    if cfg.strategy == "fsdp":
        from diffusers.models.transformers.cogvideox_transformer_3d import CogVideoXBlock

        return FSDPStrategy(
            auto_wrap_policy={CogVideoXBlock},
            activation_checkpointing_policy={CogVideoXBlock} if cfg.gradient_checkpointing else None,
            state_dict_type="full",
        )
    return "auto"


def callbacks(
    cfg: TrainConfig, pipeline: TextToVideoPipeline, data: TrainData, ckpt_dir: Path
) -> list[L.Callback]:
    train, x = cfg.train, data.train_x
    model = pipeline.model
    patch = model.backbone.config.patch_size
    # Per sample, averaged over the buckets as often as each is drawn (in proportion to its clips).
    share = np.bincount(x.buckets, minlength=len(x.shapes)) / len(x)
    flops = sum(
        p * backbone_flops(model.backbone, (train.micro_batch, *shape), train.max_text_tokens)
        for p, shape in zip(share, x.shapes, strict=True)
    )
    tokens = sum(p * t * (h // patch) * (w // patch) for p, (t, _, h, w) in zip(share, x.shapes, strict=True))
    return [
        StepMonitor(
            int(flops) // train.micro_batch, round(tokens), print_every=max(train.log_every_n_steps, 10)
        ),
        ResumableCheckpoint(ckpt_dir, train.checkpoint_every_n_steps),
        SampleGifs(
            train.sample_every_n_steps,
            train.sample_prompts,
            lambda prompts: pipeline.generate(prompts, seeds=list(range(len(prompts)))),
            cfg.clip.fps,
        ),
    ]


def make_trainer(cfg: TrainParams, logger: MLFlowLogger, callbacks: list, has_val: bool) -> L.Trainer:
    if cfg.accelerator != "cpu" and cfg.precision == "32":
        enable_tf32()  # what the MFU peak for "32" assumes (reelforge.train.monitor.PEAK_TFLOPS)
    return L.Trainer(
        max_steps=cfg.steps,
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        num_nodes=cfg.num_nodes,
        strategy=strategy(cfg),
        precision=cfg.precision,
        gradient_clip_val=cfg.grad_clip,
        accumulate_grad_batches=cfg.accumulate_grad_batches,
        logger=logger,
        log_every_n_steps=cfg.log_every_n_steps,
        val_check_interval=cfg.val_every_n_steps * cfg.accumulate_grad_batches if has_val else None,
        check_val_every_n_epoch=None,
        limit_val_batches=1.0 if has_val else 0,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,  # BatchStream shards by rank itself
        enable_checkpointing=False,  # ResumableCheckpoint
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
    )
