"""The space the model trains in: pixels (the tiny demo) or the latents of a frozen video autoencoder.

The autoencoder is loaded from a local diffusers directory (`train.vae_path`) with the real loading code:
`AutoencoderKL` (an image VAE, applied frame by frame) or `AutoencoderKLCogVideoX` (a causal video VAE that
also compresses time: 1 + 4k frames -> 1 + k latent frames). Latents are the distribution mean times the
VAE's scaling factor, so the cache is deterministic.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

SUPPORTED = ("AutoencoderKL", "AutoencoderKLCogVideoX")


@dataclass(frozen=True)
class Compression:
    """How the autoencoder maps a (T, 3, H, W) clip to (T', channels, H / spatial, W / spatial)."""

    temporal: int
    spatial: int
    channels: int

    def latent_frames(self, frames: int) -> int:
        return frames if self.temporal == 1 else (frames - 1) // self.temporal + 1

    def problems(self, name: str, frames: int, width: int, height: int, patch_size: int) -> list[str]:
        """Why clips of bucket `name` (`frames` x `width` x `height`) do not fit this autoencoder and a
        backbone with `patch_size`."""
        out = []
        if self.temporal > 1 and (frames - 1) % self.temporal:
            fix = (frames - 1) // self.temporal * self.temporal + 1
            out.append(
                f"clip.buckets {name}: num_frames {frames} does not fit the autoencoder's temporal "
                f"compression {self.temporal}: use 1 + {self.temporal}k frames, e.g. {fix} or "
                f"{fix + self.temporal}"
            )
        step = self.spatial * patch_size
        if width % step or height % step:
            out.append(
                f"clip.buckets {name}: width and height must be divisible by autoencoder downsampling "
                f"{self.spatial} x the backbone's {patch_size} = {step}; use e.g. "
                f"{max(step, width // step * step)}x{max(step, height // step * step)}"
            )
        return out


PIXELS = Compression(temporal=1, spatial=1, channels=3)


def vae_config(path: str | Path) -> dict:
    cfg_file = Path(path) / "config.json"
    if not cfg_file.exists():
        raise FileNotFoundError(
            f"train.vae_path {path}: no config.json (expected a diffusers autoencoder dir)"
        )
    cfg = json.loads(cfg_file.read_text())
    if cfg.get("_class_name") not in SUPPORTED:
        raise ValueError(
            f"train.vae_path {path}: _class_name {cfg.get('_class_name')!r} is not supported; "
            f"use one of {SUPPORTED}"
        )
    return cfg


def compression(path: str | Path | None) -> Compression:
    """Read from the autoencoder's config.json alone (cheap: used to validate params at start-up)."""
    if path is None:
        return PIXELS
    cfg = vae_config(path)
    return Compression(
        temporal=int(cfg.get("temporal_compression_ratio", 1)),
        spatial=2 ** (len(cfg["block_out_channels"]) - 1),
        channels=int(cfg["latent_channels"]),
    )


class Autoencoder(nn.Module):
    """Frozen. encode: (B, T, 3, H, W) in [-1, 1] -> (B, T', c, h, w); decode: the reverse."""

    def __init__(self, path: str | Path | None):
        super().__init__()
        self.compression = compression(path)
        self.vae = None
        if path is not None:
            import diffusers

            cls = getattr(diffusers, vae_config(path)["_class_name"])
            self.vae = cls.from_pretrained(str(path), local_files_only=True).eval().requires_grad_(False)
            self.scale = float(self.vae.config.scaling_factor)
            self.video = self.compression.temporal > 1

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        if self.vae is None:
            return x
        b, t = x.shape[:2]
        if self.video:
            z = self.vae.encode(x.permute(0, 2, 1, 3, 4)).latent_dist.mode()  # (B, c, T', h, w)
            return z.permute(0, 2, 1, 3, 4) * self.scale  # (B, T', c, h, w)
        z = self.vae.encode(x.flatten(0, 1)).latent_dist.mode()  # (B*T, c, h, w)
        return z.unflatten(0, (b, t)) * self.scale

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        if self.vae is None:
            return z
        b, t = z.shape[:2]
        z = z / self.scale
        if self.video:
            return self.vae.decode(z.permute(0, 2, 1, 3, 4)).sample.permute(0, 2, 1, 3, 4)
        return self.vae.decode(z.flatten(0, 1)).sample.unflatten(0, (b, t))
