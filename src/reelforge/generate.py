"""Prompt(s) -> video frames with a trained model: the one inference path (evaluation and serving use it)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from reelforge.config import SchedulerConfig
from reelforge.diffusion import RectifiedFlow
from reelforge.model import TextToVideoModel
from reelforge.text import PAD_ID, encode, load_tokenizer

GENERATION_CONFIG = "generation.json"


class VideoGenerator:
    def __init__(
        self,
        model: TextToVideoModel,
        tokenizer,
        scheduler: SchedulerConfig,
        fps: float,
        default_steps: int,
        default_guidance: float,
    ):
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.flow = RectifiedFlow(scheduler)
        self.fps = fps
        self.default_steps, self.default_guidance = default_steps, default_guidance

    @classmethod
    def from_dir(cls, model_dir: str | Path) -> VideoGenerator:
        model_dir = Path(model_dir)
        gen = json.loads((model_dir / GENERATION_CONFIG).read_text())
        return cls(
            TextToVideoModel.from_pretrained(model_dir),
            load_tokenizer(model_dir / "tokenizer.json"),
            SchedulerConfig(**gen["scheduler"]),
            gen["fps"],
            gen["steps"],
            gen["guidance"],
        )

    @property
    def num_frames(self) -> int:
        return self.model.cfg.num_frames

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
        t = num_frames or cfg.num_frames
        ids = encode(self.tokenizer, prompts, cfg.max_text_tokens)  # (B, L)
        null = torch.full_like(ids, PAD_ID)
        shape = (1, t, cfg.channels, cfg.height, cfg.width)
        noise = [torch.randn(shape, generator=torch.Generator().manual_seed(int(s))) for s in seeds]
        x = self.flow.sample(
            self.model,
            ids,
            null,
            torch.cat(noise),
            steps or self.default_steps,
            self.default_guidance if guidance is None else guidance,
        )
        frames = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)  # (B, T, C, H, W)
        return frames.permute(0, 1, 3, 4, 2).numpy()  # (B, T, H, W, C)
