import pytest
import torch
from torch import nn

from reelforge.config import SchedulerConfig
from reelforge.diffusion import RectifiedFlow
from reelforge.model import ModelConfig, TextToVideoModel

CFG = ModelConfig(
    size="tiny", num_frames=4, height=16, width=16, channels=3, vocab_size=20, max_text_tokens=6
)


def test_model_shapes_and_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = TextToVideoModel(CFG).eval()
    x, t, ids = torch.randn(2, 4, 3, 16, 16), torch.tensor([10.0, 900.0]), torch.randint(0, 20, (2, 6))
    out = model(x, t, ids)
    assert out.shape == x.shape
    model.save_pretrained(tmp_path)
    again = TextToVideoModel.from_pretrained(tmp_path)
    assert torch.equal(again(x, t, ids), out)


def test_patch_size_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="divisible by patch_size"):
        TextToVideoModel(ModelConfig("tiny", 4, 18, 16, 3, 20, 6))


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
    flow = RectifiedFlow(SchedulerConfig(prediction=prediction))
    x0 = torch.rand(1, 4, 3, 8, 8) * 2 - 1
    ids = torch.zeros(1, 6, dtype=torch.long)
    out = flow.sample(Oracle(x0, prediction), ids, ids, torch.randn(1, 4, 3, 8, 8), steps=10, guidance=3.0)
    assert torch.allclose(out, x0, atol=1e-4)


@pytest.mark.parametrize("prediction", ["sample", "velocity"])
def test_training_loss_is_zero_for_the_oracle_and_positive_otherwise(prediction):
    flow = RectifiedFlow(SchedulerConfig(prediction=prediction))
    x0 = torch.rand(3, 4, 3, 8, 8)
    ids = torch.zeros(3, 6, dtype=torch.long)
    torch.manual_seed(0)
    assert flow.training_loss(Oracle(x0, prediction), x0, ids) == pytest.approx(0, abs=1e-8)
    assert flow.training_loss(Oracle(x0 + 0.1, prediction), x0, ids) > 1e-4


def test_versions_saved_in_the_single_file_layout_still_load(tmp_path):
    """Champions registered before the diffusers layout (config.json + model.pt) must stay loadable."""
    import json
    from dataclasses import asdict

    torch.manual_seed(0)
    model = TextToVideoModel(CFG).eval()
    (tmp_path / "config.json").write_text(json.dumps(asdict(CFG)))
    torch.save(model.state_dict(), tmp_path / "model.pt")
    x, t, ids = torch.randn(1, 4, 3, 16, 16), torch.tensor([10.0]), torch.randint(0, 20, (1, 6))
    assert torch.equal(TextToVideoModel.from_pretrained(tmp_path)(x, t, ids), model(x, t, ids))
