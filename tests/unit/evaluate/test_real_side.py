"""The evaluation's real side streams the validation clips from the store a batch at a time: the features,
floors and the real clips' own scores do not depend on the batch size or on reading in worker processes."""

from __future__ import annotations

import numpy as np
import pytest

from reelforge.caption import stage as caption
from reelforge.config import CaptionConfig, CaptionParams, EvaluateParams, ReadParams
from reelforge.data.demo import GROUND_TRUTH, caption_for
from reelforge.data.store import load_clips, read_manifest
from reelforge.evaluate import stage as evaluate
from reelforge.evaluate.pixelcheck import GroundTruth
from reelforge.evaluate.scoring import Extractors, PixelCheck, score_videos


@pytest.fixture(scope="module")
def captions(ingested, tmp_path_factory):
    out = tmp_path_factory.mktemp("captions")
    caption.run(CaptionConfig(caption=CaptionParams(steps=20)), ingested, out / "c", out / "c.json")
    return out / "c"


def test_real_side_is_the_same_in_any_batch_size_and_in_workers(ingested, captions, demo, monkeypatch):
    ev = EvaluateParams(bootstrap=20)
    ex = Extractors.load(ev, captions)
    sides = []
    for batch, workers in ((64, 0), (2, 2)):
        monkeypatch.setattr(evaluate, "READ_BATCH", batch)
        read = ReadParams(loader_workers=workers)
        sides.append(evaluate._real_side(ev, read, ex, ingested, captions, demo[0] / GROUND_TRUTH))
    whole, streamed = sides
    assert len(whole.set.ref) >= 4 and whole.shape == streamed.shape == (16, 32, 32)
    assert np.allclose(whole.set.ref, streamed.set.ref, atol=1e-5)
    assert whole.scores.keys() == streamed.scores.keys() and "pixel_background_acc" in whole.scores
    for k in ("floors", "scores"):
        a, b = getattr(whole, k), getattr(streamed, k)
        assert a.keys() == b.keys() and np.allclose(list(a.values()), list(b.values()), rtol=1e-5), k


@pytest.mark.parametrize(
    ("half", "expected"),
    [
        (1, [0, 3, 6, 9]),  # one seed per prompt: every prompt is still asked
        (4, [0, 3, 6, 9]),
        (5, [0, 1, 3, 4, 6, 7, 9, 10]),  # two seeds each: 8 videos for a floor at n = 5
        (12, list(range(12))),  # more than the prompts x seeds: all of them (scoring names the shortfall)
    ],
)
def test_a_reported_bucket_generates_only_what_its_floor_uses(half, expected):
    assert evaluate.other_bucket_samples(12, 4, half) == expected


def test_a_stream_of_batches_scores_as_the_whole_set(ingested, captions, demo):
    """Generated videos are scored as they come, a batch at a time, the pixel check among the scores: the
    same numbers as scoring them all at once. A prompt outside the demo world is left out of the check."""
    ex = Extractors.load(EvaluateParams(), captions)
    truth = GroundTruth(demo[0] / GROUND_TRUTH)
    labels = truth.label_clips(read_manifest(ingested))
    clips = load_clips(ingested)
    ids = sorted(labels)[:7]
    videos = np.stack([clips[c] for c in ids])
    prompts = [caption_for(**labels[c]) for c in ids[:-1]] + ["a dog runs on a beach"]
    pixel = PixelCheck(truth, {}, bootstrap=20, seed=0)
    whole = score_videos(ex, videos, prompts, None, 20, 0, pixel).scores
    batches = (videos[i : i + 3] for i in range(0, len(videos), 3))
    assert score_videos(ex, batches, prompts, None, 20, 0, pixel).scores == pytest.approx(whole)
    by_hand = pixel.accuracy([pixel.check(videos[:-1], [labels[c] for c in ids[:-1]])])
    assert {k: v for k, v in whole.items() if k.startswith("pixel_")} == pytest.approx(by_hand)
    assert whole["pixel_background_acc"] == 1.0  # real clips: the check reads them
