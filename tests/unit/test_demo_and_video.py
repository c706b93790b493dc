import hashlib

import numpy as np

from reelforge.demo_data import FPS, make_demo_data
from reelforge.video import VideoFile, decode_bytes, encode_gif, encode_mp4, to_rgb_square


def test_demo_data_is_deterministic_and_describes_every_file(tmp_path):
    a = make_demo_data(tmp_path / "a", videos=4, seed=7)
    b = make_demo_data(tmp_path / "b", videos=4, seed=7)
    assert a == b
    for v in a["videos"]:
        assert (tmp_path / "a" / v["file"]).read_bytes() == (tmp_path / "b" / v["file"]).read_bytes()
    kinds = {v["kind"] for v in a["videos"]}
    assert "broken" in kinds and len([v for v in a["videos"] if v["kind"] == "broken"]) == 3
    for v in a["videos"]:
        sidecar = (tmp_path / "a" / v["file"]).with_suffix(".txt")
        assert sidecar.exists() == (v["kind"] == "single")


def test_demo_video_decodes_to_ground_truth_length(demo):
    raw, truth = demo
    v = next(v for v in truth["videos"] if v["kind"] == "multi")
    with VideoFile(raw / v["file"]) as video:
        frames = list(video.frames())
        info = video.probe
    assert len(frames) == round(v["shots"][-1]["end_s"] * FPS)
    assert to_rgb_square(frames[0], 32).shape == (32, 32, 3)
    assert info.codec == "h264" and (info.width, info.height) == (truth["width"], truth["height"])


def test_mp4_and_gif_round_trip():
    frames = np.random.default_rng(0).integers(0, 255, size=(10, 32, 48, 3), dtype=np.uint8)
    back = decode_bytes(encode_mp4(frames, 8))
    assert back.shape == (10, 32, 48, 3)
    gif = encode_gif(frames, 8)
    assert gif[:6] == b"GIF89a" and decode_bytes(gif).shape[0] == 10
    assert hashlib.sha256(encode_mp4(frames, 8)).digest() == hashlib.sha256(encode_mp4(frames, 8)).digest()
