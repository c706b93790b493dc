from __future__ import annotations

from reelforge.model.backbone import ModelConfig, TextToVideoModel
from reelforge.train.monitor import backbone_flops


def test_backbone_flops_scale_with_batch_and_match_a_matmul_lower_bound():
    model = TextToVideoModel(ModelConfig("tiny", 4, 16, 16, 3, 20, 6))
    one = backbone_flops(model.backbone, (1, 4, 3, 16, 16), 6)
    assert backbone_flops(model.backbone, (2, 4, 3, 16, 16), 6) == 2 * one
    # Attention + MLP weights see every token: forward+backward is 6 x weights x tokens, plus the
    # attention scores; per-sample parts (timestep modulation) are small.
    tokens = 4 * (16 // 4) ** 2 + 6
    weights = sum(p.numel() for n, p in model.backbone.named_parameters() if ".attn1." in n or ".ff." in n)
    assert 6 * weights * tokens < one < 2 * 6 * weights * tokens
