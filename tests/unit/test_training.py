"""Training building blocks: start-up validation, the resumable data stream, EMA, LR schedule, FLOP count,
and the pretrained parts (text encoder, autoencoder, backbone) loaded from local directories."""

from __future__ import annotations

import math

import pytest
import torch

from reelforge.autoencoder import Autoencoder
from reelforge.config import ConfigError, TrainConfig, apply_overrides, load_params
from reelforge.model import ModelConfig, TextToVideoModel, load_backbone
from reelforge.text import PretrainedTextEncoder, PromptTokenizer
from reelforge.train_module import EMA, BatchStream, lr_lambda
from reelforge.train_monitor import backbone_flops
from tests.conftest import REPO
from tests.tiny_models import save_tiny_clip, save_tiny_vae


def _params(*overrides: str):
    return load_params(REPO / "params.yaml", list(overrides))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["train.strategy=fsdp"], "train.strategy 'fsdp' needs train.accelerator 'gpu'"),
        (["train.strategy=ddp", "train.devices=3"], "train.batch_size 16 must be divisible by devices"),
        (["train.devices=2"], "set train.strategy to 'ddp' or 'fsdp'"),
        (["train.precision=bf16-mixed"], "train.precision must be '32' on accelerator 'cpu'"),
        (["clip.size=30"], "clip.size 30 must be divisible by autoencoder downsampling 1 x patch_size 4"),
        (["train.model_size=huge"], "train.model_size 'huge' is unknown"),
    ],
)
def test_bad_training_configs_fail_at_start_up_naming_the_key_and_fix(overrides, message):
    with pytest.raises(ConfigError, match="train|clip") as err:
        _params(*overrides)
    assert message in str(err.value)


def test_frames_that_do_not_fit_a_video_autoencoder_fail_at_start_up(tmp_path):
    vae = save_tiny_vae(tmp_path / "vae", video=True)
    with pytest.raises(ConfigError) as err:
        _params(f"train.vae_path={vae}", "clip.num_frames=16", "clip.size=32")
    assert "clip.num_frames 16 does not fit the autoencoder's temporal compression 4" in str(err.value)
    assert "e.g. 13 or 17" in str(err.value)
    _params(f"train.vae_path={vae}", "clip.num_frames=17", "clip.size=32")  # 4x spatial x patch 4 = 16 | 32


def test_micro_batch_splits_the_global_batch():
    cfg = TrainConfig(batch_size=16, devices=2, strategy="ddp", accumulate_grad_batches=2)
    assert cfg.micro_batch == 4 and cfg.world_size == 2


def _stream_batches(world: int, per_rank: int, steps: range, start: int = 0) -> list[list[int]]:
    """The sample indices each optimizer step sees, over all ranks."""
    x, ids = torch.arange(10).view(10, 1).float(), torch.zeros(10, 2, dtype=torch.long)
    streams = [
        iter(BatchStream(x, ids, per_rank, seed=7, rank=r, world=world, start=start)) for r in range(world)
    ]
    out = []
    for _ in steps:
        out.append(sorted(int(v) for s in streams for v in next(s)[0].flatten()))
    return out


def test_batch_stream_position_is_a_function_of_the_step_alone():
    single = _stream_batches(world=1, per_rank=4, steps=range(6))
    assert _stream_batches(world=2, per_rank=2, steps=range(6)) == single  # same samples however sharded
    assert _stream_batches(world=1, per_rank=4, steps=range(3), start=3) == single[3:]  # resume
    epochs = _stream_batches(world=1, per_rank=10, steps=range(2))  # 2 epochs of 10 samples
    assert epochs[0] == epochs[1] == list(range(10))  # each epoch visits every sample once


def test_ema_follows_the_closed_form_and_swaps_weights_in_and_out():
    model = torch.nn.Linear(2, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    ema = EMA(model, decay=0.5)
    expected = torch.zeros(1, 2)
    for step, value in enumerate([1.0, 2.0, 4.0]):
        model.weight.data.fill_(value)
        ema.update(model, step=100 + step)  # past warm-up: decay 0.5
        expected = 0.5 * expected + 0.5 * value
    assert torch.allclose(ema.shadows()[0], expected)
    with ema.applied(model):
        assert torch.allclose(model.weight, expected)
    assert torch.all(model.weight == 4.0)


def test_lr_warms_up_then_decays_to_the_floor():
    f = lr_lambda(TrainConfig(steps=100, warmup_steps=10, min_lr_ratio=0.1))
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(55) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert f(100) == pytest.approx(0.1) and f(500) == pytest.approx(0.1)


def test_backbone_flops_scale_with_batch_and_match_a_matmul_lower_bound():
    model = TextToVideoModel(ModelConfig("tiny", 4, 16, 16, 3, 20, 6))
    one = backbone_flops(model.backbone, (1, 4, 3, 16, 16), 6)
    assert backbone_flops(model.backbone, (2, 4, 3, 16, 16), 6) == 2 * one
    # Attention + MLP weights see every token: forward+backward is 6 x weights x tokens, plus the
    # attention scores; per-sample parts (timestep modulation) are small.
    tokens = 4 * (16 // 4) ** 2 + 6
    weights = sum(p.numel() for n, p in model.backbone.named_parameters() if ".attn1." in n or ".ff." in n)
    assert 6 * weights * tokens < one < 2 * 6 * weights * tokens


def test_pretrained_clip_text_encoder_is_loaded_frozen_and_saved_with_the_model(tmp_path):
    clip_dir = save_tiny_clip(tmp_path / "clip")
    text = PretrainedTextEncoder(clip_dir)
    tok = PretrainedTextEncoder.tokenizer(clip_dir, max_len=8)
    ids = tok(["a red circle", ""])
    assert ids.shape == (2, 8) and not torch.equal(ids[0], ids[1])
    cfg = ModelConfig("tiny", 4, 16, 16, 3, 0, 8, pretrained_text_encoder=True)
    model = TextToVideoModel(cfg, text_encoder=text).eval()
    assert model.backbone.config.text_embed_dim == 32  # the encoder's width
    assert not any(p.requires_grad for p in model.text_encoder.parameters())
    x, t = torch.randn(2, 4, 3, 16, 16), torch.tensor([5.0, 500.0])
    out = model(x, t, ids)
    model.save_pretrained(tmp_path / "model")
    tok.save(tmp_path / "model")
    again = TextToVideoModel.from_pretrained(tmp_path / "model")
    assert torch.equal(again(x, t, PromptTokenizer.load(tmp_path / "model", 8)(["a red circle", ""])), out)


def test_autoencoders_load_from_a_local_dir_and_map_clips_to_latents(tmp_path):
    image = Autoencoder(save_tiny_vae(tmp_path / "kl"))
    z = image.encode(torch.rand(2, 4, 3, 32, 32) * 2 - 1)
    assert z.shape == (2, 4, 4, 16, 16)  # per frame, 2x down, 4 channels
    assert image.decode(z).shape == (2, 4, 3, 32, 32)
    video = Autoencoder(save_tiny_vae(tmp_path / "cog", video=True))
    z = video.encode(torch.rand(1, 9, 3, 32, 32) * 2 - 1)
    assert z.shape == (1, 3, 4, 8, 8) and video.compression.latent_frames(9) == 3
    assert video.decode(z).shape == (1, 9, 3, 32, 32)


def test_pretrained_backbone_is_fine_tuned_in_place_of_the_size_table(tmp_path):
    cfg = ModelConfig("tiny", 4, 16, 16, 3, 20, 6)
    TextToVideoModel(cfg).backbone.save_pretrained(tmp_path / "backbone")
    backbone = load_backbone(tmp_path / "backbone")
    assert TextToVideoModel(cfg, backbone).backbone is backbone
    with pytest.raises(ValueError, match="max_text_seq_length 6 != train.max_text_tokens 8"):
        TextToVideoModel(ModelConfig("tiny", 4, 16, 16, 3, 20, 8), load_backbone(tmp_path / "backbone"))
    raw = apply_overrides({}, [f"train.pretrained_path={tmp_path / 'backbone'}"])
    assert raw["train"]["pretrained_path"] == str(tmp_path / "backbone")


def test_pretrained_t5_encoder_loads_as_an_encoder_only_model(tmp_path):
    from transformers import T5Config, T5EncoderModel

    clip_dir = save_tiny_clip(tmp_path / "clip")  # borrow its tokenizer
    t5_dir = tmp_path / "t5"
    config = T5Config(vocab_size=600, d_model=24, d_kv=8, d_ff=48, num_layers=1, num_heads=3)
    T5EncoderModel(config).save_pretrained(t5_dir)
    PretrainedTextEncoder.tokenizer(clip_dir, 8).tok.save_pretrained(t5_dir)
    text = PretrainedTextEncoder(t5_dir)
    ids = PretrainedTextEncoder.tokenizer(t5_dir, 8)(["a red circle"])
    assert text(ids).shape == (1, 8, 24) and text.dim == 24
    assert not text.training and not any(p.requires_grad for p in text.parameters())
