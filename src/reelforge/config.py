"""Typed, validated `params.yaml`: one section per concern, one config per stage, checked once at start-up.

A section (`TrainParams`, ...) is one top-level key of params.yaml. A stage's config (`TrainConfig`, ...)
holds exactly the sections that stage reads, which are exactly the `params:` its dvc.yaml entry declares
(tests/test_dvc_yaml.py checks this). Unknown keys and bad values fail with a message naming the key and the
fix; `--set section.key=value` overrides are applied before validation, so they are checked the same way.

Every default here equals params.yaml (tests/test_params_yaml.py checks that too): one home per tunable.
This module imports only the model-size table, a leaf: reading pretrained config.json files is the train
stage's job (`reelforge.model.fit`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from reelforge.model.sizes import MODEL_SIZES


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Bucket(Section):
    """One shape clips are stored and trained at: width x height pixels, num_frames frames."""

    width: int = Field(ge=8)
    height: int = Field(ge=8)
    num_frames: int = Field(ge=2)

    @property
    def name(self) -> str:
        return f"{self.width}x{self.height}x{self.num_frames}"

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height


class ClipParams(Section):
    """The normalised clips all stages after ingest see: one frame rate, a table of shapes (buckets)."""

    fps: float = Field(8.0, gt=0, description="Frame rate clips are resampled to.")
    buckets: list[Bucket] = Field(
        default_factory=lambda: [
            Bucket(width=32, height=32, num_frames=16),
            Bucket(width=24, height=32, num_frames=16),
        ],
        min_length=1,
        description="Clip shapes. Each source goes to the size (width x height) nearest its aspect ratio "
        "that it covers, scaled and centre-cropped to it; a shot is cut into clips of that size's longest "
        "frame count, and its remainder into the longest shorter count it fills (reelforge.data.buckets).",
    )

    @model_validator(mode="after")
    def _unique(self) -> ClipParams:
        names = [b.name for b in self.buckets]
        if len(set(names)) < len(names):
            raise ValueError(f"clip.buckets: {names} has repeated entries")
        return self

    @property
    def frame_counts(self) -> list[int]:
        return sorted({b.num_frames for b in self.buckets})

    @property
    def duration_s(self) -> float:
        """The longest clip's duration."""
        return max(self.frame_counts) / self.fps


class IngestParams(Section):
    executor: Literal["local", "ray"] = Field(
        "local", description="local: worker processes here; ray: Ray Data on the cluster at ray_address."
    )
    workers: int = Field(2, ge=1, description="Videos decoded in parallel (processes, or Ray tasks).")
    ray_address: str | None = Field(None, description="Ray cluster for executor=ray (None: a local one).")
    shot_threshold: float = Field(
        0.08,
        gt=0,
        lt=1,
        description="Mean absolute change (0-1) between consecutive 16x16 YUV thumbnails that marks a cut.",
    )
    cut_check_stride: int = Field(
        2,
        ge=1,
        le=8,
        description="Thumbnail every Nth frame; a jump is then traced to the exact frame (1: every frame). "
        "Higher is faster, but misses flashes shorter than N frames.",
    )
    max_clips_per_shot: int = Field(4, ge=1, description="A long shot yields at most this many clips.")
    val_fraction: float = Field(
        0.1, ge=0, lt=1, description="Share of source videos held out for validation (split by source)."
    )
    shard_max_clips: int = Field(256, ge=1, description="A shard closes at this many clips ...")
    shard_max_mb: float = Field(512, gt=0, description="... or at this many MiB, whichever comes first.")
    max_file_mb: float = Field(4096, gt=0, description="Larger files are rejected before decoding.")
    max_duration_s: float = Field(3 * 3600, gt=0, description="Longer videos are rejected.")
    max_pixels: int = Field(
        8192 * 4320, ge=1, description="Frames with more pixels are rejected (decompression bombs)."
    )
    min_short_side: int = Field(64, ge=1, description="Sources whose short side is smaller are rejected.")
    min_motion: float = Field(
        0.002, ge=0, description="Clips in which a smaller share of pixels changes per frame are static."
    )
    min_brightness: float = Field(0.03, ge=0, description="Clips with a darker mean luma (0-1) are rejected.")
    min_contrast: float = Field(
        0.01, ge=0, description="Clips whose spatial RGB std (0-1) is lower are blank (a flat colour)."
    )
    dup_max_hamming: int = Field(
        4,
        ge=0,
        le=16,
        description="Clips whose first/middle/last-frame pHashes are all within this many bits of a stored "
        "clip's, and whose colours match (dup_max_colour_diff), are near-duplicates.",
    )
    dup_max_colour_diff: int = Field(
        24,
        ge=0,
        le=255,
        description="...and whose 4x4 RGB thumbnails of those frames differ nowhere by more than this (of "
        "255); grey-level pHashes alone call a red and a blue shape the same clip.",
    )
    codec: Literal["h264", "hevc", "vp9", "av1"] = Field(
        "h264", description="How stored clips are encoded (x264, x265, libvpx-vp9, SVT-AV1; in MP4)."
    )
    crf: int = Field(
        0,
        ge=0,
        le=63,
        description="Constant rate factor: lower is larger and closer; 0 with h264 is lossless.",
    )
    preset: str = Field(
        "ultrafast",
        description="Encoder speed: an x264/x265 preset name (ultrafast ... veryslow); for vp9 cpu-used "
        "(0-8), for av1 SVT's preset (0-13).",
    )
    pix_fmt: Literal["rgb24", "yuv444p", "yuv420p"] = Field(
        "rgb24",
        description="What the encoder codes. rgb24 (h264 only, x264's RGB mode): with crf 0 the decoded "
        "clip is bit-identical to what ingest cut. yuv444p: full colour resolution (crf 16, preset medium: "
        "20-41x smaller than raw at 37-40 dB on 256x256 and 256x448 clips). yuv420p halves colour "
        "resolution: on small clips with hard colour edges (the demo's 32x32) it caps PSNR near 34 dB.",
    )

    @model_validator(mode="after")
    def _encoder_settings(self) -> IngestParams:
        named = (
            "ultrafast",
            "superfast",
            "veryfast",
            "faster",
            "fast",
            "medium",
            "slow",
            "slower",
            "veryslow",
        )
        if self.codec in ("h264", "hevc"):
            if self.preset not in named:
                raise ValueError(
                    f"ingest.preset={self.preset!r}: {self.codec} takes one of {', '.join(named)}"
                )
            if self.crf > 51:
                raise ValueError(f"ingest.crf={self.crf}: {self.codec} takes 0-51")
        else:
            top = 8 if self.codec == "vp9" else 13
            if not (self.preset.isdigit() and int(self.preset) <= top):
                raise ValueError(f"ingest.preset={self.preset!r}: {self.codec} takes a number 0-{top}")
        if self.codec == "av1" and self.pix_fmt != "yuv420p":
            raise ValueError("ingest.pix_fmt: SVT-AV1 encodes yuv420p only; set ingest.pix_fmt=yuv420p")
        if self.pix_fmt == "rgb24" and self.codec != "h264":
            raise ValueError(
                f"ingest.pix_fmt=rgb24 is h264 only (x264's RGB mode); {self.codec} takes yuv444p or yuv420p"
            )
        return self


class ReadParams(Section):
    """How the stages after ingest read the clip store."""

    max_unreadable: float = Field(
        0.001,
        ge=0,
        lt=1,
        description="Share of the clips a stage reads that may fail to decode: each is skipped and reported "
        "by shard and member (the stage's metrics, the log). More fails the stage.",
    )
    shards_url: str | None = Field(
        None,
        description="Where the store's shards are read from: None, the clip store itself; or an fsspec URL "
        "holding a copy of its `shards/` (e.g. s3://bucket/clips). The manifest is always the store's.",
    )
    loader_workers: int = Field(
        0,
        ge=0,
        description="DataLoader worker processes (per rank, in training) that read and decode clips; 0: in "
        "the stage's own process. Batches and results are the same for any number (docs/data.md, Reading).",
    )


class CaptionParams(Section):
    steps: int = Field(400, ge=1, description="Captioner training steps.")
    batch_size: int = Field(32, ge=1)
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay of the captioner.")
    embed_dim: int = Field(
        64, ge=8, description="Width of the video/text embeddings and the caption decoder."
    )
    max_tokens: int = Field(16, ge=4, description="Captions are truncated/padded to this many tokens.")
    seed: int = 0


class SchedulerParams(Section):
    """Rectified-flow noise process (diffusers FlowMatchEulerDiscreteScheduler)."""

    num_train_timesteps: int = Field(1000, ge=1)
    shift: float = Field(
        3.0,
        gt=0,
        description="Timestep shift, in training and sampling: >1 spends more of both at high noise "
        "(3: docs/training.md, Demo quality).",
    )
    prediction: Literal["sample", "velocity"] = Field(
        "sample",
        description="What the network predicts: the clean sample (x-prediction; suits pixel space with large "
        "patches, where per-pixel noise is hard to predict) or the velocity (usual in latent space).",
    )
    frame_noise_correlation: float = Field(
        0.5,
        ge=0.0,
        lt=1.0,
        description="Correlation of the noise between frames (mixed noise, Ge et al. 2023, PYoCo): each "
        "frame's noise is sqrt(c) x one shared draw + sqrt(1-c) x its own, in training and sampling alike.",
    )
    motion_loss_weight: float = Field(
        0.5,
        ge=0.0,
        description="Extra training-loss weight on what moves: each element is weighted 1 + w x (its clean "
        "frame's change to its neighbour frames / the clip's mean change), renormalised to mean 1.",
    )


class TrainParams(Section):
    """Model, optimisation and launch. `batch_size` is the global batch of one optimizer step: it is split
    over devices x num_nodes ranks and accumulate_grad_batches micro-batches."""

    model_size: str = Field(
        "tiny-conv-prior", description="A name from reelforge.model.backbone.MODEL_SIZES."
    )
    pretrained_path: str | None = Field(
        None,
        description="Local diffusers CogVideoXTransformer3DModel dir to fine-tune (replaces model_size).",
    )
    text_encoder_path: str | None = Field(
        None,
        description="Local Hugging Face T5 / CLIP text encoder + tokenizer directory, used frozen. "
        "None: a small text encoder trained here, with a word-level tokenizer trained on the captions.",
    )
    vae_path: str | None = Field(
        None,
        description="Local diffusers autoencoder directory (AutoencoderKL or AutoencoderKLCogVideoX): train "
        "in its latent space, clips encoded once into a latent cache. None: pixel space.",
    )
    steps: int = Field(600, ge=1, description="Optimizer steps.")
    batch_size: int = Field(16, ge=1, description="Global batch per optimizer step.")
    accumulate_grad_batches: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_steps: int = Field(20, ge=0, description="Linear warm-up, then cosine decay to min_lr_ratio x lr.")
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    grad_clip: float = Field(1.0, gt=0, description="Clip the global gradient norm to this.")
    ema_decay: float = Field(
        0.99, ge=0, lt=1, description="EMA of the weights (evaluated and served); 0 turns EMA off."
    )
    max_text_tokens: int = Field(16, ge=2, description="Prompts are truncated/padded to this many tokens.")
    caption_dropout: float = Field(
        0.1,
        ge=0,
        lt=1,
        description="Share of captions replaced by the empty prompt (classifier-free guidance).",
    )
    accelerator: Literal["cpu", "gpu", "auto"] = "cpu"
    devices: int = Field(1, ge=1, description="Processes (GPUs) per node.")
    num_nodes: int = Field(1, ge=1)
    strategy: Literal["auto", "ddp", "fsdp"] = Field(
        "auto", description="auto: single device; ddp: replicate; fsdp: shard (GPU only)."
    )
    precision: Literal["32", "bf16-mixed"] = "32"
    gradient_checkpointing: bool = Field(False, description="Recompute transformer blocks in backward.")
    compile: bool = Field(False, description="torch.compile the backbone.")
    val_every_n_steps: int = Field(100, ge=1, description="Validation loss (EMA weights) interval.")
    checkpoint_every_n_steps: int = Field(50, ge=1, description="Resumable checkpoint interval.")
    sample_every_n_steps: int = Field(250, ge=1, description="Sample GIFs for sample_prompts interval.")
    sample_prompts: list[str] = Field(
        default_factory=lambda: [
            "a red circle moves left over a black background",
            "a yellow square moves left over a black background",
        ],
        description="Fixed prompts sampled (EMA weights, fixed seeds) during training.",
    )
    log_every_n_steps: int = Field(1, ge=1, description="MLflow metrics interval.")
    seed: int = 0

    @property
    def world_size(self) -> int:
        return self.devices * self.num_nodes

    @property
    def micro_batch(self) -> int:
        """Samples per rank per forward pass."""
        return self.batch_size // (self.world_size * self.accumulate_grad_batches)

    @model_validator(mode="after")
    def _check(self) -> TrainParams:
        problems = []
        if self.model_size not in MODEL_SIZES:
            problems.append(
                f"train.model_size {self.model_size!r} is unknown; use one of {sorted(MODEL_SIZES)}"
            )
        if self.accelerator == "cpu" and self.precision != "32":
            problems.append("train.precision must be '32' on accelerator 'cpu' (bf16-mixed needs a GPU)")
        if self.strategy == "fsdp" and self.accelerator != "gpu":
            problems.append(
                "train.strategy 'fsdp' needs train.accelerator 'gpu' (FSDP shards over NCCL); "
                "on CPU use 'ddp'"
            )
        if self.strategy == "fsdp" and self.ema_decay > 0:
            problems.append(
                "train.strategy 'fsdp' with train.ema_decay > 0 is not supported: the EMA keeps unsharded "
                "copies of the weights; set train.ema_decay=0 or use 'ddp'"
            )
        if self.strategy == "fsdp" and self.world_size > 1 and self.sample_prompts:
            problems.append(
                "train.sample_prompts are sampled on rank 0 alone, which weights sharded over "
                f"{self.world_size} FSDP ranks do not allow; set train.sample_prompts to [] "
                "(evaluate samples the saved model)"
            )
        if self.world_size > 1 and self.strategy == "auto":
            problems.append(
                f"train.devices x train.num_nodes = {self.world_size} processes: "
                "set train.strategy to 'ddp' or 'fsdp'"
            )
        per = self.world_size * self.accumulate_grad_batches
        if self.batch_size % per:
            problems.append(
                f"train.batch_size {self.batch_size} must be divisible by devices x num_nodes x "
                f"accumulate_grad_batches = {per}; use e.g. {max(per, self.batch_size // per * per)}"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self


class LatentParams(Section):
    """How the latent cache is computed (train.vae_path set): the clips encoded once by the frozen
    autoencoder, stored as chunk files keyed by its weights' hash (docs/data.md, Latents)."""

    executor: Literal["local", "ray"] = Field(
        "local",
        description="local: encoded in the training process; ray: by a Ray Data actor pool, one autoencoder "
        "per actor, on the cluster at ray_address.",
    )
    ray_address: str | None = Field(None, description="Ray cluster for executor=ray (None: a local one).")
    actors: int = Field(1, ge=1, description="Ray actors encoding at once (executor=ray).")
    gpus_per_actor: float = Field(
        0.0, ge=0, description="GPUs each Ray actor takes (executor=ray; 0: CPU, e.g. 1 on GPU nodes)."
    )
    chunk_clips: int = Field(
        256, ge=1, description="Clips per cache file (of one bucket): the unit of work and of resuming."
    )
    batch_clips: int = Field(8, ge=1, description="Clips encoded in one autoencoder call.")


class SampleParams(Section):
    steps: int = Field(10, ge=1, description="Euler steps when sampling.")
    guidance: float = Field(1.0, ge=1.0, description="Classifier-free guidance scale (1 = off).")


class EvaluateParams(Section):
    samples_per_prompt: int = Field(3, ge=1)
    seed: int = 1234
    gif_prompts: int = Field(4, ge=0, description="Prompts whose samples are logged as GIF/MP4.")
    i3d_path: str | None = Field(
        "models/i3d/i3d_k400.safetensors",
        description="Local I3D for FVD (env REELFORGE_I3D_PATH overrides). The default is where `make i3d` "
        "writes the converted Kinetics-400 I3D, used when it is there; only that pinned file gives `fvd`, "
        "any other I3D (safetensors or TorchScript) gives `fvd_custom`. A path set elsewhere must exist.",
    )
    clip_path: str | None = Field(
        None,
        description="Local Hugging Face CLIP directory; adds the standard `clip_score` metric "
        "(env REELFORGE_CLIP_PATH overrides).",
    )
    bootstrap: int = Field(200, ge=0, description="Bootstrap resamples for 95% intervals (0: none).")
    batch_size: int = Field(
        36,
        ge=1,
        description="Videos generated and scored at once: all an evaluation holds of them, besides the GIF "
        "rows (the demo's 36 in one batch; a few per GPU at high resolution).",
    )


# What the demo's pixel check reads (reelforge.evaluate.pixelcheck); `all` is every one of them right.
PIXEL_CHECKS = ("background", "color", "single_blob", "shape", "direction")
PixelCheckName = Literal[(*PIXEL_CHECKS, "all")]


class PromoteParams(Section):
    """Gates. The absolute ones are ratios to the real validation clips scored in the same run, because the
    reference encoder's scale changes whenever it is retrained; distances are compared at the same n. The
    gates against the champion are paired bootstrap tests over the same prompts and seeds."""

    max_fvd_ref_ratio: float = Field(
        2.0,
        gt=0,
        description="Candidate fvd_ref_floor_n (half the real clips vs as many generated) must be at most "
        "this times the real split-half floor (half vs half: the same n).",
    )
    min_clip_score_ref_ratio: float = Field(
        0.5,
        ge=0,
        description="Candidate clip_score_ref must be at least this times the real validation clips' score "
        "against their given captions.",
    )
    min_fvd_ref_gain: float = Field(
        0.0, ge=0, description="Candidate must beat the champion's fvd_ref by this, at `confidence`."
    )
    clip_score_ref_tolerance: float = Field(
        1.0,
        ge=0,
        description="Candidate clip_score_ref may trail the champion's by at most this, at `confidence`.",
    )
    confidence: float = Field(
        0.95,
        gt=0.5,
        lt=1,
        description="Confidence of the paired tests against the champion (one-sided, bootstrap).",
    )
    min_pixel_acc: dict[PixelCheckName, float] = Field(
        default_factory=lambda: {"background": 0.9, "color": 0.8, "single_blob": 0.8, "direction": 0.6},
        description="Demo data only (evaluation ran the pixel check): per check, the least share of the "
        "candidate's videos whose pixels show what the prompt asked. Set it to {} for data outside the demo "
        "world (no pixel check: the gate fails, naming this key). The demo's model meets these three; "
        "direction (target 0.6) and shape are still at chance, so they are not gated.",
    )


class ServeParams(Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    ray_port: int = Field(
        6390, ge=1, le=65535, description="GCS port of the local Ray head `serve start` runs."
    )
    profile: Literal["cpu", "gpu"] = "cpu"
    max_prompt_chars: int = Field(300, ge=1)
    max_num_frames: int = Field(32, ge=1)
    max_steps: int = Field(100, ge=1)
    max_guidance: float = Field(20.0, ge=1)
    state_dir: str = Field(
        ".serve", description="Job results and (by default) the SQLite job table; relative to the project."
    )
    jobs_url: str | None = Field(
        None,
        description="SQLAlchemy URL of the job table every replica shares: None = SQLite in state_dir (one "
        "machine); postgresql://... for replicas on several machines.",
    )
    result_ttl_s: float = Field(86400, gt=0, description="A finished job and its video are kept this long.")
    max_queued_jobs: int = Field(64, ge=1, description="Past this many queued jobs POST /v1/videos is a 503.")
    job_stale_s: float = Field(
        120,
        gt=0,
        description="A running job whose replica has not reported for this long is re-queued (once) or "
        "failed: longer than one sampling step of the largest request.",
    )
    api_keys_file: str = Field(
        ".serve/api_keys",
        description="Hashes of the API keys (`reelforge serve key add NAME`), relative to the project; with "
        "no keys (there or in REELFORGE_API_KEY_HASHES) the endpoint is open, which only a loopback host "
        "allows.",
    )
    rate_limit_per_minute: int = Field(
        60, ge=0, description="Generation requests per key (or client address) a minute; 0: no limit."
    )


class RegistryParams(Section):
    """Where runs and models are tracked, and the registered model the pipeline trains and serves."""

    experiment: str = Field("reelforge", description="MLflow experiment of every run.")
    tracking_uri: str | None = Field(
        None, description="None: sqlite store in the project (MLFLOW_TRACKING_URI overrides either)."
    )
    model_name: str = Field("reelforge-t2v", min_length=1, description="MLflow registered model name.")
    alias: str = Field("champion", min_length=1, description="Registry alias of the served model.")


class StackParams(Section):
    """`reelforge stack up`: the team setup on one machine (docs/operations.md); not read by any stage."""

    dir: str = Field(".stack", description="Its services' data, logs and pids; relative to the project.")
    postgres_port: int = Field(5433, ge=1, le=65535)
    mlflow_port: int = Field(5001, ge=1, le=65535)
    prefect_port: int = Field(4201, ge=1, le=65535)
    artifacts: str | None = Field(
        None,
        description="Where the MLflow server keeps artifacts: None = <dir>/mlartifacts, or s3://bucket/path.",
    )
    work_pool: str = Field(
        "reelforge", min_length=1, description="The Prefect process work pool its worker serves."
    )

    @model_validator(mode="after")
    def _distinct_ports(self) -> StackParams:
        ports = [self.postgres_port, self.mlflow_port, self.prefect_port]
        if len(set(ports)) != len(ports):
            raise ValueError(
                f"stack ports must differ: postgres {ports[0]}, mlflow {ports[1]}, prefect {ports[2]}"
            )
        return self


class DvcParams(Section):
    """Where every successful pipeline run pushes its data and model (read by the flow, not by a stage)."""

    remote: str | None = Field(
        None,
        description="A DVC remote URL (s3://..., gs://..., ssh://...) or a local folder (relative to the "
        "project); None: nothing is pushed, the data stays in this machine's DVC cache.",
    )


class NotifyParams(Section):
    """Where the pipeline flow reports a failed run (read by the flow, not by a stage)."""

    webhook_url: str | None = Field(
        None, description="POSTed a JSON body (flow run, failed stage, message, log tail) when a run fails."
    )


class Params(Section):
    """The whole params.yaml. Stages take a `StageConfig` built from it (`Params.stage`)."""

    clip: ClipParams = Field(default_factory=ClipParams)
    ingest: IngestParams = Field(default_factory=IngestParams)
    read: ReadParams = Field(default_factory=ReadParams)
    caption: CaptionParams = Field(default_factory=CaptionParams)
    scheduler: SchedulerParams = Field(default_factory=SchedulerParams)
    train: TrainParams = Field(default_factory=TrainParams)
    latents: LatentParams = Field(default_factory=LatentParams)
    sample: SampleParams = Field(default_factory=SampleParams)
    evaluate: EvaluateParams = Field(default_factory=EvaluateParams)
    promote: PromoteParams = Field(default_factory=PromoteParams)
    serve: ServeParams = Field(default_factory=ServeParams)
    registry: RegistryParams = Field(default_factory=RegistryParams)
    stack: StackParams = Field(default_factory=StackParams)
    notify: NotifyParams = Field(default_factory=NotifyParams)
    dvc: DvcParams = Field(default_factory=DvcParams)

    @model_validator(mode="after")
    def _check(self) -> Params:
        problems = [p for cls in STAGE_CONFIGS for p in self.stage(cls).problems()]
        i3d = self.evaluate.i3d_path
        if i3d and Path(i3d).is_file() and min(self.clip.frame_counts) < 10:
            problems.append(
                f"evaluate.i3d_path {i3d} is there but a clip.buckets entry has fewer than 10 frames: I3D "
                "needs at least 10 (16 is the standard FVD protocol); raise its num_frames"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def stage(self, cls: type[S]) -> S:
        """The config of one stage: the sections it declares, taken from this file."""
        return cls.model_construct(**{name: getattr(self, name) for name in cls.model_fields})


class StageConfig(Section):
    """What one stage reads: a few sections of params.yaml, no more (see dvc.yaml `params:`)."""

    def problems(self) -> list[str]:
        """Problems across this stage's sections (each section validates itself)."""
        return []

    @model_validator(mode="after")
    def _check_stage(self) -> StageConfig:
        if problems := self.problems():
            raise ValueError("; ".join(problems))
        return self


class IngestConfig(StageConfig):
    clip: ClipParams = Field(default_factory=ClipParams)
    ingest: IngestParams = Field(default_factory=IngestParams)


class CaptionConfig(StageConfig):
    caption: CaptionParams = Field(default_factory=CaptionParams)
    read: ReadParams = Field(default_factory=ReadParams)


class TrainConfig(StageConfig):
    clip: ClipParams = Field(default_factory=ClipParams)
    read: ReadParams = Field(default_factory=ReadParams)
    scheduler: SchedulerParams = Field(default_factory=SchedulerParams)
    train: TrainParams = Field(default_factory=TrainParams)
    latents: LatentParams = Field(default_factory=LatentParams)
    sample: SampleParams = Field(default_factory=SampleParams)
    registry: RegistryParams = Field(default_factory=RegistryParams)

    def problems(self) -> list[str]:
        """Every setting the named size cannot take, each with its fix. Clips must split into whole patches
        of it (a pretrained backbone or autoencoder is checked against its own config.json when training
        starts: `reelforge.model.fit`)."""
        train = self.train
        if train.pretrained_path:
            return []
        d, found = MODEL_SIZES[train.model_size], []
        if d.backbone == "conv" and train.gradient_checkpointing:
            found.append(f"train.gradient_checkpointing: the conv backbone of {train.model_size!r} has none")
        if d.text_prior_grid and self.scheduler.num_train_timesteps != d.text_prior_timesteps:
            found.append(
                f"scheduler.num_train_timesteps {self.scheduler.num_train_timesteps}: the text prior of "
                f"train.model_size {train.model_size!r} weighs in by sigma = t / {d.text_prior_timesteps}; "
                f"use {d.text_prior_timesteps}"
            )
        if train.vae_path:
            return found
        patch = d.spatial_multiple
        return found + [
            f"clip.buckets {b.name}: width and height must be divisible by {patch} (the patch size, x 2 per "
            f"conv level) of train.model_size {train.model_size!r}; use e.g. "
            f"{max(patch, b.width // patch * patch)}x{max(patch, b.height // patch * patch)}"
            for b in self.clip.buckets
            if b.width % patch or b.height % patch
        ]


class EvaluateConfig(StageConfig):
    evaluate: EvaluateParams = Field(default_factory=EvaluateParams)
    read: ReadParams = Field(default_factory=ReadParams)
    registry: RegistryParams = Field(default_factory=RegistryParams)


class PromoteConfig(StageConfig):
    promote: PromoteParams = Field(default_factory=PromoteParams)
    registry: RegistryParams = Field(default_factory=RegistryParams)


class ServeConfig(StageConfig):
    """Not a DVC stage: what `reelforge serve deploy` reads."""

    serve: ServeParams = Field(default_factory=ServeParams)
    registry: RegistryParams = Field(default_factory=RegistryParams)


STAGE_CONFIGS: tuple[type[StageConfig], ...] = (
    IngestConfig, CaptionConfig, TrainConfig, EvaluateConfig, PromoteConfig, ServeConfig,
)  # fmt: skip


S = TypeVar("S", bound=StageConfig)


class ConfigError(ValueError):
    """params.yaml (or an override) is invalid; the message lists every problem."""


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply `section.key=value` strings (value parsed as YAML) to a nested dict."""
    raw = dict(raw)
    for item in overrides:
        key, sep, value = item.partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) < 2 or not all(parts):
            raise ConfigError(f"--set {item!r}: expected section.key=value, e.g. --set train.steps=50")
        node = raw
        for part in parts[:-1]:
            node[part] = dict(node.get(part) or {})
            node = node[part]
        node[parts[-1]] = yaml.safe_load(value)
    return raw


def load_params(path: str | Path = "params.yaml", overrides: list[str] | None = None) -> Params:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path} not found; run from the project root or pass --params")
    raw = yaml.safe_load(path.read_text()) or {}
    raw = apply_overrides(raw, overrides or [])
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            problems.append(
                f"  {loc}: {err['msg']}"
                + (" (remove it or fix its spelling)" if err["type"] == "extra_forbidden" else "")
            )
        raise ConfigError(f"invalid {path}:\n" + "\n".join(problems)) from None
