from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from reelforge.config import SchedulerParams
from reelforge.evaluate.stage import generated
from reelforge.model.autoencoder import Autoencoder
from reelforge.model.backbone import ModelConfig, TextToVideoModel
from reelforge.model.pipeline import GENERATION_CONFIG, TextToVideoPipeline
from reelforge.model.text import PromptTokenizer, train_tokenizer

PROMPTS = ["a red circle moves left", "a blue square moves up"]


def _pipeline() -> TextToVideoPipeline:
    torch.manual_seed(0)
    tok = PromptTokenizer(train_tokenizer(PROMPTS), 6)
    model = TextToVideoModel(ModelConfig("tiny", 4, 16, 16, 3, tok.tok.get_vocab_size(), 6)).eval()
    return TextToVideoPipeline(model, tok, Autoencoder(None), SchedulerParams(), 8.0, 4, 3, 2.5, "ema")


def test_save_and_load_round_trip_generates_the_same_videos(tmp_path):
    pipeline = _pipeline()
    pipeline.save_pretrained(tmp_path)
    assert json.loads((tmp_path / GENERATION_CONFIG).read_text()) == pipeline.generation_config
    again = TextToVideoPipeline.from_pretrained(tmp_path)
    assert again.generation_config == pipeline.generation_config
    videos = pipeline.generate(PROMPTS, seeds=[0, 1])
    assert videos.shape == (2, 4, 16, 16, 3) and videos.dtype == np.uint8
    assert np.array_equal(again.generate(PROMPTS, seeds=[0, 1]), videos)


def test_a_model_saved_before_a_scheduler_key_keeps_the_behaviour_it_was_trained_with(tmp_path):
    """generation.json written before frame_noise_correlation existed: the model samples with independent
    frame noise, as it was trained, not with today's default of 0.5."""
    pipeline = _pipeline()
    pipeline.save_pretrained(tmp_path)
    gen = json.loads((tmp_path / GENERATION_CONFIG).read_text())
    assert gen["scheduler"]["frame_noise_correlation"] == SchedulerParams().frame_noise_correlation == 0.5
    for key in ("frame_noise_correlation", "motion_loss_weight"):
        del gen["scheduler"][key]
    (tmp_path / GENERATION_CONFIG).write_text(json.dumps(gen))
    old = TextToVideoPipeline.from_pretrained(tmp_path)
    assert old.scheduler.frame_noise_correlation == 0.0 and old.scheduler.motion_loss_weight == 0.0
    independent = TextToVideoPipeline(
        pipeline.model, pipeline.tokenizer, Autoencoder(None),
        SchedulerParams(frame_noise_correlation=0.0, motion_loss_weight=0.0), 8.0, 4, 3, 2.5, "ema",
    )  # fmt: skip
    assert np.array_equal(old.generate(PROMPTS, [0, 1]), independent.generate(PROMPTS, [0, 1]))
    assert not np.array_equal(old.generate(PROMPTS, [0, 1]), pipeline.generate(PROMPTS, [0, 1]))


def test_settings_given_per_call_override_the_saved_defaults_within_the_trained_shapes():
    pipeline = _pipeline()
    with pytest.raises(ValueError, match=r"^16x16x6 is not a shape .* use one of 16x16x4 \(width x height x"):
        pipeline.generate(PROMPTS[:1], [0], num_frames=6)
    trained = TextToVideoPipeline(
        pipeline.model, pipeline.tokenizer, Autoencoder(None), SchedulerParams(), 8.0, 4, 3, 2.5,
        shapes=[(16, 16, 6), (24, 16, 8)],
    )  # fmt: skip
    assert trained.generate(PROMPTS[:1], [0], num_frames=6, steps=1, guidance=1.0).shape == (1, 6, 16, 16, 3)
    assert trained.generate(PROMPTS[:1], [0], width=24, steps=1).shape == (1, 8, 16, 24, 3)  # its frames
    assert not np.array_equal(pipeline.generate(PROMPTS[:1], [0]), pipeline.generate(PROMPTS[:1], [1]))


def test_a_model_saved_before_shapes_generates_at_its_sizes_and_frame_count(tmp_path):
    pipeline = _pipeline()
    pipeline.save_pretrained(tmp_path)
    gen = json.loads((tmp_path / GENERATION_CONFIG).read_text())
    assert gen.pop("shapes") == [[16, 16, 4]]
    (tmp_path / GENERATION_CONFIG).write_text(json.dumps(gen | {"sizes": [[16, 16], [24, 16]]}))
    assert TextToVideoPipeline.from_pretrained(tmp_path).shapes == [(16, 16, 4), (24, 16, 4)]
    (tmp_path / GENERATION_CONFIG).write_text(json.dumps(gen))  # the oldest: the model's own size
    assert TextToVideoPipeline.from_pretrained(tmp_path).shapes == [(16, 16, 4)]


def test_sampling_runs_where_the_model_is():
    """Prompt ids and noise follow the model to its device (here `meta`: any op that mixed in a CPU tensor
    would raise), so sampling on a GPU does not fail at its first step."""
    pipeline = _pipeline()
    pipeline.model.to("meta")
    x = pipeline.sample(PROMPTS, seeds=[0, 1], steps=2)
    assert x.device.type == "meta" and x.shape == (2, 4, 3, 16, 16)


def test_bf16_autocast_samples_videos_close_to_fp32():
    pipeline = _pipeline()
    want = pipeline.generate(PROMPTS[:1], [0], steps=2)
    pipeline.to("cpu", autocast=torch.bfloat16)
    got = pipeline.generate(PROMPTS[:1], [0], steps=2)
    assert got.dtype == np.uint8 and np.abs(got.astype(int) - want.astype(int)).mean() < 8


def test_evaluation_generates_a_batch_at_a_time_and_keeps_the_first_videos():
    pipeline, head = _pipeline(), []
    prompts, seeds = PROMPTS * 3, list(range(6))
    batches = list(generated(pipeline, prompts, seeds, (4, 16, 16), 4, 3, head))
    assert [len(b) for b in batches] == [4, 2]
    assert len(head) == 3 and np.array_equal(np.stack(head), batches[0][:3])
    alone = pipeline.generate(prompts[4:5], seeds[4:5])[0]  # a video is its seed's in any batch
    assert np.abs(alone.astype(int) - batches[1][0]).max() <= 1
