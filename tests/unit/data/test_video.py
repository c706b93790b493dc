from __future__ import annotations

import hashlib

import av
import numpy as np
import pytest

from reelforge.data.video import decode_bytes, encode_gif, encode_mp4, to_rgb


def test_mp4_and_gif_round_trip():
    frames = np.random.default_rng(0).integers(0, 255, size=(10, 32, 48, 3), dtype=np.uint8)
    back = decode_bytes(encode_mp4(frames, 8))
    assert back.shape == (10, 32, 48, 3)
    gif = encode_gif(frames, 8)
    assert gif[:6] == b"GIF89a" and decode_bytes(gif).shape[0] == 10
    assert hashlib.sha256(encode_mp4(frames, 8)).digest() == hashlib.sha256(encode_mp4(frames, 8)).digest()


@pytest.mark.parametrize("fmt", ["yuv420p", "yuv422p", "yuv444p", "yuv420p10le", "yuvj420p", "nv12", "rgb24"])
@pytest.mark.parametrize("width,height", [(400, 240), (401, 243), (240, 400)])
def test_to_rgb_keeps_the_centre_square_in_every_format(fmt, width, height):
    """Exactly the centre square is kept: bands outside it (red, yellow) must not bleed in, and its two
    halves (green, blue) land left and right. (The tolerance covers chroma subsampling of this image.)"""
    long, short = max(width, height), min(width, height)
    band = (long - short) // 2
    img = np.zeros((short, long, 3), np.uint8)  # landscape; transposed below for portrait
    img[:, :band], img[:, band + short :] = (255, 0, 0), (255, 255, 0)
    img[:, band : band + short // 2], img[:, band + short // 2 : band + short] = (0, 200, 0), (0, 0, 200)
    if height > width:  # portrait: the bands are above and below, the halves top and bottom
        img = img.transpose(1, 0, 2)
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24").reformat(format=fmt)
    out = to_rgb(frame, 32, 32).astype(int)
    assert out.shape == (32, 32, 3)
    first, second = (out[:, :12], out[:, 20:]) if width > height else (out[:12], out[20:])
    assert np.abs(first - (0, 200, 0)).max() < 24 and np.abs(second - (0, 0, 200)).max() < 24


def test_to_rgb_matches_an_exact_box_filter():
    """Scaling a smooth 4:2:0 frame by exactly 3 gives the 3x3 mean of its full-size RGB to about one
    level of 255 (swscale's plain AREA flag, with subsampled chroma, errs by 4.4 on this image)."""
    y, x = np.mgrid[0:96, 0:132]
    img = np.stack([128 + 90 * np.sin(x / 9 + c) * np.cos(y / 11 - c) for c in range(3)], -1).astype(np.uint8)
    frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
    full = frame.to_ndarray(format="rgb24").astype(float)[:, 16:112]  # the centre square, 4-aligned
    expected = full.reshape(32, 3, 32, 3, 3).mean(axis=(1, 3))  # (32, 32, 3)
    assert np.abs(to_rgb(frame, 32, 32).astype(float) - expected).mean() < 2.0


def test_to_rgb_keeps_a_landscape_frame_whole_in_a_landscape_shape_and_crops_it_for_another():
    """A 3:2 frame in a 3:2 shape keeps all of it (its four coloured quadrants land in the four corners);
    in a 1:2 shape only the centre is kept. (A turned frame: tests/unit/data/test_ingest_corpus.py.)"""
    img = np.zeros((240, 360, 3), np.uint8)
    img[:120, :180], img[:120, 180:], img[120:, :180], img[120:, 180:] = (
        (200, 0, 0),
        (0, 200, 0),
        (0, 0, 200),
        (200, 200, 200),
    )
    frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv444p")
    out = to_rgb(frame, 48, 32).astype(int)
    assert out.shape == (32, 48, 3)
    for (ys, xs), colour in zip(
        [((0, 12), (0, 20)), ((0, 12), (28, 48)), ((20, 32), (0, 20)), ((20, 32), (28, 48))],
        [(200, 0, 0), (0, 200, 0), (0, 0, 200), (200, 200, 200)],
        strict=True,
    ):
        assert np.abs(out[slice(*ys), slice(*xs)] - colour).max() < 24
    tall = to_rgb(frame, 16, 32).astype(int)  # the centre 120 x 240 of 360 x 240: halves of both columns
    assert tall.shape == (32, 16, 3)
    assert (
        np.abs(tall[:12, :6] - (200, 0, 0)).max() < 24 and np.abs(tall[20:, 10:] - (200, 200, 200)).max() < 24
    )
