from __future__ import annotations

import numpy as np
import pytest

from reelforge.data.shots import CutDetector


def _scenes(cuts: list[int], n: int, levels: tuple[float, ...] = (0.1, 0.4, 0.7, 0.2, 0.5)) -> list:
    """n (3, 16, 16) thumbnails drifting slowly, jumping to the next of `levels` at each index in `cuts`."""
    shot, out = 0, []
    for i in range(n):
        shot += i in cuts
        out.append(np.full((3, 16, 16), levels[shot % len(levels)] + 0.001 * (i % 5), np.float32))
    return out


def _run(thumbs: list[np.ndarray], stride: int) -> tuple[list[int], list[int], int]:
    calls = []

    def thumbnail(i: int) -> np.ndarray:
        calls.append(i)
        return thumbs[i]

    det = CutDetector(threshold=0.08, stride=stride, thumbnail=thumbnail)
    out = [c for i in range(len(thumbs)) for c in det.push(i / 30, i)] + det.finish()
    return [f for _, f, _ in out], [f for _, f, first in out if first], len(calls)


@pytest.mark.parametrize("stride", [1, 2, 3, 4])
@pytest.mark.parametrize(
    "cuts", [[], [1], [7], [8], [9], [5, 6], [5, 7], [3, 10, 11, 12], [24], [23, 24]], ids=str
)
def test_cut_detector_finds_every_cut_on_its_exact_frame(stride, cuts):
    """Checking every Nth frame gives the same cuts as checking every frame, on the exact frame, with
    frames released once each and in order, including cuts on the last frames of the stream."""
    frames, firsts, _ = _run(_scenes(cuts, 25), stride)
    assert frames == list(range(25))
    assert firsts == [0, *cuts]


def test_cut_detector_thumbnails_one_frame_in_stride_plus_those_around_cuts():
    _, _, calls_no_cut = _run(_scenes([], 61), 2)
    assert calls_no_cut == 31  # frames 0, 2, ..., 60
    _, firsts, calls = _run(_scenes([31], 61), 2)
    assert firsts == [0, 31] and calls == 32  # plus frame 31, between checked frames 30 and 32


def test_cut_detector_misses_only_a_flash_shorter_than_the_stride():
    """A one-frame flash that returns to the same picture is invisible to stride 2, not to stride 1."""
    thumbs = _scenes([11, 12], 20, levels=(0.1, 0.9))  # frame 11 flashes; 10 and 12 are checked
    assert _run(thumbs, 1)[1] == [0, 11, 12]
    assert _run(thumbs, 2)[1] == [0]
