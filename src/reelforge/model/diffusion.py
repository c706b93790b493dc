"""Rectified flow (flow matching), the noise process of SD3, CogVideoX-1.5-era and Wan-style video models.

Chosen over DDPM-family schedules because its straight paths sample well in few Euler steps (the CPU demo
samples with ~20) and its loss target is simple. Sampling uses diffusers' FlowMatchEulerDiscreteScheduler.

    x_t = (1 - s) x0 + s * noise,   s in [0, 1]       (s: sigma, 1 = pure noise)
    velocity v = noise - x0 = (x_t - x0) / s           (dx_t / ds)

The network predicts either v directly or the clean sample x0 ("x-prediction", params scheduler.prediction);
the sampler always integrates v, converting an x0 prediction with the identity above. With x-prediction
the final Euler step lands exactly on the network's clean estimate, so no residual noise is left behind.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from torch import nn

from reelforge.config import SchedulerParams

SIGMA_FLOOR = 0.05  # caps the 1/s^2 weight of the x-prediction loss near s = 0


class RectifiedFlow:
    def __init__(self, cfg: SchedulerParams):
        self.cfg = cfg

    def _shift(self, sigma: torch.Tensor) -> torch.Tensor:
        s = self.cfg.shift
        return s * sigma / (1 + (s - 1) * sigma)

    def training_loss(
        self,
        model: nn.Module,
        x0: torch.Tensor,
        text_ids: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """x0 (B, T, C, H, W); sigmas drawn logit-normal (SD3, eq. 19) then shifted. All randomness comes
        from `generator` when given, so a step can be replayed exactly (resume)."""
        b = x0.shape[0]
        u = torch.randn(b, device=x0.device, generator=generator)
        sigma = self._shift(torch.sigmoid(u))  # (B,)
        noise = self.noise(x0.shape, generator, x0.device).to(x0.dtype)
        s = sigma.view(b, 1, 1, 1, 1)
        x_t = (1 - s) * x0 + s * noise
        pred = model(x_t, sigma * self.cfg.num_train_timesteps, text_ids)
        if self.cfg.prediction == "sample":
            # x-prediction with the loss in velocity space (Li & He 2025, "Back to Basics"): this
            # weights low-noise detail by 1/s^2. Demo at 500 steps, against an x0-space loss:
            # clip_score_ref 49.1 vs 38.2, caption_match_ref 0.46 vs 0.36, fvd_ref 355 vs 492; and on the
            # pixel check (docs/training.md) the x0-space loss was no better at 200 and 400 steps.
            pred = (x_t - pred) / s.clamp(min=SIGMA_FLOOR)
        error = (pred.float() - (noise - x0).float()) ** 2
        if self.cfg.motion_loss_weight:
            error = error * self.motion_weights(x0.float())
        return error.mean()

    def motion_weights(self, x0: torch.Tensor) -> torch.Tensor:
        """(B, T, 1, H, W) loss weights, mean 1 per clip: 1 + w x the change of each position to its neighbour
        frames (the larger of the two), over the clip's mean change. A small moving shape is a small part
        of an unweighted loss; this makes where things move count."""
        d = (x0[:, 1:] - x0[:, :-1]).abs().mean(dim=2, keepdim=True)  # (B, T-1, 1, H, W)
        change = torch.maximum(torch.cat([d[:, :1], d], 1), torch.cat([d, d[:, -1:]], 1))
        change = change / change.mean(dim=(1, 2, 3, 4), keepdim=True).clamp(min=1e-6)
        w = 1 + self.cfg.motion_loss_weight * change
        return w / w.mean(dim=(1, 2, 3, 4), keepdim=True)

    def noise(
        self,
        shape: tuple[int, ...],
        generator: torch.Generator | None = None,
        device: torch.device | None = None,
    ) -> torch.Tensor:
        """Unit-variance Gaussian noise (B, T, C, H, W) whose frames correlate by frame_noise_correlation."""
        noise = torch.randn(shape, device=device, generator=generator)
        c = self.cfg.frame_noise_correlation
        if c == 0.0:
            return noise
        shared = torch.randn((shape[0], 1, *shape[2:]), device=device, generator=generator)
        return c**0.5 * shared + (1 - c) ** 0.5 * noise

    def velocity(
        self, model: nn.Module, x_t: torch.Tensor, t: torch.Tensor, text_ids: torch.Tensor
    ) -> torch.Tensor:
        """The network's velocity estimate at timestep t (B,) = sigma * num_train_timesteps."""
        out = model(x_t, t, text_ids)
        if self.cfg.prediction == "velocity":
            return out
        sigma = (t / self.cfg.num_train_timesteps).view(-1, *[1] * (x_t.dim() - 1))
        return (x_t - out) / sigma

    @torch.no_grad()
    def sample(
        self,
        model: nn.Module,
        text_ids: torch.Tensor,
        null_ids: torch.Tensor,
        noise: torch.Tensor,
        steps: int,
        guidance: float,
        callback: Callable[[int, int], None] | None = None,
    ) -> torch.Tensor:
        """Euler integration from noise (B, T, C, H, W) at s=1 to data at s=0; returns x0 in about [-1, 1].

        Classifier-free guidance: v = v_null + guidance * (v_text - v_null). `callback(done, steps)` runs
        after every step (progress reports; an exception it raises stops sampling).
        """
        scheduler = FlowMatchEulerDiscreteScheduler(
            num_train_timesteps=self.cfg.num_train_timesteps, shift=self.cfg.shift
        )
        scheduler.set_timesteps(steps)
        x = noise.to(text_ids.device)
        both = torch.cat([null_ids, text_ids]) if guidance != 1.0 else text_ids
        for i, t in enumerate(scheduler.timesteps):
            x_in = torch.cat([x, x]) if guidance != 1.0 else x
            v = self.velocity(model, x_in, t.expand(x_in.shape[0]).to(x.device), both)
            if guidance != 1.0:
                v_null, v_text = v.chunk(2)
                v = v_null + guidance * (v_text - v_null)
            x = scheduler.step(v, t, x).prev_sample
            if callback is not None:
                callback(i + 1, steps)
        return x
