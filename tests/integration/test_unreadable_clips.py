"""A clip that fails to decode after ingest: the reading stages skip it within `read.max_unreadable`,
name it by shard and member, and fail beyond the budget."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from reelforge.caption import stage as caption
from reelforge.caption.captioner import read_captions
from reelforge.config import CaptionConfig, CaptionParams, ClipParams, ReadParams, TrainParams
from reelforge.data.store import UnreadableClips, read_manifest
from reelforge.model.autoencoder import Autoencoder
from reelforge.train.data import load_data
from reelforge.train.module import BatchStream
from tests.unit.data.test_store import _damage


def test_caption_and_train_skip_a_damaged_clip_and_say_which(ingested, tmp_path):
    store = tmp_path / "clips"
    shutil.copytree(ingested, store)
    member = _damage(store, "zeros")
    n = len(read_manifest(store))
    tight = CaptionConfig(caption=CaptionParams(steps=5), read=ReadParams(max_unreadable=0))
    with pytest.raises(UnreadableClips, match=member):
        caption.run(tight, store, tmp_path / "no", tmp_path / "no.json")
    assert not (tmp_path / "no").exists()  # nothing half-written

    budget = ReadParams(max_unreadable=0.1)
    r = caption.run(
        tight.model_copy(update={"read": budget}), store, tmp_path / "captions", tmp_path / "c.json"
    )
    metrics = json.loads((tmp_path / "c.json").read_text())
    assert r.clips == n - 1 and [u["member"] for u in metrics["unreadable"]] == [member]
    assert member.removesuffix(".mp4") not in set(read_captions(tmp_path / "captions").clip_id)

    data = load_data(
        TrainParams(), ClipParams(), budget, store, tmp_path / "captions", Autoencoder(None), None
    )
    assert len(data.train_x) + len(data.val_x) == n - 1  # the clip without a caption is not trained on


def test_training_streams_past_a_clip_damaged_after_captioning_within_the_budget(ingested, tmp_path):
    """Training decodes clips as it goes: a clip that fails then is named, replaced in its batch (batches
    keep their size), and past the budget the stream stops with the member's name."""
    cfg = CaptionConfig(caption=CaptionParams(steps=5))
    caption.run(cfg, ingested, tmp_path / "captions", tmp_path / "c.json")  # every clip captioned
    store = tmp_path / "clips"
    shutil.copytree(ingested, store)
    member = _damage(store, "truncated")
    n_train = int((read_manifest(store).split == "train").sum())

    def two_epochs(budget: float) -> tuple[list[torch.Tensor], list[dict]]:
        data = load_data(
            TrainParams(), ClipParams(), ReadParams(max_unreadable=budget), store, tmp_path / "captions",
            Autoencoder(None), None,
        )  # fmt: skip
        stream = iter(BatchStream(data.train_x, data.train_ids, 4, seed=0, rank=0, world=1, start=0))
        batches = [next(stream)[0] for _ in range(2 * -(-n_train // 4))]  # two epochs
        return batches, data.train_x.stored.unreadable

    batches, unreadable = two_epochs(budget=1.5 / n_train)  # one clip: counted once, not once per epoch
    assert [u["member"] for u in unreadable] == [member] and {len(b) for b in batches} == {4}
    with pytest.raises(UnreadableClips, match=f"1 of {n_train} clips .*max_unreadable=0 .*{member}"):
        two_epochs(budget=0)
