"""Named model sizes, one table: a leaf module (config validates `train.model_size` against it).

Parameter counts are counted from the built networks (`reelforge sizes`,
`reelforge.model.backbone.size_table`), never written by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class ModelSize:
    layers: int  # transformer blocks; for a conv backbone, resolution levels (= len(channels))
    heads: int
    head_dim: int
    patch_size: int  # transformer patch; for a conv backbone, the pixel-unshuffle factor
    time_embed_dim: int
    text_dim: int  # width of the trained text encoder (a pretrained one brings its own)
    text_layers: int
    backbone: str = "transformer"  # diffusers' CogVideoX transformer, or "conv" (reelforge.model.convnet)
    channels: tuple[int, ...] = ()  # conv: width per level, each level halving the resolution
    attention_levels: int = 1  # conv: the coarsest levels with self- and text cross-attention
    text_pool_queries: int = 0  # conv: the text in the per-frame conditioning, 0: the mean token
    text_prior_grid: int = 0  # conv: the text-only map added to the output (convnet.TextPrior), 0: none
    text_prior_timesteps: int = 1000  # conv: the timestep of pure noise, where the map weighs in whole

    @property
    def spatial_multiple(self) -> int:
        return spatial_multiple(self.patch_size, self.channels)


def spatial_multiple(patch_size: int, channels: tuple[int, ...] | list[int] = ()) -> int:
    """What height and width must be divisible by, in the model's space: the patch, and a factor 2 per
    extra level of a conv backbone (`channels`; a transformer has none)."""
    return patch_size * 2 ** max(len(channels) - 1, 0)


TINY_CONV = ModelSize(
    layers=3,
    heads=4,
    head_dim=32,
    patch_size=2,
    time_embed_dim=128,
    text_dim=64,
    text_layers=2,
    backbone="conv",
    channels=(32, 64, 128),
    attention_levels=2,  # 8 x 8 and 4 x 4 at 32 x 32
    text_pool_queries=4,  # one per attribute a demo prompt names
)


MODEL_SIZES: dict[str, ModelSize] = {
    # The CPU demo: a CogVideoX transformer over 4x4 patches, ~1 s per batch of 16 at 16x32x32 on 2 cores.
    "tiny": ModelSize(
        layers=4, heads=4, head_dim=16, patch_size=4, time_embed_dim=64, text_dim=64, text_layers=2
    ),
    # A small conv U-Net for little data on CPU: at the same step cost it draws coherent blobs where `tiny`
    # draws scattered patches (docs/training.md has the measurements).
    "tiny-conv": TINY_CONV,
    # `tiny-conv` with a text prior (convnet.TextPrior): a coarse map of where the shape is, from the words
    # alone (8 x 8: 4 x 4 pixel cells at 32 x 32). It doubles the demo's direction accuracy at 600 steps,
    # and its blobs come and go more: not the demo's default yet (docs/training.md, "A text prior").
    "tiny-conv-prior": replace(TINY_CONV, text_prior_grid=8),
    # A quick GPU smoke test.
    "small": ModelSize(
        layers=8, heads=8, head_dim=32, patch_size=2, time_embed_dim=256, text_dim=256, text_layers=4
    ),
    # CogVideoX-2B width/depth: 1-8 x 80 GB GPUs, latent space, DDP or FSDP.
    "base": ModelSize(
        layers=30, heads=30, head_dim=64, patch_size=2, time_embed_dim=512, text_dim=768, text_layers=6
    ),
    # CogVideoX-5B width/depth: 8 x 80 GB nodes, FSDP + gradient checkpointing.
    "large": ModelSize(
        layers=42, heads=48, head_dim=64, patch_size=2, time_embed_dim=512, text_dim=1024, text_layers=8
    ),
}
