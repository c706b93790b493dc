"""The text-to-video network: a text encoder feeding a video backbone, diffusers' CogVideoX transformer or
the small conv U-Net of `reelforge.model.convnet` (the size table says which).

The network only predicts; the noise process lives in `reelforge.model.diffusion`. Named sizes are one table.
Saved in diffusers/transformers layout, so a fine-tuned backbone loads with diffusers directly:

    model_dir/config.json       ModelConfig
    model_dir/backbone/         CogVideoXTransformer3DModel.save_pretrained
    model_dir/text_encoder/     a pretrained T5/CLIP encoder (save_pretrained) ... or
    model_dir/text_encoder.pt   the small encoder trained here
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from diffusers import CogVideoXTransformer3DModel
from torch import nn

from reelforge.model.convnet import ConvVideoBackbone
from reelforge.model.sizes import MODEL_SIZES, ModelSize, spatial_multiple
from reelforge.model.text import PretrainedTextEncoder, TextEncoder


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild the network; serialised beside the weights. Shapes are in the space the
    model runs in (latents when there is an autoencoder)."""

    size: str
    num_frames: int
    height: int
    width: int
    channels: int
    vocab_size: int
    max_text_tokens: int
    pretrained_text_encoder: bool = False

    @property
    def dims(self) -> ModelSize:
        return MODEL_SIZES[self.size]


class TextToVideoModel(nn.Module):
    """Build from the size table, or wire given (pretrained) parts: `backbone`, `text_encoder`."""

    def __init__(
        self,
        cfg: ModelConfig,
        backbone: CogVideoXTransformer3DModel | None = None,
        text_encoder: nn.Module | None = None,
    ):
        super().__init__()
        d = cfg.dims
        self.cfg = cfg
        self.text_encoder = text_encoder or TextEncoder(
            cfg.vocab_size, cfg.max_text_tokens, d.text_dim, d.text_layers
        )
        text_dim = getattr(self.text_encoder, "dim", d.text_dim)
        if backbone is None and (cfg.height % d.spatial_multiple or cfg.width % d.spatial_multiple):
            raise ValueError(
                f"clip size {cfg.height}x{cfg.width} must be divisible by {d.spatial_multiple} (patch_size "
                f"{d.patch_size}, x 2 per conv level) for size {cfg.size!r}"
            )
        if backbone is None and d.backbone == "conv":
            backbone = ConvVideoBackbone(
                in_channels=cfg.channels,
                out_channels=cfg.channels,
                text_embed_dim=text_dim,
                max_text_seq_length=cfg.max_text_tokens,
                channels=d.channels,
                time_embed_dim=d.time_embed_dim,
                heads=d.heads,
                patch_size=d.patch_size,
                attention_levels=d.attention_levels,
                text_pool_queries=d.text_pool_queries,
                text_prior_grid=d.text_prior_grid,
                text_prior_timesteps=d.text_prior_timesteps,
            )
        elif backbone is None:
            backbone = CogVideoXTransformer3DModel(
                num_attention_heads=d.heads,
                attention_head_dim=d.head_dim,
                in_channels=cfg.channels,
                out_channels=cfg.channels,
                time_embed_dim=d.time_embed_dim,
                text_embed_dim=text_dim,
                num_layers=d.layers,
                sample_width=cfg.width,
                sample_height=cfg.height,
                sample_frames=cfg.num_frames,
                patch_size=d.patch_size,
                temporal_compression_ratio=1,
                max_text_seq_length=cfg.max_text_tokens,
            )
        _check_backbone(backbone, cfg, text_dim)
        self.backbone = backbone

    def forward(self, x_t: torch.Tensor, timestep: torch.Tensor, text_ids: torch.Tensor) -> torch.Tensor:
        """x_t (B, T, C, H, W), timestep (B,), text_ids (B, L) -> prediction (B, T, C, H, W)."""
        text = self.text_encoder(text_ids)  # (B, L, text_dim)
        return self.backbone(x_t, text, timestep, return_dict=False)[0]

    def save_pretrained(self, out_dir: str | Path) -> None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(asdict(self.cfg), indent=2))
        self.backbone.save_pretrained(out / "backbone")
        if isinstance(self.text_encoder, PretrainedTextEncoder):
            self.text_encoder.encoder.save_pretrained(out / "text_encoder")
        else:
            torch.save(self.text_encoder.state_dict(), out / "text_encoder.pt")

    @classmethod
    def from_pretrained(cls, model_dir: str | Path) -> TextToVideoModel:
        model_dir = Path(model_dir)
        cfg = ModelConfig(**json.loads((model_dir / "config.json").read_text()))
        if (model_dir / "model.pt").exists():  # the single-file layout of versions registered before 0.2
            model = cls(cfg)
            model.load_state_dict(torch.load(model_dir / "model.pt", map_location="cpu", weights_only=True))
            return model.eval()
        backbone = load_backbone(model_dir / "backbone")
        if cfg.pretrained_text_encoder:
            text_encoder = PretrainedTextEncoder(model_dir / "text_encoder")
        else:
            d = cfg.dims
            text_encoder = TextEncoder(cfg.vocab_size, cfg.max_text_tokens, d.text_dim, d.text_layers)
            state = torch.load(model_dir / "text_encoder.pt", map_location="cpu", weights_only=True)
            text_encoder.load_state_dict(state)
        return cls(cfg, backbone, text_encoder).eval()


BACKBONES = {cls.__name__: cls for cls in (CogVideoXTransformer3DModel, ConvVideoBackbone)}


def load_backbone(path: str | Path) -> CogVideoXTransformer3DModel | ConvVideoBackbone:
    """A backbone from a local diffusers directory, of the class its config.json names."""
    config = Path(path) / "config.json"
    if not config.exists():
        raise FileNotFoundError(f"{path}: no config.json (expected a diffusers model dir)")
    name = json.loads(config.read_text()).get("_class_name")
    if name not in BACKBONES:
        raise ValueError(f"{config}: backbone class {name!r} is not one of {sorted(BACKBONES)}")
    return BACKBONES[name].from_pretrained(str(path), local_files_only=True)


def _check_backbone(backbone: CogVideoXTransformer3DModel, cfg: ModelConfig, text_dim: int) -> None:
    c = backbone.config
    problems = []
    if c.in_channels != cfg.channels:
        problems.append(
            f"backbone in_channels {c.in_channels} != {cfg.channels} channels of the training space"
        )
    if c.text_embed_dim != text_dim:
        problems.append(f"backbone text_embed_dim {c.text_embed_dim} != text encoder width {text_dim}")
    if c.max_text_seq_length != cfg.max_text_tokens:
        problems.append(
            f"backbone max_text_seq_length {c.max_text_seq_length} != "
            f"train.max_text_tokens {cfg.max_text_tokens}"
        )
    multiple = spatial_multiple(c.patch_size, c.get("channels", ()))
    if cfg.height % multiple or cfg.width % multiple:
        problems.append(f"size {cfg.height}x{cfg.width} is not divisible by the backbone's {multiple}")
    if problems:
        raise ValueError("backbone does not fit: " + "; ".join(problems))


def size_table(vocab_size: int = 64, max_text_tokens: int = 16) -> str:
    """The named sizes as a markdown table, with parameter counts of networks built on the meta device (no
    memory): the backbone at a 16 x 32 x 32 x 3 input, the trained text encoder at `vocab_size` words."""
    rows = [
        "| size | backbone | layers | heads x head_dim | patch | backbone parameters "
        "| text encoder parameters |"
    ]
    rows.append("|---|---|---|---|---|---|---|")
    for name, d in MODEL_SIZES.items():
        with torch.device("meta"):
            model = TextToVideoModel(ModelConfig(name, 16, 32, 32, 3, vocab_size, max_text_tokens))
        backbone = sum(p.numel() for p in model.backbone.parameters())
        text = sum(p.numel() for p in model.text_encoder.parameters())
        kind = f"conv U-Net {'/'.join(map(str, d.channels))}" if d.backbone == "conv" else "CogVideoX"
        rows.append(
            f"| `{name}` | {kind} | {d.layers} | {d.heads} x {d.head_dim} | {d.patch_size} | "
            f"{_count(backbone)} | {_count(text)} |"
        )
    return "\n".join(rows)


def _count(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.2f}M"
