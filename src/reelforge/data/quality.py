"""Clip quality scores and near-duplicate detection (perceptual hashes), stored with every clip.

Scores are on a 0-1 scale: `brightness` is the mean luma (BT.601); `contrast` the spatial standard
deviation of R, G and B, averaged over channels and frames; `motion` the share of pixels whose largest RGB
change between consecutive frames exceeds MOTION_DELTA (10 of 255), averaged over frame pairs. RGB rather
than luma, because a red square moving over a purple background barely changes luma; a share of pixels
rather than a mean, because a small object moving across a still scene is motion however small it is.
A clip's signature is the 64-bit DCT pHash of its first, middle and last frame, and a 4x4 RGB thumbnail of
each; two clips are near-duplicates when all three hash pairs are within `ingest.dup_max_hamming` bits and
no thumbnail value differs by more than `ingest.dup_max_colour_diff`. The pHash is of grey levels only: it
calls a red and a blue circle on black, or one shape over black and over purple, the same clip.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from PIL import Image
from scipy.fft import dctn

LUMA = np.array([0.299, 0.587, 0.114], np.float32)
MOTION_DELTA = 10  # of 255: above codec noise on a still picture
PHASH_FRAMES = 3
THUMB = 4  # colour thumbnail side: (3 frames, 4, 4, 3) uint8 per clip, 144 bytes in the manifest


def scores(frames: np.ndarray) -> dict[str, float]:
    """frames: (T, H, W, 3) uint8 -> brightness, contrast, motion in [0, 1].

    This runs on every clip ingested, so it avoids numpy's slow small-axis reductions: float64 sums of
    uint8 values (and their squares) are exact here, and |change| is taken in uint8.
    """
    t = len(frames)
    x = frames.reshape(t, -1, 3).astype(np.float64)  # (T, HW, 3)
    n = x.shape[1]
    s1 = np.ones(n) @ x  # (T, 3)
    s2 = np.einsum("tpc,tpc->tc", x, x)  # (T, 3)
    std = np.sqrt(np.maximum(s2 / n - (s1 / n) ** 2, 0))  # (T, 3) per frame and channel
    change = np.maximum(frames[1:], frames[:-1]) - np.minimum(frames[1:], frames[:-1])  # (T-1, H, W, 3)
    moved = np.maximum(np.maximum(change[..., 0], change[..., 1]), change[..., 2]) > MOTION_DELTA
    return {
        "brightness": round(float(s1.sum(axis=0) @ LUMA) / (t * n * 255), 5),
        "contrast": round(float(std.mean()) / 255, 5),
        "motion": round(float(moved.mean()), 5),
    }


def phash(frame: np.ndarray) -> int:
    """64-bit perceptual hash of one (H, W, 3) uint8 frame: signs of the 8x8 lowest DCT frequencies of a
    32x32 grey image, against their median (the DC term excluded)."""
    grey = Image.fromarray(frame).convert("L").resize((32, 32), Image.BILINEAR)
    low = dctn(np.asarray(grey, np.float32), norm="ortho")[:8, :8].ravel()  # (64,)
    bits = low > np.median(low[1:])
    return int(np.packbits(bits).view(">u8")[0])


def signature(frames: np.ndarray) -> list[int]:
    """pHashes of the first, middle and last frame of a (T, H, W, 3) clip."""
    t = len(frames)
    return [phash(frames[i]) for i in (0, t // 2, t - 1)]


def thumbnails(frames: np.ndarray) -> bytes:
    """4x4 RGB thumbnails (area means) of the first, middle and last frame of a (T, H, W, 3) clip, as
    bytes of a (3, 4, 4, 3) uint8 array."""
    t = len(frames)
    picked = [Image.fromarray(frames[i]).resize((THUMB, THUMB), Image.BOX) for i in (0, t // 2, t - 1)]
    return np.stack([np.asarray(p, np.uint8) for p in picked]).tobytes()


class NearDuplicateIndex:
    """Finds a stored clip whose signature is within `max_hamming` bits on every frame and whose colour
    thumbnails are within `max_colour_diff` (of 255) everywhere.

    Lookup is exact and sub-linear: the middle hash is cut into max_hamming + 1 bands, and by the pigeonhole
    principle any hash within max_hamming bits agrees exactly on at least one band, so only clips sharing
    a band value are compared.
    """

    def __init__(self, max_hamming: int, max_colour_diff: int):
        self.max_hamming, self.max_colour_diff = max_hamming, max_colour_diff
        n = max_hamming + 1
        edges = np.linspace(0, 64, n + 1).round().astype(int)
        self.bands = [(int(a), (1 << int(b - a)) - 1) for a, b in zip(edges[:-1], edges[1:], strict=True)]
        self.tables: list[dict[int, list[int]]] = [defaultdict(list) for _ in self.bands]
        self.ids: list[str] = []
        self.sigs: list[list[int]] = []
        self.thumbs: list[np.ndarray] = []

    def _keys(self, h: int) -> list[int]:
        return [(h >> shift) & mask for shift, mask in self.bands]

    def find(self, sig: list[int], thumbs: bytes) -> str | None:
        thumb = np.frombuffer(thumbs, np.uint8).astype(np.int16)
        seen: set[int] = set()
        for table, key in zip(self.tables, self._keys(sig[PHASH_FRAMES // 2]), strict=True):
            for i in table.get(key, ()):
                if i not in seen:
                    seen.add(i)
                    bits = [(a ^ b).bit_count() for a, b in zip(sig, self.sigs[i], strict=True)]
                    colour = int(np.abs(thumb - self.thumbs[i]).max())
                    if max(bits) <= self.max_hamming and colour <= self.max_colour_diff:
                        return self.ids[i]
        return None

    def add(self, clip_id: str, sig: list[int], thumbs: bytes) -> None:
        i = len(self.ids)
        self.ids.append(clip_id)
        self.sigs.append(list(sig))
        self.thumbs.append(np.frombuffer(thumbs, np.uint8).astype(np.int16))
        for table, key in zip(self.tables, self._keys(sig[PHASH_FRAMES // 2]), strict=True):
            table[key].append(i)
