from __future__ import annotations

import pytest
import torch
from torch import nn

from reelforge.config import SchedulerParams
from reelforge.model.diffusion import RectifiedFlow


class Oracle(nn.Module):
    """Predicts the true clean sample (or the true velocity) for a known x0: the sampler must land on x0."""

    def __init__(self, x0: torch.Tensor, prediction: str):
        super().__init__()
        self.x0, self.prediction = x0, prediction

    def forward(self, x_t, t, ids):
        if self.prediction == "sample":
            return self.x0.expand_as(x_t)
        sigma = (t / 1000).view(-1, 1, 1, 1, 1)
        noise = (x_t - (1 - sigma) * self.x0) / sigma
        return noise - self.x0


@pytest.mark.parametrize("prediction", ["sample", "velocity"])
def test_sampler_recovers_the_target_with_an_oracle(prediction):
    flow = RectifiedFlow(SchedulerParams(prediction=prediction))
    x0 = torch.rand(1, 4, 3, 8, 8) * 2 - 1
    ids = torch.zeros(1, 6, dtype=torch.long)
    out = flow.sample(Oracle(x0, prediction), ids, ids, torch.randn(1, 4, 3, 8, 8), steps=10, guidance=3.0)
    assert torch.allclose(out, x0, atol=1e-4)


@pytest.mark.parametrize("correlation", [0.0, 0.5])
@pytest.mark.parametrize("prediction", ["sample", "velocity"])
def test_training_loss_is_zero_for_the_oracle_and_positive_otherwise(prediction, correlation):
    flow = RectifiedFlow(SchedulerParams(prediction=prediction, frame_noise_correlation=correlation))
    x0 = torch.rand(3, 4, 3, 8, 8)
    ids = torch.zeros(3, 6, dtype=torch.long)
    torch.manual_seed(0)
    assert flow.training_loss(Oracle(x0, prediction), x0, ids) == pytest.approx(0, abs=1e-8)
    assert flow.training_loss(Oracle(x0 + 0.1, prediction), x0, ids) > 1e-4


@pytest.mark.parametrize("correlation", [0.0, 0.5, 0.9])
def test_frame_noise_has_unit_variance_and_the_configured_correlation_between_frames(correlation):
    flow = RectifiedFlow(SchedulerParams(frame_noise_correlation=correlation))
    noise = flow.noise((64, 4, 3, 16, 16), torch.Generator().manual_seed(0))  # (B, T, C, H, W)
    assert noise.var().item() == pytest.approx(1.0, abs=0.02)
    frames = noise.transpose(0, 1).reshape(4, -1)  # one row per frame
    between = torch.corrcoef(frames)[~torch.eye(4, dtype=torch.bool)]
    assert between.mean().item() == pytest.approx(correlation, abs=0.02)


def test_uncorrelated_frame_noise_is_plain_randn_so_seeds_keep_their_videos():
    flow = RectifiedFlow(SchedulerParams(frame_noise_correlation=0.0))
    shape = (1, 4, 3, 8, 8)
    assert torch.equal(
        flow.noise(shape, torch.Generator().manual_seed(7)),
        torch.randn(shape, generator=torch.Generator().manual_seed(7)),
    )


def test_motion_weights_put_the_loss_where_the_clip_changes():
    flow = RectifiedFlow(SchedulerParams(motion_loss_weight=4.0))
    x0 = torch.zeros(2, 4, 3, 8, 8)
    for t in range(4):  # a bright pixel moving right one step per frame; the second clip is static
        x0[0, t, :, 2, 2 + t] = 1.0
    w = flow.motion_weights(x0)
    assert w.shape == (2, 4, 1, 8, 8) and torch.allclose(w.mean(dim=(1, 2, 3, 4)), torch.ones(2))
    assert w[0, 1, 0, 2, 3] > 3 * w[0, 1, 0, 6, 6]  # where it is (and was) against the background
    assert torch.allclose(w[1], torch.ones_like(w[1]))  # nothing moves: the plain loss
    model = nn.Identity()
    generator = torch.Generator().manual_seed(0)
    plain = RectifiedFlow(SchedulerParams()).training_loss(lambda x, t, i: model(x), x0[1:], None, generator)
    generator = torch.Generator().manual_seed(0)
    assert torch.isclose(flow.training_loss(lambda x, t, i: model(x), x0[1:], None, generator), plain)
