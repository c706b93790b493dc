"""The evaluation's real side streams the validation clips from the store a batch at a time: the features,
floors and the real clips' own scores do not depend on the batch size or on reading in worker processes."""

from __future__ import annotations

import numpy as np
import pytest

from reelforge.caption import stage as caption
from reelforge.config import CaptionConfig, CaptionParams, EvaluateParams, ReadParams
from reelforge.data.demo import GROUND_TRUTH
from reelforge.evaluate import stage as evaluate
from reelforge.evaluate.scoring import Extractors


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
