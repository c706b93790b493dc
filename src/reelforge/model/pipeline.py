"""The text-to-video pipeline: the one owner of the model directory and the one inference path.

Train writes the directory with `save_pretrained`; evaluation and serving read it with `from_pretrained`
(through the registry) and call `generate`. The diffusers way: everything needed to generate is in the
directory, so a version generates the same wherever it is loaded.

    model_dir/config.json, backbone/, text_encoder(.pt|/)   TextToVideoModel.save_pretrained
    model_dir/tokenizer.json | tokenizer/                    PromptTokenizer.save
    model_dir/vae/                                           the frozen autoencoder (latent space only)
    model_dir/generation.json                    scheduler, fps, frames, shapes, steps, guidance, weights
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from reelforge.config import SchedulerParams
from reelforge.model.autoencoder import Autoencoder
from reelforge.model.backbone import TextToVideoModel
from reelforge.model.diffusion import RectifiedFlow
from reelforge.model.pixels import to_uint8
from reelforge.model.text import PromptTokenizer

GENERATION_CONFIG = "generation.json"
VAE_DIR = "vae"


# What a model saved before a scheduler key existed was trained and samples with: the behaviour before the
# key, not today's default (correlated frame noise became the default after models were saved without it).
SCHEDULER_BEFORE_KEYS = {"frame_noise_correlation": 0.0, "motion_loss_weight": 0.0}


class TextToVideoPipeline:
    def __init__(
        self,
        model: TextToVideoModel,
        tokenizer: PromptTokenizer,
        autoencoder: Autoencoder,
        scheduler: SchedulerParams,
        fps: float,
        num_frames: int,
        steps: int,
        guidance: float,
        weights: str = "final",
        shapes: list[tuple[int, int, int]] | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.autoencoder = autoencoder
        self.scheduler = scheduler
        self.flow = RectifiedFlow(scheduler)
        self.fps, self.num_frames = fps, num_frames
        self.default_steps, self.default_guidance = steps, guidance
        self.weights = weights  # "ema" or "final": which weights save_pretrained stored
        spatial = autoencoder.compression.spatial
        self.width, self.height = model.cfg.width * spatial, model.cfg.height * spatial  # the default size
        # (width, height, frames) the model was trained at, and so may generate at: the default first
        default = (self.width, self.height, num_frames)
        self.shapes = [default] + sorted({tuple(s) for s in shapes or ()} - {default})
        self.autocast: torch.dtype | None = None  # see `to`

    @property
    def generation_config(self) -> dict:
        """What this pipeline samples with by default (logged with every evaluation of it)."""
        return {
            "scheduler": self.scheduler.model_dump(),
            "fps": self.fps,
            "num_frames": self.num_frames,
            "shapes": [list(s) for s in self.shapes],
            "steps": self.default_steps,
            "guidance": self.default_guidance,
            "weights": self.weights,
        }

    def save_pretrained(self, model_dir: str | Path) -> None:
        out = Path(model_dir)
        self.model.save_pretrained(out)
        self.tokenizer.save(out)
        if self.autoencoder.vae is not None:
            self.autoencoder.vae.save_pretrained(out / VAE_DIR)
        (out / GENERATION_CONFIG).write_text(json.dumps(self.generation_config, indent=2))

    @classmethod
    def from_pretrained(cls, model_dir: str | Path) -> TextToVideoPipeline:
        model_dir = Path(model_dir)
        gen = json.loads((model_dir / GENERATION_CONFIG).read_text())
        model = TextToVideoModel.from_pretrained(model_dir).requires_grad_(False)
        vae = model_dir / VAE_DIR
        return cls(
            model,
            PromptTokenizer.load(model_dir, model.cfg.max_text_tokens),
            Autoencoder(vae if vae.exists() else None),
            SchedulerParams(**(SCHEDULER_BEFORE_KEYS | gen["scheduler"])),
            gen["fps"],
            gen.get("num_frames", model.cfg.num_frames),  # pixel space before 0.2
            gen["steps"],
            gen["guidance"],
            gen.get("weights", "final"),
            _shapes(gen),
        )

    def to(self, device: torch.device | str, autocast: torch.dtype | None = None) -> TextToVideoPipeline:
        """Move the networks (e.g. onto a serving replica's GPU) and, with `autocast` (torch.bfloat16),
        sample in that precision under autocast; the weights stay fp32."""
        self.model.to(device)
        self.autoencoder.to(device)
        self.autocast = autocast
        return self

    @property
    def sizes(self) -> list[tuple[int, int]]:
        """(width, height) of the trained shapes, the default first."""
        return list(dict.fromkeys((w, h) for w, h, _ in self.shapes))

    def resolve(self, num_frames: int | None, width: int | None, height: int | None) -> tuple[int, int, int]:
        """(num_frames, width, height) to generate, each left out taken from the defaults: the model's size,
        and the frame count it trained at that size."""
        width, height = width or self.width, height or self.height
        trained = (t for w, h, t in self.shapes if (w, h) == (width, height))
        return num_frames or next(trained, self.num_frames), width, height

    def shape_problem(self, num_frames: int, width: int, height: int) -> str | None:
        """Why a width x height x num_frames video cannot be generated (not a shape the model was trained at:
        a bucket of its clips), or None."""
        if (width, height, num_frames) in self.shapes:
            return None
        allowed = ", ".join(f"{w}x{h}x{t}" for w, h, t in self.shapes)
        return (
            f"{width}x{height}x{num_frames} is not a shape this model was trained at; use one of {allowed} "
            "(width x height x frames)"
        )

    def generate(
        self,
        prompts: list[str],
        seeds: list[int],
        num_frames: int | None = None,
        steps: int | None = None,
        guidance: float | None = None,
        callback: Callable[[int, int], None] | None = None,
        width: int | None = None,
        height: int | None = None,
    ) -> np.ndarray:
        """(B, T, H, W, 3) uint8 videos, one per prompt and seed; `callback(done, steps)` after each
        sampling step."""
        videos = self.sample(prompts, seeds, num_frames, steps, guidance, callback, width, height)
        return to_uint8(videos.float())

    @torch.no_grad()
    def sample(
        self,
        prompts: list[str],
        seeds: list[int],
        num_frames: int | None = None,
        steps: int | None = None,
        guidance: float | None = None,
        callback: Callable[[int, int], None] | None = None,
        width: int | None = None,
        height: int | None = None,
    ) -> torch.Tensor:
        """(B, T, 3, H, W) decoded frames in about [-1, 1], on the model's device, at one of the trained
        shapes (`shapes`; default: the first).

        Each video's noise comes from its own seed, drawn on the CPU so a seed gives the same noise on any
        device; a result does not depend on which other prompts share its batch (beyond float rounding in
        batched matmuls)."""
        cfg, device = self.model.cfg, next(self.model.parameters()).device
        num_frames, width, height = self.resolve(num_frames, width, height)
        if problem := self.shape_problem(num_frames, width, height):
            raise ValueError(problem)
        ids = self.tokenizer(prompts).to(device)  # (B, L)
        null = self.tokenizer([""] * len(prompts)).to(device)
        c = self.autoencoder.compression
        shape = (1, c.latent_frames(num_frames), cfg.channels, height // c.spatial, width // c.spatial)
        noise = [self.flow.noise(shape, torch.Generator().manual_seed(int(s))) for s in seeds]
        amp = torch.autocast(device.type, dtype=self.autocast) if self.autocast else contextlib.nullcontext()
        with amp:
            z = self.flow.sample(
                self.model,
                ids,
                null,
                torch.cat(noise).to(device),  # (B, T', C, H', W')
                steps or self.default_steps,
                self.default_guidance if guidance is None else guidance,
                callback,
            )
            return self.autoencoder.decode(z)


def _shapes(gen: dict) -> list[tuple[int, int, int]] | None:
    """The trained (width, height, frames) of a generation.json: `shapes`; in files written before it,
    `sizes` at the one frame count every model then trained at; in the oldest, none (the model's own)."""
    if "shapes" in gen:
        return gen["shapes"]
    return [(w, h, gen["num_frames"]) for w, h in gen["sizes"]] if "sizes" in gen else None
