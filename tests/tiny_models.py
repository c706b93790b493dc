"""Tiny random stand-ins for pretrained weights, saved the way the real files are, so tests exercise the
real loading code (torch.jit.load) without any download; and a tiny random champion in the registry, for
serving."""

from __future__ import annotations

from pathlib import Path

import mlflow
import torch
from mlflow import MlflowClient
from torch import nn

from reelforge.config import RegistryParams, SchedulerParams
from reelforge.model.autoencoder import Autoencoder
from reelforge.model.backbone import ModelConfig, TextToVideoModel
from reelforge.model.pipeline import TextToVideoPipeline
from reelforge.model.text import PromptTokenizer, train_tokenizer
from reelforge.registry.models import log_and_register
from reelforge.registry.tracking import setup


class TinyI3D(nn.Module):
    """Same call signature and output as the Kinetics-400 I3D TorchScript used for FVD."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 8, kernel_size=3, stride=(2, 8, 8))
        self.fc = nn.Linear(8, 400)

    def forward(
        self, x: torch.Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False
    ) -> torch.Tensor:
        assert x.shape[1] == 3 and x.shape[-1] == 224 and x.shape[-2] == 224
        h = torch.relu(self.conv(x)).mean(dim=(2, 3, 4))  # (B, 8)
        logits = self.fc(h)  # (B, 400)
        return logits if return_features else torch.softmax(logits, dim=-1)


def save_tiny_i3d(path: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    torch.jit.script(TinyI3D()).save(str(path))
    return path


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable-character table (the base of a byte-level BPE vocab)."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs), strict=True))


def save_tiny_clip(out_dir: Path, seed: int = 0) -> Path:
    """A random 2-layer CLIP with a byte-level tokenizer (no merges), saved with save_pretrained."""
    import json

    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    out_dir.mkdir(parents=True, exist_ok=True)
    chars = list(_bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    (out_dir / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (out_dir / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(out_dir / "vocab.json"), str(out_dir / "merges.txt"))
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    torch.manual_seed(seed)
    layers = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    config = CLIPConfig(
        text_config=dict(vocab_size=len(tokens), max_position_embeddings=77, **layers),
        vision_config=dict(image_size=32, patch_size=8, **layers),
        projection_dim=16,
    )
    CLIPModel(config).save_pretrained(out_dir)
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(out_dir)
    return out_dir


def save_tiny_vae(out_dir: Path, video: bool = False, seed: int = 0) -> Path:
    """A random diffusers autoencoder saved with save_pretrained: AutoencoderKL (2x spatial, 4 latent
    channels) or AutoencoderKLCogVideoX (also 4x temporal: 1 + 4k frames -> 1 + k latent frames)."""
    from diffusers import AutoencoderKL, AutoencoderKLCogVideoX

    torch.manual_seed(seed)
    if video:
        vae = AutoencoderKLCogVideoX(
            down_block_types=("CogVideoXDownBlock3D",) * 3,
            up_block_types=("CogVideoXUpBlock3D",) * 3,
            block_out_channels=(8, 8, 8),
            latent_channels=4,
            layers_per_block=1,
            norm_num_groups=4,
            temporal_compression_ratio=4,
        )
    else:
        vae = AutoencoderKL(
            down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2,
            block_out_channels=(8, 16),
            latent_channels=4,
            layers_per_block=1,
            norm_num_groups=4,
        )
    vae.save_pretrained(out_dir)
    return out_dir


def register_tiny_champion(root: Path, registry: RegistryParams, prompts: list[str]) -> str:
    """A tiny random text-to-video model (trained shapes 32x32x8 and 48x32x8), saved under root/t2v,
    registered in the tracking store and given the champion alias, as the promote stage leaves one: its
    version."""
    setup(registry)
    torch.manual_seed(0)
    tokenizer = PromptTokenizer(train_tokenizer(prompts), 12)
    model = TextToVideoModel(ModelConfig("tiny-conv", 8, 32, 32, 3, tokenizer.tok.get_vocab_size(), 12))
    pipeline = TextToVideoPipeline(
        model.eval(), tokenizer, Autoencoder(None), SchedulerParams(), 8.0, 8, 4, 3.0, shapes=[(48, 32, 8)]
    )
    pipeline.save_pretrained(root / "t2v")
    with mlflow.start_run():
        version = log_and_register(root / "t2v", registry.model_name)
    MlflowClient().set_registered_model_alias(registry.model_name, registry.alias, version)
    return version
