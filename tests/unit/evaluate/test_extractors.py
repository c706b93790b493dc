from __future__ import annotations

import numpy as np
import pytest
import torch

from reelforge.evaluate.extractors import I3DFeatures
from reelforge.evaluate.metrics import feature_stats, frechet_distance
from reelforge.files import file_sha256
from tests.tiny_models import save_tiny_i3d


@pytest.fixture(scope="module")
def i3d_file(tmp_path_factory):
    return save_tiny_i3d(tmp_path_factory.mktemp("i3d") / "i3d_torchscript.pt")


@pytest.fixture(scope="module")
def i3d(i3d_file) -> I3DFeatures:
    return I3DFeatures(i3d_file)


def test_standard_preprocessing():
    videos = np.zeros((2, 16, 32, 48, 3), np.uint8)
    videos[..., 0] = 255
    x = I3DFeatures.preprocess(videos)
    assert x.shape == (2, 3, 16, 224, 224)
    assert torch.allclose(x[:, 0], torch.ones(1)) and torch.allclose(x[:, 1:], -torch.ones(1))


def test_loads_torchscript_and_yields_400d_float64_logits(i3d, i3d_file):
    videos = np.random.default_rng(0).integers(0, 255, (3, 16, 32, 32, 3), dtype=np.uint8)
    feats = i3d(videos)
    assert feats.shape == (3, 400) and feats.dtype == torch.float64
    assert torch.allclose(i3d(videos[:1]), feats[:1], atol=1e-5)  # batching does not change a clip's features
    assert i3d.sha256 == file_sha256(i3d_file)
    assert i3d.name.startswith("i3d-torchscript-") and i3d.metric == "fvd_custom"


def test_fewer_than_ten_frames_is_a_clear_error(i3d):
    with pytest.raises(ValueError, match="at least 10 frames"):
        i3d(np.zeros((2, 8, 32, 32, 3), np.uint8))


def test_missing_weights_file_names_the_setting(tmp_path):
    with pytest.raises(FileNotFoundError, match="evaluate.i3d_path"):
        I3DFeatures(tmp_path / "nope.pt")


def test_fvd_of_identical_sets_is_zero_and_shifted_sets_is_positive(i3d):
    rng = np.random.default_rng(1)
    a = rng.integers(0, 255, (12, 10, 16, 16, 3), dtype=np.uint8)
    fa = i3d(a)
    assert frechet_distance(*feature_stats(fa), *feature_stats(fa)) == pytest.approx(0, abs=1e-6)
    fb = i3d(np.clip(a.astype(int) + 80, 0, 255).astype(np.uint8))
    assert frechet_distance(*feature_stats(fa), *feature_stats(fb)) > 1e-3


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from reelforge.evaluate.extractors import CLIPScorer
    from tests.tiny_models import save_tiny_clip

    return CLIPScorer(save_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny-clip"))


def test_clip_score_loads_local_dir_and_matches_the_definition(clip):
    from transformers import CLIPModel, CLIPProcessor

    videos = np.random.default_rng(0).integers(0, 255, (2, 3, 32, 32, 3), dtype=np.uint8)
    prompts = ["a red circle moves left", "a blue square"]
    scores = clip(videos, prompts)
    assert scores.shape == (2,) and scores.dtype == torch.float64 and (scores >= 0).all()
    # Definition: 100 * max(cos(image, text), 0) per frame, averaged over the video's frames.
    model = clip.metric.model.clip
    proc: CLIPProcessor = clip.metric.processor
    assert isinstance(model, CLIPModel)
    with torch.no_grad():
        inputs = proc(text=[prompts[0]] * 3, images=list(videos[0]), return_tensors="pt", padding=True)
        img = model.get_image_features(pixel_values=inputs["pixel_values"]).pooler_output
        txt = model.get_text_features(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        cos = torch.nn.functional.cosine_similarity(img, txt.pooler_output, dim=-1)
    assert scores[0].item() == pytest.approx((100 * cos.clamp(min=0)).mean().item(), rel=1e-4)


def test_clip_dir_without_weights_names_the_setting(tmp_path):
    from reelforge.evaluate.extractors import CLIPScorer

    with pytest.raises(FileNotFoundError, match="evaluate.clip_path"):
        CLIPScorer(tmp_path)
