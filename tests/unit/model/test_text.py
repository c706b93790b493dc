from __future__ import annotations

import torch

from reelforge.model.backbone import ModelConfig, TextToVideoModel
from reelforge.model.text import PretrainedTextEncoder, PromptTokenizer
from tests.tiny_models import save_tiny_clip


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
