"""Train stage: Lightning training of the text-to-video model, logged to MLflow and registered as a version.

Runs in its own process (its DVC stage's command), so Lightning's DDP launcher re-executes only this
command per rank. Only global rank 0 writes the model directory, logs to MLflow and registers.

Resume: `checkpoint_dir` (outside DVC's outs) holds `last.ckpt` and `run.json` (the run's identity key and
MLflow run id). A rerun with the same key continues from `last.ckpt`: weights, optimizer, LR schedule, EMA,
step counter and, through the step-indexed data stream, the data position; it logs into the same MLflow run.
A changed key (params or data) starts fresh.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import mlflow
import numpy as np
import torch
from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.strategies import DDPStrategy, FSDPStrategy
from torch.utils.data import DataLoader, TensorDataset

from reelforge.autoencoder import Autoencoder
from reelforge.caption import CAPTIONS, read_captions
from reelforge.clips import MANIFEST, atomic_dir, load_clips, read_manifest, write_json_atomic
from reelforge.config import Params, TrainConfig
from reelforge.diffusion import RectifiedFlow
from reelforge.generate import GENERATION_CONFIG, VAE_DIR, VideoGenerator
from reelforge.hashing import dir_sha256, file_sha256
from reelforge.model import ModelConfig, TextToVideoModel, load_backbone
from reelforge.text import PretrainedTextEncoder, PromptTokenizer, train_tokenizer
from reelforge.tracking import TextToVideoPyfunc, dvc_lineage, git_commit, setup
from reelforge.train_module import BatchStream, TextToVideoModule
from reelforge.train_monitor import ResumableCheckpoint, SampleGifs, StepMonitor, backbone_flops

LAST_CKPT, RUN_FILE = "last.ckpt", "run.json"
# Keys that change how a run is launched or reported, not what it computes: a resume may change them.
LAUNCH_KEYS = {
    "accelerator", "devices", "num_nodes", "strategy", "compile", "gradient_checkpointing",
    "accumulate_grad_batches", "log_every_n_steps", "val_every_n_steps", "checkpoint_every_n_steps",
    "sample_every_n_steps", "sample_prompts", "registered_model_name",
}  # fmt: skip


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    model_name: str
    version: str
    final_loss: float
    final_step: int
    resumed_from_step: int


@dataclass
class TrainData:
    train_x: torch.Tensor  # (N, T, C, H, W) in the training space
    train_ids: torch.Tensor  # (N, L)
    val_x: torch.Tensor
    val_ids: torch.Tensor
    tokenizer: PromptTokenizer
    identity: dict[str, str]  # what the data is, for the run key and MLflow params


def _frames_to_tensor(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frames).permute(0, 1, 4, 2, 3).float() / 127.5 - 1  # (N, T, C, H, W) in [-1, 1]


def _encode(autoencoder: Autoencoder, frames: np.ndarray, cache: Path | None, name: str) -> torch.Tensor:
    """Clips -> training space. Latents are cached under `cache` by `name` (autoencoder weights and clips)."""
    if autoencoder.vae is None:
        return _frames_to_tensor(frames)
    path = cache / f"latents-{name}.pt" if cache else None
    if path and path.exists():
        return torch.load(path, weights_only=True)
    z = torch.cat(
        [autoencoder.encode(_frames_to_tensor(frames[i : i + 8])) for i in range(0, len(frames), 8)]
    )
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".partial{os.getpid()}")
        torch.save(z, tmp)
        os.replace(tmp, path)  # concurrent ranks write the same bytes; the last rename wins
    return z


def load_data(
    params: Params, clips_dir: Path, captions_dir: Path, autoencoder: Autoencoder, cache: Path | None
) -> TrainData:
    cfg = params.train
    manifest = read_manifest(clips_dir)
    captions = read_captions(captions_dir).set_index("clip_id").caption
    splits = {s: manifest[manifest.split == s] for s in ("train", "val")}
    if splits["train"].empty:
        raise ValueError(f"{clips_dir}/{MANIFEST} has no training clips")
    clips = load_clips(clips_dir, list(manifest.clip_id))
    texts = {s: [captions[c] for c in df.clip_id] for s, df in splits.items()}
    if cfg.text_encoder_path:
        tokenizer = PretrainedTextEncoder.tokenizer(cfg.text_encoder_path, cfg.max_text_tokens)
    else:
        tokenizer = PromptTokenizer(train_tokenizer(texts["train"]), cfg.max_text_tokens)
    identity = {
        "data.manifest_sha256": file_sha256(clips_dir / MANIFEST),
        "data.captions_sha256": file_sha256(captions_dir / CAPTIONS),
        "model.text_encoder": cfg.text_encoder_path or "trained here (word-level tokenizer on the captions)",
        "model.vae": cfg.vae_path or "none (pixel space)",
    }
    if cfg.vae_path:
        identity["model.vae_sha256"] = dir_sha256(cfg.vae_path)
    key = hashlib.sha256(json.dumps([identity, params.clip.model_dump()]).encode()).hexdigest()
    x = {}
    for s, df in splits.items():
        frames = np.stack([clips[c] for c in df.clip_id]) if len(df) else None
        x[s] = _encode(autoencoder, frames, cache, f"{key[:24]}-{s}") if frames is not None else None
    return TrainData(
        x["train"],
        tokenizer(texts["train"]),
        x["val"],
        tokenizer(texts["val"]) if texts["val"] else None,
        tokenizer,
        identity,
    )


def build_model(cfg: TrainConfig, data: TrainData) -> TextToVideoModel:
    _, t, c, h, w = data.train_x.shape
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


def _strategy(cfg: TrainConfig):
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


def run_key(params: Params, data: TrainData) -> str:
    """Identity of what a run computes: a checkpoint is resumed only by a run with the same key."""
    train = {k: v for k, v in params.train.model_dump().items() if k not in LAUNCH_KEYS}
    blob = [train, params.clip.model_dump(), params.scheduler.model_dump(), data.identity]
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()


def _resume_point(ckpt_dir: Path, key: str) -> tuple[Path | None, int, str | None]:
    """(checkpoint to resume, its step, its MLflow run id), or (None, 0, None) for a fresh start."""
    state_file, last = ckpt_dir / RUN_FILE, ckpt_dir / LAST_CKPT
    if not state_file.exists():
        return None, 0, None
    state = json.loads(state_file.read_text())
    if state.get("key") != key or not last.exists():
        return None, 0, None
    step = torch.load(last, map_location="cpu", mmap=True, weights_only=False)["global_step"]
    return last, int(step), state["mlflow_run_id"]


def _start_fresh(ckpt_dir: Path, key: str, run_id: str) -> None:
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


def _weights_sha(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode() + t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def run(
    params: Params,
    clips_dir: str | Path,
    captions_dir: str | Path,
    model_dir: str | Path,
    registration_path: str | Path,
    checkpoint_dir: str | Path,
    latent_cache: str | Path | None = None,
) -> TrainResult | None:
    cfg, clip = params.train, params.clip
    clips_dir, captions_dir, ckpt_dir = Path(clips_dir), Path(captions_dir), Path(checkpoint_dir)
    if cfg.accelerator == "cpu" and cfg.devices > 1:  # ranks share the cores instead of oversubscribing them
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // cfg.devices))
    L.seed_everything(cfg.seed, workers=True)  # model init is identical on every rank

    # 1. Data in the training space (latents from the cache when there is an autoencoder), and the model.
    autoencoder = Autoencoder(cfg.vae_path)
    data = load_data(
        params, clips_dir, captions_dir, autoencoder, Path(latent_cache) if latent_cache else None
    )
    model = build_model(cfg, data)
    flow = RectifiedFlow(params.scheduler)
    module = TextToVideoModule(model, flow, cfg, data.tokenizer([""])[0])
    generator = VideoGenerator(
        model, data.tokenizer, autoencoder, params.scheduler, clip.fps, clip.num_frames,
        params.sample.steps, params.sample.guidance,
    )  # fmt: skip

    # 2. Resume point, MLflow run, trainer.
    key = run_key(params, data)
    ckpt_path, start_step, run_id = _resume_point(ckpt_dir, key)
    uri = setup(params.mlflow)
    logger = MLFlowLogger(
        experiment_name=params.mlflow.experiment,
        tracking_uri=uri,
        run_name="train",
        run_id=run_id,
        tags={"stage": "train", "git_commit": git_commit()},
    )
    trainer = _trainer(
        cfg, logger, _callbacks(params, model, data, generator, ckpt_dir), data.val_x is not None
    )
    stream = BatchStream(
        data.train_x, data.train_ids, cfg.micro_batch, cfg.seed, trainer.global_rank, trainer.world_size,
        start=start_step * cfg.accumulate_grad_batches,
    )  # fmt: skip
    train_loader = DataLoader(stream, batch_size=None)
    val_loader = None
    if data.val_x is not None:
        val_loader = DataLoader(TensorDataset(data.val_x, data.val_ids), batch_size=cfg.micro_batch)
    if trainer.is_global_zero:
        if ckpt_path is None:
            _start_fresh(ckpt_dir, key, logger.run_id)
            logger.log_hyperparams(_hyperparams(params, model, data))
        else:
            print(f"resuming from step {start_step} ({ckpt_path}), MLflow run {run_id}", flush=True)

    # 3. Fit. Every rank reports its step and weights: DDP replicas must agree bit for bit.
    t0 = time.perf_counter()
    trainer.fit(module, train_loader, val_loader, ckpt_path=ckpt_path)
    train_seconds = time.perf_counter() - t0
    rank = f"rank {trainer.global_rank}/{trainer.world_size}"
    print(f"{rank}: step {trainer.global_step}, weights {_weights_sha(model)[:16]}", flush=True)
    if not trainer.is_global_zero:
        return None
    return _register(
        params, module, generator, trainer, start_step, train_seconds, model_dir, registration_path
    )


def _callbacks(params: Params, model, data: TrainData, generator: VideoGenerator, ckpt_dir: Path) -> list:
    cfg = params.train
    _, t, _, h, w = data.train_x.shape  # (N, T, C, H, W)
    patch = model.backbone.config.patch_size
    flops = backbone_flops(model.backbone, (cfg.micro_batch, *data.train_x.shape[1:]), cfg.max_text_tokens)
    tokens_per_sample = t * (h // patch) * (w // patch)  # video tokens the transformer attends over
    return [
        StepMonitor(flops // cfg.micro_batch, tokens_per_sample, print_every=max(cfg.log_every_n_steps, 10)),
        ResumableCheckpoint(ckpt_dir, cfg.checkpoint_every_n_steps),
        SampleGifs(
            cfg.sample_every_n_steps,
            cfg.sample_prompts,
            lambda _, prompts: generator.generate(prompts, seeds=list(range(len(prompts)))),
            params.clip.fps,
        ),
    ]


def _trainer(cfg: TrainConfig, logger: MLFlowLogger, callbacks: list, has_val: bool) -> L.Trainer:
    return L.Trainer(
        max_steps=cfg.steps,
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        num_nodes=cfg.num_nodes,
        strategy=_strategy(cfg),
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


def _hyperparams(params: Params, model: TextToVideoModel, data: TrainData) -> dict:
    sections = {
        "train": params.train,
        "clip": params.clip,
        "scheduler": params.scheduler,
        "sample": params.sample,
    }
    out = {f"{name}.{k}": v for name, sec in sections.items() for k, v in sec.model_dump().items()}
    return {
        **out,
        **data.identity,
        **dvc_lineage(),
        "model.parameters": sum(p.numel() for p in model.parameters()),
        "model.trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "model.space_shape": list(data.train_x.shape[1:]),
        "data.train_clips": len(data.train_x),
        "data.val_clips": 0 if data.val_x is None else len(data.val_x),
    }


def _register(
    params: Params,
    module: TextToVideoModule,
    generator: VideoGenerator,
    trainer: L.Trainer,
    start_step: int,
    train_seconds: float,
    model_dir: str | Path,
    registration_path: str | Path,
) -> TrainResult:
    """Rank 0: save the EMA weights with everything needed to generate, log them to MLflow, register."""
    cfg, clip, logger = params.train, params.clip, trainer.logger
    final_loss = float(trainer.callback_metrics["loss"])
    with atomic_dir(model_dir) as out, module.ema_weights():
        module.model.save_pretrained(out)
        generator.tokenizer.save(out)
        if generator.autoencoder.vae is not None:
            generator.autoencoder.vae.save_pretrained(out / VAE_DIR)
        generation = {
            "scheduler": params.scheduler.model_dump(),
            "fps": clip.fps,
            "num_frames": clip.num_frames,
            "steps": params.sample.steps,
            "guidance": params.sample.guidance,
            "weights": "ema" if module.ema is not None else "final",
        }
        (out / GENERATION_CONFIG).write_text(json.dumps(generation, indent=2))
    with mlflow.start_run(run_id=logger.run_id):
        mlflow.log_metrics(
            {"final_loss": final_loss, "train_seconds": train_seconds, "resumed_from_step": start_step}
        )
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=TextToVideoPyfunc(),
            artifacts={"generator": str(Path(model_dir).resolve())},
            registered_model_name=cfg.registered_model_name,
            pip_requirements=["reelforge"],
        )
    result = TrainResult(
        logger.run_id, cfg.registered_model_name, str(info.registered_model_version), final_loss,
        trainer.global_step, start_step,
    )  # fmt: skip
    write_json_atomic(
        registration_path,
        {
            "run_id": result.run_id,
            "model_name": result.model_name,
            "version": result.version,
            "final_loss": final_loss,
            "final_step": result.final_step,
            "resumed_from_step": start_step,
            "train_seconds": round(train_seconds, 1),
            "tracking_uri": mlflow.get_tracking_uri(),
        },
    )
    return result
