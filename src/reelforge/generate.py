"""Prompt(s) -> video frames with a trained model: the one inference path (evaluation and serving use it)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from reelforge.autoencoder import Autoencoder
from reelforge.config import SchedulerConfig
from reelforge.diffusion import RectifiedFlow
from reelforge.model import TextToVideoModel
from reelforge.text import PromptTokenizer

GENERATION_CONFIG = "generation.json"
VAE_DIR = "vae"


class VideoGenerator:
    def __init__(
        self,
        model: TextToVideoModel,
        tokenizer: PromptTokenizer,
        autoencoder: Autoencoder,
        scheduler: SchedulerConfig,
        fps: float,
        num_frames: int,
        default_steps: int,
        default_guidance: float,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.autoencoder = autoencoder
        self.flow = RectifiedFlow(scheduler)
        self.fps, self.num_frames = fps, num_frames
        self.default_steps, self.default_guidance = default_steps, default_guidance

    @classmethod
    def from_dir(cls, model_dir: str | Path) -> VideoGenerator:
        model_dir = Path(model_dir)
        gen = json.loads((model_dir / GENERATION_CONFIG).read_text())
        model = TextToVideoModel.from_pretrained(model_dir).requires_grad_(False)
        vae = model_dir / VAE_DIR
        return cls(
            model,
            PromptTokenizer.load(model_dir, model.cfg.max_text_tokens),
            Autoencoder(vae if vae.exists() else None),
            SchedulerConfig(**gen["scheduler"]),
            gen["fps"],
            gen.get("num_frames", model.cfg.num_frames),  # pixel space before 0.2
            gen["steps"],
            gen["guidance"],
        )

    def frames_problem(self, num_frames: int) -> str | None:
        """Why `num_frames` cannot be generated (the autoencoder's temporal compression), or None."""
        c = self.autoencoder.compression
        if c.temporal > 1 and (num_frames - 1) % c.temporal:
            return (
                f"num_frames must be 1 + {c.temporal}k for this model's autoencoder (e.g. {self.num_frames})"
            )
        return None

    def generate(
        self,
        prompts: list[str],
        seeds: list[int],
        num_frames: int | None = None,
        steps: int | None = None,
        guidance: float | None = None,
    ) -> np.ndarray:
        """(B, T, H, W, 3) uint8. Each video's noise comes from its own seed, so a result does not depend on
        which other prompts share its batch (beyond float rounding in batched matmuls)."""
        cfg = self.model.cfg
        num_frames = num_frames or self.num_frames
        if problem := self.frames_problem(num_frames):
            raise ValueError(problem)
        ids = self.tokenizer(prompts)  # (B, L)
        null = self.tokenizer([""] * len(prompts))
        t = self.autoencoder.compression.latent_frames(num_frames)
        shape = (1, t, cfg.channels, cfg.height, cfg.width)
        noise = [torch.randn(shape, generator=torch.Generator().manual_seed(int(s))) for s in seeds]
        z = self.flow.sample(
            self.model,
            ids,
            null,
            torch.cat(noise),
            steps or self.default_steps,
            self.default_guidance if guidance is None else guidance,
        )
        x = self.autoencoder.decode(z)  # (B, T, 3, H, W) in about [-1, 1]
        frames = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return frames.permute(0, 1, 3, 4, 2).numpy()  # (B, T, H, W, C)
