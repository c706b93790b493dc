from __future__ import annotations

from reelforge.config import IngestConfig, IngestParams
from reelforge.data import ingest
from reelforge.data.store import load_clips


def test_changed_clip_settings_restart_the_store(demo, clip_cfg, tmp_path):
    out = tmp_path / "clips"
    ingest.run(IngestConfig(clip=clip_cfg, ingest=IngestParams()), demo[0], out, tmp_path / "s.json")
    smaller = clip_cfg.model_copy(update={"size": 16})
    r = ingest.run(IngestConfig(clip=smaller, ingest=IngestParams()), demo[0], out, tmp_path / "s.json")
    assert r.summary["store_restarted"] and r.summary["inputs_processed_this_run"] == r.inputs
    assert {c.shape[1] for c in load_clips(out).values()} == {16}
