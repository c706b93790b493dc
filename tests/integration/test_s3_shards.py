"""Shards read over s3:// (`read.shards_url`): a copy of the store's shards in an S3 bucket, served by a
standalone S3 server in its own process (moto's, over HTTP: s3fs, aiobotocore and the ranged GETs are the
real client path), read by the stages as they read a local store, in worker processes too."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from reelforge.caption import stage as caption
from reelforge.caption.captioner import read_captions, weights_sha256
from reelforge.config import CaptionConfig, CaptionParams, ReadParams
from reelforge.data.store import UnreadableClips, load_clips, read_manifest

BUCKET = "reelforge-clips"


@pytest.fixture(scope="module")
def s3():
    """An S3 endpoint on a free port; AWS_ENDPOINT_URL points every S3 client at it (as for MinIO or R2)."""
    s3fs = pytest.importorskip("s3fs")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
    }  # fmt: skip
    before = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        deadline = time.monotonic() + 60
        while socket.socket().connect_ex(("127.0.0.1", port)):
            assert time.monotonic() < deadline and server.poll() is None, "the S3 server did not start"
            time.sleep(0.2)
        fs = s3fs.S3FileSystem(skip_instance_cache=True)
        fs.mkdir(BUCKET)
        yield fs
    finally:
        server.terminate()
        server.wait(30)
        for k, v in before.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


def test_the_stages_read_shards_from_s3_as_from_the_store(ingested, s3, tmp_path):
    url = f"s3://{BUCKET}/clips"
    s3.put(str(ingested / "shards"), f"{BUCKET}/clips/shards", recursive=True)
    local, remote = load_clips(ingested), load_clips(ingested, url=url)
    assert len(remote) == len(read_manifest(ingested)) and remote.keys() == local.keys()
    assert all(np.array_equal(remote[c], local[c]) for c in local)

    # The caption stage over s3, its clips decoded in 2 worker processes: the same captioner and captions.
    out = {}
    for name, read in (("local", ReadParams()), ("s3", ReadParams(shards_url=url, loader_workers=2))):
        cfg = CaptionConfig(caption=CaptionParams(steps=5), read=read)
        caption.run(cfg, ingested, tmp_path / name, tmp_path / f"{name}.json")
        out[name] = read_captions(tmp_path / name), weights_sha256(tmp_path / name / "captioner")
    assert out["s3"][1] == out["local"][1] and out["s3"][0].equals(out["local"][0])


def test_a_clip_cut_short_in_the_bucket_is_named_by_shard_and_member(ingested, s3):
    url = f"s3://{BUCKET}/short"
    row = read_manifest(ingested).sort_values(["shard", "member_offset"]).iloc[-1]  # the last of its shard
    data = (ingested / row.shard).read_bytes()
    s3.pipe(f"{BUCKET}/short/{row.shard}", data[: int(row.member_offset) + int(row.encoded_bytes) // 2])
    for shard in {s for s in read_manifest(ingested).shard if s != row.shard}:
        s3.put(str(ingested / shard), f"{BUCKET}/short/{shard}")
    with pytest.raises(UnreadableClips, match=f"{row.shard}:{row.clip_id}.mp4"):
        load_clips(ingested, url=url)
    clips = load_clips(ingested, max_unreadable=0.5, url=url)
    assert row.clip_id not in clips and [u["member"] for u in clips.unreadable] == [f"{row.clip_id}.mp4"]
