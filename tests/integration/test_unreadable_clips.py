"""A clip that fails to decode after ingest: the reading stages skip it within `read.max_unreadable`,
name it by shard and member, and fail beyond the budget."""

from __future__ import annotations

import json
import shutil

import pytest

from reelforge.caption import stage as caption
from reelforge.caption.captioner import read_captions
from reelforge.config import CaptionConfig, CaptionParams, ClipParams, ReadParams, TrainParams
from reelforge.data.store import UnreadableClips, read_manifest
from reelforge.model.autoencoder import Autoencoder
from reelforge.train.data import load_data
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
    assert len(data.train_x) + len(data.val_x) == n - 1
    assert data.identity["data.unreadable_clips"] == f"1 (shards/000000.tar:{member})"
