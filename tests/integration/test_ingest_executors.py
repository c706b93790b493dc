"""Ingest's multi-process paths for real: a kill at arbitrary points then a rerun, and Ray Data vs local
worker processes producing the same store."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from reelforge.config import IngestConfig, IngestParams
from reelforge.data import ingest
from reelforge.data.store import load_clips, read_manifest
from tests.conftest import default_params

ONE_CLIP_SHARDS = IngestParams(workers=1, shard_max_clips=1)  # a commit per source: many kill points


def _ingest_cli(raw: Path, out: Path, *overrides: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "reelforge.cli", "ingest", "--input", str(raw), "--output", str(out)]
    cmd += ["--summary", str(out.parent / "s.json"), "--params", str(default_params(out.parent / "p"))]
    for item in overrides:
        cmd += ["--set", item]
    return subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_killed_ingest_reruns_to_the_same_store(demo, clip_cfg, tmp_path):
    reference = tmp_path / "reference"
    ingest.run(IngestConfig(clip=clip_cfg, ingest=ONE_CLIP_SHARDS), demo[0], reference, tmp_path / "ref.json")
    out = tmp_path / "clips"
    for commits_before_kill in (1, 4):
        proc = _ingest_cli(demo[0], out, "ingest.workers=1", "ingest.shard_max_clips=1")
        deadline = time.time() + 120
        while len(list((out / "ledger").glob("*.sources.parquet"))) < commits_before_kill:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.time() < deadline
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)  # the stage and its worker processes, mid-run
        proc.wait()
        assert not (out / "manifest.parquet").exists()  # never consolidated: nothing for a reader to trust
    proc = _ingest_cli(demo[0], out, "ingest.workers=1", "ingest.shard_max_clips=1")
    assert proc.wait(timeout=300) == 0, proc.stderr.read().decode()[-2000:]
    got, want = read_manifest(out), read_manifest(reference)
    pd.testing.assert_frame_equal(got, want)  # no clip missing, none twice, same shards
    assert set(load_clips(out)) == set(got.clip_id)
    for name in ("rejects.parquet", "sources.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(out / name), pd.read_parquet(reference / name))
    assert not list(out.rglob("*.partial"))
    assert sorted(p.name for p in (out / "shards").iterdir()) == sorted(
        p.name for p in (reference / "shards").iterdir()
    )


def test_ray_data_executor_matches_local_workers(demo, ingested, tmp_path):
    """`ingest.executor: ray` (its own process, as DVC runs it, with a local Ray) writes the same store."""
    proc = _ingest_cli(demo[0], tmp_path / "clips", "ingest.executor=ray", "ingest.workers=2")
    assert proc.wait(timeout=300) == 0, proc.stderr.read().decode()[-2000:]
    for name in ("manifest.parquet", "rejects.parquet", "sources.parquet"):
        pd.testing.assert_frame_equal(
            pd.read_parquet(tmp_path / "clips" / name), pd.read_parquet(ingested / name)
        )
    a, b = load_clips(ingested), load_clips(tmp_path / "clips")
    assert all((a[k] == b[k]).all() for k in a)
