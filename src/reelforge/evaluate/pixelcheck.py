"""The demo world's ground truth, read back from pixels: does a video show the prompted background, one
blob of the prompted colour and shape, moving in the prompted direction?

No learned encoder is involved, so the check cannot share a model's blind spots. The demo renders flat
colours from a known palette (recorded, with every shot's attributes, in the ground-truth file), so each
attribute is read directly:

- background: the median colour of the border pixels over all frames, snapped to the background palette;
  unreadable when fewer than `BORDER_AGREEMENT` of the border pixels lie near that palette colour (noise),
  or when fewer than `BACKGROUND_FRAMES` of the frames' own border medians snap to it (a background that
  flashes to another colour for a few frames is not the prompted one);
- foreground: per frame, the pixels far from that background colour, split into 8-connected components;
  - single blob: in at least `BLOB_FRAMES` of the frames there is exactly one component, of `MIN_BLOB`
    pixels to `MAX_BLOB` of the frame (specks below a tenth of the largest one are compression noise, not a
    second blob);
  - colour: the median colour of every frame's largest component, snapped to the shape palette;
  - shape: how much of its bounding box the largest component fills (square ~1, circle ~0.8, triangle ~0.5),
    from the frames where it does not touch the border;
  - direction: the motion of the largest component's centroid between the first and last quarter of the
    frames, snapped to left/right/up/down; none when it moves less than `MIN_TRAVEL` of the frame.

The thresholds are validated on real demo clips (tests/unit/evaluate/test_pixelcheck.py: every attribute
read right on at least 95% of them) and reported with every evaluation (`real.pixel_*`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from reelforge.config import PIXEL_CHECKS

# Demo prompts read "a <color> <shape> moves <direction> over a <background> background".
PROMPT = re.compile(r"^a (\w+) (\w+) moves (\w+) over a (\w+) background$")
PROMPT_ATTRIBUTES = ("color", "shape", "direction", "background")

FOREGROUND_DISTANCE = 60.0  # RGB distance from the background colour that makes a pixel foreground
BORDER_AGREEMENT = 0.6  # share of border pixels that must lie near the background colour
BACKGROUND_FRAMES = 0.9  # share of frames whose own border snaps to the video's background
MIN_BLOB = 4  # pixels in the smallest component that counts as a blob
MAX_BLOB = 0.25  # share of the frame above which a component is a background change, not a shape
BLOB_FRAMES = 0.75  # share of frames that must show exactly one blob
MIN_TRAVEL = 0.03  # centroid motion, as a share of the frame side, below which a video is static
# Fill of the bounding box (area / (w * h)) that separates triangles (~0.5) from circles (~0.8) from squares.
SHAPE_FILL = (("triangle", 0.66), ("circle", 0.9), ("square", 2.0))
DIRECTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
EIGHT_CONNECTED = np.ones((3, 3), bool)

Attributes = dict[str, list[str]]  # attribute -> its values, in class order


class GroundTruth:
    """The demo's ground-truth file: every shot's span and attributes, the attribute vocabulary, and the
    palette of RGB colours the demo renders."""

    def __init__(self, path: str | Path) -> None:
        truth = json.loads(Path(path).read_text())
        self.videos: dict[str, list[dict]] = {v["file"]: v["shots"] for v in truth["videos"]}
        shots = [s for v in self.videos.values() for s in v]
        # Files written before the vocabulary was recorded: the values their shots use, sorted.
        self.attributes: Attributes = truth.get("attributes") or {
            a: sorted({s[a] for s in shots}) for a in PROMPT_ATTRIBUTES
        }
        self.palette: dict[str, dict[str, tuple[int, int, int]]] | None = truth.get("palette")

    def label_clips(self, manifest: pd.DataFrame) -> dict[str, dict[str, str]]:
        """clip_id -> attributes of the ground-truth shot the clip lies in."""
        labels = {}
        for row in manifest.itertuples():
            for shot in self.videos.get(row.source_path, []):
                if shot["start_s"] - 1e-3 <= row.start_s and row.end_s <= shot["end_s"] + 1e-3:
                    labels[row.clip_id] = {a: shot[a] for a in self.attributes}
        return labels

    def parse_prompt(self, prompt: str) -> dict[str, str] | None:
        """The attributes a demo-style prompt asks for, or None when it is not one."""
        m = PROMPT.match(prompt.strip().lower())
        if not m:
            return None
        values = dict(zip(PROMPT_ATTRIBUTES, m.groups(), strict=True))
        if any(values[a] not in self.attributes.get(a, ()) for a in PROMPT_ATTRIBUTES):
            return None
        return values


def chance(attributes: Attributes) -> dict[str, float]:
    """What guessing uniformly would score on each check (a single blob is a yes/no reading)."""
    out = {a: 1.0 / len(attributes[a]) for a in ("background", "color", "shape", "direction")}
    out["single_blob"] = 0.5
    out["all"] = float(np.prod(list(out.values())))
    return out


@dataclass(frozen=True)
class Reading:
    """What the pixels of one video show; None where an attribute cannot be read."""

    background: str | None
    color: str | None
    blobs: float  # share of frames with exactly one blob
    shape: str | None
    direction: str | None


def _snap(rgb: np.ndarray, palette: dict[str, tuple[int, int, int]]) -> tuple[str, float]:
    names = list(palette)
    dist = np.linalg.norm(np.asarray([palette[n] for n in names], np.float64) - rgb, axis=1)
    return names[int(dist.argmin())], float(dist.min())


def read_video(video: np.ndarray, palette: dict[str, dict[str, tuple[int, int, int]]]) -> Reading:
    """(T, H, W, 3) uint8 -> what it shows, in the palette's names."""
    frames = video.astype(np.float64)
    t, h, w, _ = frames.shape
    border = np.concatenate(
        [frames[:, 0], frames[:, -1], frames[:, 1:-1, 0], frames[:, 1:-1, -1]], axis=1
    ).reshape(-1, 3)
    bg_rgb = np.median(border, axis=0)
    background, _ = _snap(bg_rgb, palette["background"])
    bg_ref = np.asarray(palette["background"][background], np.float64)
    near = np.linalg.norm(border - bg_ref, axis=1) < FOREGROUND_DISTANCE
    per_frame = np.median(border.reshape(t, -1, 3), axis=1)  # (T, 3)
    steady = np.mean([_snap(rgb, palette["background"])[0] == background for rgb in per_frame])
    if near.mean() < BORDER_AGREEMENT or steady < BACKGROUND_FRAMES:
        background = None

    fg = np.linalg.norm(frames - bg_rgb, axis=-1) > FOREGROUND_DISTANCE  # (T, H, W)
    single, colours, fills, centroids = 0, [], [], []
    for i in range(t):
        labels, n = ndimage.label(fg[i], structure=EIGHT_CONNECTED)
        if n == 0:
            centroids.append(None)
            continue
        sizes = np.bincount(labels.ravel())[1:]
        big = int(sizes.argmax())
        counted = (sizes >= max(MIN_BLOB, 0.1 * sizes[big])).sum()
        single += int(counted == 1 and MIN_BLOB <= sizes[big] <= MAX_BLOB * h * w)
        mask = labels == big + 1
        colours.append(np.median(frames[i][mask], axis=0))
        ys, xs = np.nonzero(mask)
        centroids.append((xs.mean(), ys.mean()))
        touches = ys.min() == 0 or xs.min() == 0 or ys.max() == h - 1 or xs.max() == w - 1
        if not touches and sizes[big] >= MIN_BLOB:
            fills.append(sizes[big] / ((np.ptp(ys) + 1) * (np.ptp(xs) + 1)))
    color = _snap(np.median(colours, axis=0), palette["color"])[0] if colours else None
    shape = next(name for name, top in SHAPE_FILL if np.median(fills) < top) if fills else None
    return Reading(background, color, single / t, shape, _direction(centroids, w, h))


def _direction(centroids: list[tuple[float, float] | None], w: int, h: int) -> str | None:
    q = max(len(centroids) // 4, 1)
    first = [c for c in centroids[:q] if c is not None]
    last = [c for c in centroids[-q:] if c is not None]
    if not first or not last:
        return None
    dx, dy = np.mean(last, axis=0) - np.mean(first, axis=0)
    if max(abs(dx) / w, abs(dy) / h) < MIN_TRAVEL:
        return None
    return max(DIRECTIONS, key=lambda d: DIRECTIONS[d][0] * dx / w + DIRECTIONS[d][1] * dy / h)


def check(reading: Reading, wanted: dict[str, str]) -> dict[str, bool]:
    """Each check of one video against the attributes it should show, and `all`."""
    right = {
        "background": reading.background == wanted["background"],
        "color": reading.color == wanted["color"],
        "single_blob": reading.blobs >= BLOB_FRAMES,
        "shape": reading.shape == wanted["shape"],
        "direction": reading.direction == wanted["direction"],
    }
    right["all"] = all(right.values())
    return right


def check_videos(videos: np.ndarray, wanted: list[dict[str, str]], palette: dict) -> dict[str, np.ndarray]:
    """(N, T, H, W, 3) videos and what each should show -> per check, whether each video shows it (N,)."""
    rows = [check(read_video(v, palette), w) for v, w in zip(videos, wanted, strict=True)]
    return {k: np.array([r[k] for r in rows]) for k in (*PIXEL_CHECKS, "all")}
