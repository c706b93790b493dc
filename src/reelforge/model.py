"""The text-to-video network: a small text encoder feeding a diffusers CogVideoX video transformer.

The network only predicts; the noise process lives in `reelforge.diffusion`. Named sizes are one table.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from diffusers import CogVideoXTransformer3DModel
from torch import nn

from reelforge.text import TextEncoder


@dataclass(frozen=True)
class ModelSize:
    layers: int
    heads: int
    head_dim: int
    patch_size: int
    time_embed_dim: int
    text_dim: int
    text_layers: int


MODEL_SIZES: dict[str, ModelSize] = {
    # ~0.5M backbone params; ~1 s per batch of 16 at 16x32x32 on 2 CPU cores.
    "tiny": ModelSize(
        layers=4, heads=4, head_dim=16, patch_size=4, time_embed_dim=64, text_dim=64, text_layers=2
    ),
    "small": ModelSize(
        layers=8, heads=8, head_dim=32, patch_size=2, time_embed_dim=256, text_dim=256, text_layers=4
    ),
    # CogVideoX-2B-like width/depth, for GPU nodes (latent space).
    "base": ModelSize(
        layers=30, heads=30, head_dim=64, patch_size=2, time_embed_dim=512, text_dim=768, text_layers=6
    ),
}


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild the network; serialised beside the weights."""

    size: str
    num_frames: int
    height: int
    width: int
    channels: int
    vocab_size: int
    max_text_tokens: int

    @property
    def dims(self) -> ModelSize:
        return MODEL_SIZES[self.size]


class TextToVideoModel(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.dims
        if cfg.height % d.patch_size or cfg.width % d.patch_size:
            raise ValueError(
                f"clip size {cfg.height}x{cfg.width} must be divisible by patch_size {d.patch_size}"
            )
        self.cfg = cfg
        self.text_encoder = TextEncoder(cfg.vocab_size, cfg.max_text_tokens, d.text_dim, d.text_layers)
        self.backbone = CogVideoXTransformer3DModel(
            num_attention_heads=d.heads,
            attention_head_dim=d.head_dim,
            in_channels=cfg.channels,
            out_channels=cfg.channels,
            time_embed_dim=d.time_embed_dim,
            text_embed_dim=d.text_dim,
            num_layers=d.layers,
            sample_width=cfg.width,
            sample_height=cfg.height,
            sample_frames=cfg.num_frames,
            patch_size=d.patch_size,
            temporal_compression_ratio=1,
            max_text_seq_length=cfg.max_text_tokens,
        )

    def forward(self, x_t: torch.Tensor, timestep: torch.Tensor, text_ids: torch.Tensor) -> torch.Tensor:
        """x_t (B, T, C, H, W), timestep (B,), text_ids (B, L) -> predicted velocity (B, T, C, H, W)."""
        text = self.text_encoder(text_ids)  # (B, L, text_dim)
        return self.backbone(x_t, text, timestep, return_dict=False)[0]

    def save_pretrained(self, out_dir: str | Path) -> None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(asdict(self.cfg), indent=2))
        torch.save(self.state_dict(), out / "model.pt")

    @classmethod
    def from_pretrained(cls, model_dir: str | Path) -> TextToVideoModel:
        model_dir = Path(model_dir)
        model = cls(ModelConfig(**json.loads((model_dir / "config.json").read_text())))
        model.load_state_dict(torch.load(model_dir / "model.pt", map_location="cpu", weights_only=True))
        return model.eval()
