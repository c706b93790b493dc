from __future__ import annotations

import torch

from reelforge.model.backbone import ModelConfig, TextToVideoModel
from reelforge.train.monitor import backbone_flops, device_peak, table_peak


def test_backbone_flops_scale_with_batch_and_match_a_matmul_lower_bound():
    model = TextToVideoModel(ModelConfig("tiny", 4, 16, 16, 3, 20, 6))
    one = backbone_flops(model.backbone, (1, 4, 3, 16, 16), 6)
    assert backbone_flops(model.backbone, (2, 4, 3, 16, 16), 6) == 2 * one
    # Attention + MLP weights see every token: forward+backward is 6 x weights x tokens, plus the
    # attention scores; per-sample parts (timestep modulation) are small.
    tokens = 4 * (16 // 4) ** 2 + 6
    weights = sum(p.numel() for n, p in model.backbone.named_parameters() if ".attn1." in n or ".ff." in n)
    assert 6 * weights * tokens < one < 2 * 6 * weights * tokens


def test_the_peak_table_takes_the_precision_names_lightning_reports():
    # Lightning's trainer.precision is "32-true" for fp32: it must find the TF32 peak, not raise KeyError.
    assert table_peak("NVIDIA H100 80GB HBM3", "32-true") == (494.7e12, "table:H100 tf32")
    assert table_peak("NVIDIA H100 PCIe", "bf16-mixed") == (756.0e12, "table:H100 PCIe bf16")
    assert table_peak("NVIDIA H200", "32") == (494.7e12, "table:H200 tf32")
    assert (
        table_peak("Some Future GPU", "bf16-mixed") is None and table_peak("NVIDIA A100", "16-mixed") is None
    )


def test_an_unknown_device_gets_a_measured_peak():
    peak, source = device_peak(torch.device("cpu"), "32-true")
    assert peak > 1e8 and source == "measured torch.float32 matmul on cpu"
