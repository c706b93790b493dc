"""Built-in demo data: real H.264 videos of coloured shapes moving over coloured backgrounds.

Single-shot videos come with a caption sidecar (`<name>.txt`, like alt-text); multi-shot videos have hard
cuts and no caption; a few files are broken. `ground_truth.json` describes every shot and the attribute
vocabulary of the demo world; it is for tests and evaluation only (a declared input of the evaluate stage,
for its pixel check) — the training stages never read it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from reelforge.data.video import encode_mp4

COLORS = {"red": (220, 40, 40), "green": (40, 190, 70), "blue": (40, 90, 230), "yellow": (240, 215, 40)}
BACKGROUNDS = {
    "black": (15, 15, 15),
    "white": (245, 245, 245),
    "gray": (128, 128, 128),
    "purple": (110, 40, 140),
}
SHAPES = ("circle", "square", "triangle")
DIRECTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
WIDTH, HEIGHT, FPS = 128, 96, 24
# The vocabulary of every shot's attributes, in ground_truth.json; the order is each attribute's class order.
ATTRIBUTES = {
    "color": list(COLORS),
    "shape": list(SHAPES),
    "direction": list(DIRECTIONS),
    "background": list(BACKGROUNDS),
}
GROUND_TRUTH = "ground_truth.json"


def caption_for(color: str, shape: str, direction: str, background: str) -> str:
    return f"a {color} {shape} moves {direction} over a {background} background"


@dataclass(frozen=True)
class Shot:
    start_s: float
    end_s: float
    color: str
    shape: str
    direction: str
    background: str
    caption: str


def _shape_mask(shape: str, cx: float, cy: float, r: float, width: int, height: int) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    if shape == "circle":
        return (xx - cx) ** 2 + (yy - cy) ** 2 <= r**2
    if shape == "square":
        return (np.abs(xx - cx) <= r * 0.85) & (np.abs(yy - cy) <= r * 0.85)
    # Upward triangle: inside the apex-to-base cone and above the base.
    return (yy <= cy + r * 0.8) & (np.abs(xx - cx) <= (yy - (cy - r)) * 0.6)


def render_shot(
    shot: Shot, num_frames: int, rng: np.random.Generator, width: int = WIDTH, height: int = HEIGHT
) -> np.ndarray:
    """(num_frames, height, width, 3) uint8: the shape crosses about 60% of the frame in its direction."""
    dx, dy = DIRECTIONS[shot.direction]
    r = 14.0
    span_x, span_y = 0.6 * width, 0.6 * height
    cx0 = width / 2 - dx * span_x / 2 + (rng.uniform(-8, 8) if dx == 0 else 0)
    cy0 = height / 2 - dy * span_y / 2 + (rng.uniform(-8, 8) if dy == 0 else 0)
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    for i in range(num_frames):
        p = i / max(num_frames - 1, 1)
        frames[i] = BACKGROUNDS[shot.background]
        mask = _shape_mask(shot.shape, cx0 + dx * span_x * p, cy0 + dy * span_y * p, r, width, height)
        frames[i][mask] = COLORS[shot.color]
    return frames


class Combos:
    """Shot attributes drawn without replacement from every combination of the demo world, less the
    `held_out` prompts' (the evaluation prompts), reshuffled when used up. Unlike independent draws, this
    keeps a small demo set from confounding attributes (e.g. every white background with a blue shape),
    which a model would learn instead of the words."""

    def __init__(self, rng: np.random.Generator, held_out: frozenset[str] = frozenset()):
        self.rng = rng
        self.all = [
            (c, s, d, b)
            for c in COLORS for s in SHAPES for d in DIRECTIONS for b in BACKGROUNDS
            if caption_for(c, s, d, b) not in held_out
        ]  # fmt: skip
        self.queue: list[tuple[str, str, str, str]] = []

    def shot(self, start_s: float, duration_s: float, avoid_bg: str | None) -> Shot:
        """The next combination whose background is not `avoid_bg` (a cut always changes the scene)."""
        if not any(b != avoid_bg for *_, b in self.queue):
            self.queue += [self.all[i] for i in self.rng.permutation(len(self.all))]
        i = next(i for i, (*_, b) in enumerate(self.queue) if b != avoid_bg)
        color, shape, direction, background = self.queue.pop(i)
        caption = caption_for(color, shape, direction, background)
        return Shot(start_s, start_s + duration_s, color, shape, direction, background, caption)


def _frames_for(seconds: float) -> int:
    return int(round(seconds * FPS))


def make_demo_data(
    out_dir: str | Path,
    videos: int = 24,
    seed: int = 0,
    multi_shot_fraction: float = 0.35,
    held_out: list[str] | None = None,
    sizes: list[tuple[int, int]] | None = None,
) -> dict:
    """Write `videos` valid videos plus three broken files and ground_truth.json into out_dir. No shot
    shows an attribute combination of the `held_out` prompts (the evaluation prompts), so evaluation asks
    for what training never saw. Video i is sizes[i % len(sizes)] (width, height; default: WIDTH x HEIGHT
    for all), so a demo set can hold landscape and portrait videos."""
    held = frozenset(p.strip().lower() for p in held_out or [])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    combos = Combos(rng, held)
    records = []
    sizes = sizes or [(WIDTH, HEIGHT)]
    for i in range(videos):
        width, height = sizes[i % len(sizes)]
        multi = rng.random() < multi_shot_fraction
        name = f"{'multi' if multi else 'single'}_{i:03d}.mp4"
        # Durations are whole frames so shot boundaries in the ground truth are exact.
        durations = rng.uniform(2.2, 4.5, size=int(rng.integers(2, 4))) if multi else [rng.uniform(2.0, 6.0)]
        shots, chunks, t, prev_bg = [], [], 0.0, None
        for d in durations:
            n = _frames_for(d)
            shot = combos.shot(t, n / FPS, prev_bg)
            chunks.append(render_shot(shot, n, rng, width, height))
            shots.append(shot)
            t, prev_bg = shot.end_s, shot.background
        (out / name).write_bytes(encode_mp4(np.concatenate(chunks), FPS, crf=20))
        caption = None if multi else shots[0].caption
        if caption:
            (out / name).with_suffix(".txt").write_text(caption + "\n")
        records.append(
            {
                "file": name,
                "kind": "multi" if multi else "single",
                "width": width,
                "height": height,
                "caption_sidecar": caption,
                "shots": [asdict(s) for s in shots],
            }
        )
    records += _write_broken(out, rng, combos)
    truth = {
        "held_out_prompts": sorted(held),
        "fps": FPS,
        "width": WIDTH,
        "height": HEIGHT,
        "seed": seed,
        "attributes": ATTRIBUTES,
        "palette": {"color": COLORS, "background": BACKGROUNDS},  # RGB, for the pixel check
        "videos": records,
    }
    (out / GROUND_TRUTH).write_text(json.dumps(truth, indent=1))
    return truth


def _write_broken(out: Path, rng: np.random.Generator, combos: Combos) -> list[dict]:
    (out / "broken_empty.mp4").write_bytes(b"")
    (out / "broken_text.mp4").write_text("this is not a video, only text with a video extension\n")
    valid = encode_mp4(render_shot(combos.shot(0.0, 2.0, None), 48, rng), FPS)
    (out / "broken_truncated.mp4").write_bytes(valid[: len(valid) // 3])
    return [
        {"file": f, "kind": "broken", "caption_sidecar": None, "shots": []}
        for f in ("broken_empty.mp4", "broken_text.mp4", "broken_truncated.mp4")
    ]
