from __future__ import annotations

import json

import pytest
import torch

from reelforge.config import apply_overrides
from reelforge.model.backbone import ModelConfig, TextToVideoModel, load_backbone
from reelforge.model.convnet import ConvVideoBackbone, prior_weight

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


def test_size_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="must be divisible by 8 .patch_size 2, x 2 per conv level"):
        TextToVideoModel(ModelConfig("tiny-conv", 4, 20, 16, 3, 20, 6))
    with pytest.raises(ValueError, match="must be divisible by 4 .patch_size 4"):
        TextToVideoModel(ModelConfig("tiny", 4, 18, 16, 3, 20, 6))


def test_both_backbone_kinds_build_save_and_load(tmp_path):
    from diffusers import CogVideoXTransformer3DModel

    x, t, ids = torch.randn(1, 4, 3, 16, 16), torch.tensor([500.0]), torch.randint(0, 20, (1, 6))
    for size, kind in (("tiny-conv", ConvVideoBackbone), ("tiny", CogVideoXTransformer3DModel)):
        model = TextToVideoModel(ModelConfig(size, 4, 16, 16, 3, 20, 6)).eval()
        assert isinstance(model.backbone, kind)
        model.save_pretrained(tmp_path / size)
        assert torch.equal(TextToVideoModel.from_pretrained(tmp_path / size)(x, t, ids), model(x, t, ids))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad/config.json").write_text('{"_class_name": "UNet2DModel"}')
    with pytest.raises(ValueError, match="backbone class 'UNet2DModel' is not one of"):
        load_backbone(tmp_path / "bad")


def test_versions_saved_in_the_single_file_layout_still_load(tmp_path):
    """Champions registered before the diffusers layout (config.json + model.pt) must stay loadable."""
    from dataclasses import asdict

    torch.manual_seed(0)
    model = TextToVideoModel(CFG).eval()
    (tmp_path / "config.json").write_text(json.dumps(asdict(CFG)))
    torch.save(model.state_dict(), tmp_path / "model.pt")
    x, t, ids = torch.randn(1, 4, 3, 16, 16), torch.tensor([10.0]), torch.randint(0, 20, (1, 6))
    assert torch.equal(TextToVideoModel.from_pretrained(tmp_path)(x, t, ids), model(x, t, ids))


def test_pretrained_backbone_is_fine_tuned_in_place_of_the_size_table(tmp_path):
    cfg = ModelConfig("tiny", 4, 16, 16, 3, 20, 6)
    TextToVideoModel(cfg).backbone.save_pretrained(tmp_path / "backbone")
    backbone = load_backbone(tmp_path / "backbone")
    assert TextToVideoModel(cfg, backbone).backbone is backbone
    with pytest.raises(ValueError, match="max_text_seq_length 6 != train.max_text_tokens 8"):
        TextToVideoModel(ModelConfig("tiny", 4, 16, 16, 3, 20, 8), load_backbone(tmp_path / "backbone"))
    raw = apply_overrides({}, [f"train.pretrained_path={tmp_path / 'backbone'}"])
    assert raw["train"]["pretrained_path"] == str(tmp_path / "backbone")


def _saved_without(tmp_path, key: str) -> tuple[ConvVideoBackbone, ConvVideoBackbone, tuple]:
    """A small conv backbone, saved as one from before config `key` existed, and loaded back; with inputs."""
    torch.manual_seed(0)
    old = ConvVideoBackbone(text_embed_dim=8, channels=(8, 16), time_embed_dim=16, heads=2).eval()
    old.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    del config[key]
    (tmp_path / "config.json").write_text(json.dumps(config))
    inputs = torch.randn(1, 4, 3, 16, 16), torch.randn(1, 6, 8), torch.tensor([500.0])
    return old, load_backbone(tmp_path), inputs


def test_conv_backbone_attends_to_the_text_above_the_bottleneck_and_older_ones_still_load(tmp_path):
    """New conv backbones cross-attend to the text at the two coarsest levels (8 x 8 and 4 x 4 at the
    demo's size); one saved before `attention_levels` existed has only the bottleneck's and loads as it was
    trained."""
    new = TextToVideoModel(ModelConfig("tiny-conv", 4, 16, 16, 3, 20, 6)).backbone
    assert new.config.attention_levels == 2 and sorted(new.attention) == ["d1", "u1"]
    old, again, (x, text, t) = _saved_without(tmp_path, "attention_levels")
    assert again.config.attention_levels == 1 and len(again.attention) == 0
    assert torch.equal(again(x, text, t)[0], old(x, text, t)[0])
    assert not torch.allclose(again(x, torch.randn_like(text), t)[0], again(x, text, t)[0])  # text matters
    with pytest.raises(ValueError, match="attention_levels 3 must be 1 to 2"):
        ConvVideoBackbone(channels=(8, 16), attention_levels=3)


def test_conv_backbone_pools_the_text_by_attention_and_older_ones_still_load_with_the_mean(tmp_path):
    """New conv backbones condition every frame on the text through learned queries over its tokens (one
    query can pick one word); one saved before `text_pool_queries` existed conditions on the mean token and
    loads as it was trained."""
    new = TextToVideoModel(ModelConfig("tiny-conv", 4, 16, 16, 3, 20, 6)).backbone
    assert new.config.text_pool_queries == 4 and new.text_pool.queries.shape == (4, 64)
    old, again, (x, text, t) = _saved_without(tmp_path, "text_pool_queries")
    assert again.config.text_pool_queries == 0 and again.text_pool is None
    assert torch.equal(again(x, text, t)[0], old(x, text, t)[0])
    pooled = ConvVideoBackbone(
        text_embed_dim=8, channels=(8, 16), time_embed_dim=16, heads=2, text_pool_queries=3
    )
    assert pooled.text_pool(text).shape == (1, 24)  # (B, queries x D)
    one_word = text.clone()
    one_word[0, 2] += 1.0  # one token changed: the conditioning sees it
    assert not torch.allclose(pooled(x, one_word, t)[0], pooled(x, text, t)[0])


def test_conv_backbone_draws_a_text_only_map_per_frame_and_older_ones_still_load_without(tmp_path):
    """`tiny-conv-prior` draws coarse maps from every text token, at knots spread over the clip and linear
    between them (the shape moves on a path, not as a smear along it), sees them as input channels and adds
    them to its output (zero at init: it starts as the network alone); the maps follow any frame count and
    size. One saved before `text_prior_grid` existed has none and loads as
    trained."""
    new = TextToVideoModel(ModelConfig("tiny-conv-prior", 4, 16, 16, 3, 20, 6)).backbone
    assert new.config.text_prior_grid == 8 and new.conv_in.in_channels == (3 + 3) * 2**2
    old, again, (x, text, t) = _saved_without(tmp_path, "text_prior_grid")
    assert again.config.text_prior_grid == 0 and again.prior is None
    assert torch.equal(again(x, text, t)[0], old(x, text, t)[0])
    drawn = ConvVideoBackbone(
        text_embed_dim=8,
        max_text_seq_length=6,
        channels=(8, 16),
        time_embed_dim=16,
        heads=2,
        text_prior_grid=4,
    )
    torch.nn.init.normal_(drawn.prior.mlp[-1].weight)  # as if trained
    for frames, h, w in [(4, 16, 16), (1, 16, 16), (5, 12, 16)]:
        x = torch.randn(2, frames, 3, h, w)
        assert drawn.prior(text.flatten(1).expand(2, -1), frames, h, w).shape == (2 * frames, 3, h, w)
        assert drawn(x, text.expand(2, -1, -1), t)[0].shape == x.shape
    one_word = text.clone()
    one_word[0, 4] += 1.0  # one token of six changed: the map sees it, undiluted
    maps = drawn.prior(torch.cat([text, one_word]).flatten(1), 4, 16, 16).view(2, 4, 3, 16, 16)
    assert (maps[0] - maps[1]).abs().mean() > 0.1 * maps[0].abs().mean()
    assert not torch.allclose(maps[:, 0], maps[:, -1])  # the frame's place changes it too
    seven = drawn.prior(text.flatten(1), 7, 4, 4)  # knots at frames 0, 2, 4 and 6
    assert torch.allclose(seven[1], (seven[0] + seven[2]) / 2, atol=1e-6)
    assert not torch.allclose(seven[2], (seven[0] + seven[4]) / 2)  # each knot its own map
    with pytest.raises(ValueError, match="5 text tokens; .* max_text_seq_length 6"):
        drawn(x, text[:, :5], t)


def test_the_text_prior_weighs_in_as_the_text_mean_would_for_a_gaussian_clip():
    """All of the estimate at pure noise, none without noise, and in between what the posterior mean of a
    Gaussian about the text's mean gives it (std 0.5: at sigma 0.5 it is 0.25 / (0.25 + 0.0625))."""
    w = prior_weight(torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0]))
    assert w[0] == 0 and w[-1] == 1 and torch.all(w.diff() > 0)
    assert w[2].item() == pytest.approx(0.8)
