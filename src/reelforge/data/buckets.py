"""Which shape a source's clips take, from the `clip.buckets` table (in the spirit of Open-Sora's buckets).

A source goes to the size (width x height) whose aspect ratio is nearest its own, among the sizes it covers
without upscaling once centre-cropped to that aspect ratio; of equally near sizes, the largest. A source
smaller than every size is a reject. All of a source's clips have that size; a shot is cut into clips of
the size's longest frame count, laid end to end, and what is left at its end into the longest shorter count
it fills (`reelforge.data.shots.ClipSampler`).
"""

from __future__ import annotations

import math

from reelforge.config import Bucket
from reelforge.data.video import crop_size


def choose_size(width: int, height: int, buckets: list[Bucket]) -> tuple[int, int] | None:
    """The (width, height) the clips of a `width` x `height` (as displayed) source take, or None."""
    covered = [
        b.size
        for b in buckets
        if all(c >= s for c, s in zip(crop_size(width, height, b.width / b.height), b.size, strict=True))
    ]
    if not covered:
        return None
    aspect = math.log(width / height)
    return min(covered, key=lambda s: (round(abs(aspect - math.log(s[0] / s[1])), 9), -s[0] * s[1]))


def frame_counts(buckets: list[Bucket], size: tuple[int, int]) -> list[int]:
    """The frame counts of the buckets of one size, longest first."""
    return sorted({b.num_frames for b in buckets if b.size == size}, reverse=True)


def listed_sizes(buckets: list[Bucket]) -> str:
    """The table's sizes, for a reject's detail."""
    return ", ".join(sorted({f"{b.width}x{b.height}" for b in buckets}))
