"""A small convolutional video backbone for little data and little compute: the CPU demo's default.

A transformer over 4x4 patches, trained from scratch on a few dozen clips, learns no spatial coherence in a
CPU budget (it draws scattered patches; docs/training.md has the measurements). Convolutions bring locality
for free. This is a factorised 3D U-Net in the spirit of video diffusion U-Nets (spatial 2D convolutions
per frame, temporal 1D convolutions per pixel, attention at the coarsest levels only):

    pixel-unshuffle 2  ->  [ResBlock + temporal conv (+ attention)] x levels, downsampling  ->  bottleneck:
    spatial self-attention, temporal self-attention, cross-attention to the text tokens  ->  mirrored
    decoder with skips  ->  pixel-shuffle 2

`attention_levels` says how many of the coarsest levels attend: 1 is the bottleneck only; 2 (the demo's
`tiny-conv`) adds the same attention after the next level's down and up blocks (8 x 8 at 32 x 32), where
the text reaches the frames at four times as many positions: the demo model's background and colour
improved with it (docs/training.md).

Every block is FiLM-conditioned on the timestep, the pooled text and the frame's index (sinusoidal, so any
frame count works). With `text_prior_grid`, a `TextPrior` draws from the text alone a coarse map per frame,
given as input and added to the output at high noise: where the prompt's shape is, which the rest learns
slowly.

Same call as diffusers' CogVideoX transformer, and saved the same way (`save_pretrained` /
`from_pretrained`, a `config.json` with `_class_name`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import get_timestep_embedding
from diffusers.models.modeling_utils import ModelMixin
from torch import nn


def _groups(channels: int) -> int:
    return min(8, channels // 4)


class ResBlock(nn.Module):
    """Two 3x3 convolutions per frame, FiLM from the conditioning between them; then a temporal 1D
    convolution (kernel 3) per pixel, zero-initialised so each block starts as an identity over time."""

    def __init__(self, cin: int, cout: int, cond_dim: int):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(_groups(cin), cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.film = nn.Linear(cond_dim, 2 * cout)
        self.norm2, self.conv2 = nn.GroupNorm(_groups(cout), cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        self.temporal = nn.Conv1d(cout, cout, 3, padding=1)
        nn.init.zeros_(self.temporal.weight)
        nn.init.zeros_(self.temporal.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, frames: int) -> torch.Tensor:
        """x (B*T, C, H, W), cond (B*T, cond_dim)."""
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.film(cond)[:, :, None, None].chunk(2, dim=1)
        h = self.conv2(F.silu(self.norm2(h) * (1 + scale) + shift))
        h = h + self.skip(x)
        bt, c, hh, ww = h.shape
        seq = h.view(bt // frames, frames, c, hh * ww).permute(0, 3, 2, 1).reshape(-1, c, frames)
        mixed = self.temporal(F.silu(seq)).view(bt // frames, hh * ww, c, frames).permute(0, 3, 2, 1)
        return h + mixed.reshape(bt, c, hh, ww)


class Bottleneck(nn.Module):
    """Attention where it is cheap (the coarsest grids): over space per frame, over time per position, and
    from every position to the text tokens."""

    def __init__(self, dim: int, text_dim: int, heads: int):
        super().__init__()
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(3))
        self.spatial = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.temporal = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.cross = nn.MultiheadAttention(dim, heads, kdim=text_dim, vdim=text_dim, batch_first=True)

    def forward(self, x: torch.Tensor, text: torch.Tensor, frames: int) -> torch.Tensor:
        bt, c, h, w = x.shape
        b = bt // frames
        s = x.flatten(2).transpose(1, 2)  # (B*T, HW, C)
        n = self.norms[0](s)
        s = s + self.spatial(n, n, n, need_weights=False)[0]
        t = s.view(b, frames, h * w, c).transpose(1, 2).reshape(b * h * w, frames, c)
        n = self.norms[1](t)
        t = t + self.temporal(n, n, n, need_weights=False)[0]
        s = t.view(b, h * w, frames, c).transpose(1, 2).reshape(bt, h * w, c)
        keys = text.repeat_interleave(frames, dim=0)  # (B*T, L, text_dim)
        s = s + self.cross(self.norms[2](s), keys, keys, need_weights=False)[0]
        return s.transpose(1, 2).reshape(bt, c, h, w)


class TextPool(nn.Module):
    """`queries` learned queries attend over the text tokens (PAD included: it is a learned token):
    (B, L, D) -> (B, queries x D), the text in the per-frame conditioning. A mean over the tokens drowns a
    single word: the demo's mean-pooled text moved 8.2 between colours and 0.55 between directions, and the
    model drew the same trajectory whatever direction was asked (docs/training.md)."""

    def __init__(self, dim: int, queries: int, heads: int):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(queries, dim) * dim**-0.5)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        q = self.queries[None].expand(len(text), -1, -1).to(text.dtype)  # (B, Q, D)
        return self.attn(q, text, text, need_weights=False)[0].flatten(1)  # (B, Q * D)


PRIOR_DATA_STD = 0.5  # the clean sample's spread about the text's mean, in [-1, 1] pixels (EDM's sigma_data)


def prior_weight(sigma: torch.Tensor) -> torch.Tensor:
    """How much of x0's best estimate the text's mean is at noise level sigma, were x0 Gaussian about it:
    x_t = (1 - sigma) x0 + sigma noise gives sigma^2 / (sigma^2 + (1 - sigma)^2 std^2). 1 at pure noise, 0
    at none: the network is left the rest, and need not cancel the mean where the input shows the clip."""
    return sigma**2 / (sigma**2 + (1 - sigma) ** 2 * PRIOR_DATA_STD**2)


class TextPrior(nn.Module):
    """What the text alone says each frame holds: an MLP from every text token (flattened, so no pooling
    dilutes one word among the rest) to `KNOTS` coarse `grid` x `grid` maps, spread evenly over the clip and
    interpolated linearly between them (any frame count), each resized to the frame.

    From pure noise the best prediction is the mean of the clips whose captions have the prompt's words:
    where the shape starts and where it goes. The backbone's convolutions and attention know position only
    from their zero padding, and their pooled text barely moves with one word; trained at pure noise they
    took 1,200 steps to read the direction word, this path 300 (docs/training.md). Knots, not an MLP fed the
    frame's place: that one had to learn the product of words and place through one hidden layer, and drew
    the same smear along the path in every frame. The map is given to the network as input channels and
    added to its output weighted by `prior_weight(sigma)`: all of it at pure noise, none without noise.
    Zero at init."""

    KNOTS = 4

    def __init__(self, text_dim: int, channels: int, grid: int, hidden: int = 256):
        super().__init__()
        self.channels, self.grid = channels, grid
        self.mlp = nn.Sequential(
            nn.Linear(text_dim, hidden), nn.SiLU(), nn.Linear(hidden, self.KNOTS * channels * grid * grid)
        )
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, text: torch.Tensor, frames: int, height: int, width: int) -> torch.Tensor:
        """text (B, D) -> (B*T, channels, height, width)."""
        b = len(text)
        knots = self.mlp(text).view(b, self.KNOTS, -1).transpose(1, 2)  # (B, C*g*g, KNOTS)
        maps = (
            F.interpolate(knots, size=frames, mode="linear", align_corners=True)
            if frames > 1
            else knots[..., :1]
        )
        maps = maps.transpose(1, 2).reshape(b * frames, self.channels, self.grid, self.grid)
        return F.interpolate(maps, size=(height, width), mode="bilinear", align_corners=False)


class ConvVideoBackbone(ModelMixin, ConfigMixin):
    """(B, T, C, H, W) noisy video, (B, L, text_embed_dim) text, (B,) timestep -> (B, T, C, H, W)."""

    _supports_gradient_checkpointing = False

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        text_embed_dim: int = 64,
        max_text_seq_length: int = 16,
        channels: tuple[int, ...] = (32, 64, 128),
        time_embed_dim: int = 128,
        heads: int = 4,
        patch_size: int = 2,  # pixel-unshuffle factor: H and W must be divisible by patch_size * 2^(levels-1)
        attention_levels: int = 1,  # the coarsest levels with attention: 1 = the bottleneck only
        text_pool_queries: int = 0,  # the text in the conditioning: 0 = the mean token, else TextPool
        text_prior_grid: int = 0,  # 0: none; else TextPrior's map, grid x grid per frame
        text_prior_timesteps: int = 1000,  # the timestep of pure noise (scheduler.num_train_timesteps)
    ):
        super().__init__()
        self.freq_dim = channels[0]
        self.text_pool = TextPool(text_embed_dim, text_pool_queries, heads) if text_pool_queries else None
        pooled = text_embed_dim * max(text_pool_queries, 1)
        self.cond = nn.Sequential(
            nn.Linear(2 * self.freq_dim + pooled, time_embed_dim),
            nn.SiLU(),
            nn.Linear(time_embed_dim, time_embed_dim),
        )
        self.prior = (
            TextPrior(max_text_seq_length * text_embed_dim, out_channels, text_prior_grid)
            if text_prior_grid
            else None
        )
        prior_channels = out_channels if text_prior_grid else 0
        self.conv_in = nn.Conv2d((in_channels + prior_channels) * patch_size**2, channels[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        cin = channels[0]
        for i, c in enumerate(channels):
            self.down.append(ResBlock(cin, c, time_embed_dim))
            self.downsample.append(nn.Conv2d(c, c, 3, stride=2, padding=1) if i < len(channels) - 1 else None)
            cin = c
        self.mid = Bottleneck(channels[-1], text_embed_dim, heads)
        self.mid_block = ResBlock(channels[-1], channels[-1], time_embed_dim)
        self.up = nn.ModuleList()
        for c in reversed(channels):
            self.up.append(ResBlock(cin + c, c, time_embed_dim))
            cin = c
        # Above the bottleneck, levels len(channels) - attention_levels ... len(channels) - 2 get the same
        # attention after their down and up blocks: text reaches each frame at a finer grid than 4 x 4.
        if not 1 <= attention_levels <= len(channels):
            raise ValueError(f"attention_levels {attention_levels} must be 1 to {len(channels)} (the levels)")
        attended = range(len(channels) - attention_levels, len(channels) - 1)
        self.attention = nn.ModuleDict(
            {f"{side}{i}": Bottleneck(channels[i], text_embed_dim, heads) for i in attended for side in "du"}
        )
        self.upsample = nn.ModuleList(nn.Conv2d(c, c, 3, padding=1) for c in reversed(channels[1:]))
        self.norm_out = nn.GroupNorm(_groups(channels[0]), channels[0])
        self.conv_out = nn.Conv2d(channels[0], out_channels * patch_size**2, 3, padding=1)

    def _attend(self, name: str, x: torch.Tensor, text: torch.Tensor, frames: int) -> torch.Tensor:
        return self.attention[name](x, text, frames) if name in self.attention else x

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        return_dict: bool = False,
    ) -> tuple[torch.Tensor]:
        b, frames, c, h, w = hidden_states.shape
        p = self.config.patch_size
        step = get_timestep_embedding(timestep.expand(b).float(), self.freq_dim)  # (B, F)
        index = torch.arange(frames, device=hidden_states.device, dtype=torch.float32)
        frame = get_timestep_embedding(index, self.freq_dim)  # (T, F)
        text = encoder_hidden_states.float()
        text = self.text_pool(text) if self.text_pool else text.mean(dim=1)  # (B, text_dim [x queries])
        cond = torch.cat(
            [
                step[:, None].expand(b, frames, -1),
                frame[None].expand(b, frames, -1),
                text[:, None].expand(b, frames, -1),
            ],
            dim=-1,
        ).to(hidden_states.dtype)
        cond = self.cond(cond).reshape(b * frames, -1)

        x = hidden_states.reshape(b * frames, c, h, w)
        prior = None
        if self.prior is not None:
            tokens = encoder_hidden_states.shape[1]
            if tokens != self.config.max_text_seq_length:
                raise ValueError(
                    f"{tokens} text tokens; this backbone's text prior reads exactly "
                    f"max_text_seq_length {self.config.max_text_seq_length} (pad the prompt)"
                )
            prior = self.prior(encoder_hidden_states.float().flatten(1), frames, h, w).to(x.dtype)
            x = torch.cat([x, prior], dim=1)
            sigma = (timestep.expand(b).float() / self.config.text_prior_timesteps).clamp(0, 1)
            weight = prior_weight(sigma).repeat_interleave(frames)[:, None, None, None].to(x.dtype)
        x = self.conv_in(F.pixel_unshuffle(x, p))
        skips, levels = [], len(self.down)
        for level, (block, down) in enumerate(zip(self.down, self.downsample, strict=True)):
            x = self._attend(f"d{level}", block(x, cond, frames), encoder_hidden_states, frames)
            skips.append(x)
            if down is not None:
                x = down(x)
        x = self.mid_block(self.mid(x, encoder_hidden_states, frames), cond, frames)
        for i, block in enumerate(self.up):
            x = block(torch.cat([x, skips.pop()], dim=1), cond, frames)
            x = self._attend(f"u{levels - 1 - i}", x, encoder_hidden_states, frames)
            if i < len(self.upsample):
                x = self.upsample[i](F.interpolate(x, scale_factor=2.0, mode="nearest"))
        x = self.conv_out(F.silu(self.norm_out(x)))
        out = F.pixel_shuffle(x, p)
        out = (out if prior is None else out + weight * prior).reshape(b, frames, -1, h, w)
        return (out,)
