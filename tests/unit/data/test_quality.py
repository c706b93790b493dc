from __future__ import annotations

import numpy as np
import pytest

from reelforge.data.quality import scores


def test_near_duplicate_index_matches_brute_force():
    from reelforge.data.quality import NearDuplicateIndex

    rng = np.random.default_rng(0)
    base = [[int(x) for x in rng.integers(0, 2**63, 3)] for _ in range(200)]
    thumbs = [rng.integers(0, 256, 144).astype(np.uint8) for _ in base]
    index = NearDuplicateIndex(4, 24)
    for i, sig in enumerate(base):
        index.add(str(i), sig, thumbs[i].tobytes())
    for i, sig in enumerate(base[:50]):
        flips = [1 << int(b) for b in rng.choice(64, size=int(rng.integers(0, 9)), replace=False)]
        probe = [sig[0], sig[1] ^ sum(flips), sig[2]]
        shift = int(rng.integers(0, 49))  # one thumbnail value moved by up to 48
        thumb = thumbs[i].astype(int)
        thumb[7] = np.clip(thumb[7] + shift, 0, 255) if thumb[7] < 128 else thumb[7] - shift
        expected = str(i) if len(flips) <= 4 and shift <= 24 else None
        assert index.find(probe, thumb.astype(np.uint8).tobytes()) == expected


def test_shapes_of_other_colours_are_not_duplicates_but_a_re_encode_is():
    """Grey-level pHashes match a red and a blue circle on black, and one shape over black and over purple;
    the colour thumbnails tell them apart. The same clip through a lossy codec still matches."""
    from reelforge.data.demo import Shot, render_shot
    from reelforge.data.quality import NearDuplicateIndex, signature, thumbnails
    from reelforge.data.video import decode_bytes, encode_mp4

    def clip(color: str, background: str) -> np.ndarray:
        shot = Shot(0.0, 2.0, color, "circle", "left", background, "")
        return render_shot(shot, 16, np.random.default_rng(0), 32, 32)

    red = clip("red", "black")
    index = NearDuplicateIndex(4, 24)
    index.add("red", signature(red), thumbnails(red))
    for other in (clip("blue", "black"), clip("red", "purple")):
        bits = [(a ^ b).bit_count() for a, b in zip(signature(red), signature(other), strict=True)]
        assert max(bits) <= 4  # what the pHash alone calls a duplicate
        assert index.find(signature(other), thumbnails(other)) is None
    again = decode_bytes(encode_mp4(red, 8, crf=28))
    assert index.find(signature(again), thumbnails(again)) == "red"


def test_scores_closed_forms():
    """brightness = mean BT.601 luma, contrast = spatial std per frame and channel, motion = share of
    pixels whose largest channel change exceeds 10/255."""
    frames = np.zeros((4, 8, 8, 3), np.uint8)
    frames[..., 0] = 200  # red everywhere
    frames[:, :, :4, 2] = 100  # left half blue channel 100: per-frame std of blue = 50
    frames[1, 0, 0, 1] = 11  # one pixel changes green by 11 (> 10) into frame 1 and back in frame 2
    frames[3, 0, 1, 1] = 10  # one pixel changes by exactly 10: not motion
    s = scores(frames)
    luma = (0.299 * 200 + 0.114 * 50) / 255 + 0.587 * (11 + 10) / (4 * 64 * 255)
    assert s["brightness"] == pytest.approx(luma, abs=1e-5)
    green_std = np.array([0, np.sqrt(11**2 / 64 - (11 / 64) ** 2), 0, np.sqrt(10**2 / 64 - (10 / 64) ** 2)])
    assert s["contrast"] == pytest.approx((4 * 50 + green_std.sum()) / (4 * 3) / 255, abs=1e-5)
    assert s["motion"] == pytest.approx(2 / (3 * 64), abs=1e-5)
