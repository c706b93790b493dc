"""Online shot-boundary detection and clip sampling: one pass over decoded frames, no frame held twice.

Frames arrive in decode order. A hard cut is a jump in the mean absolute difference between consecutive
YUV thumbnails (`ingest.shot_threshold`, 0-1); `CutDetector` finds them while thumbnailing only every
`ingest.cut_check_stride`-th frame. Inside a shot, clips are the longest of the source's bucket frame
counts at `clip.fps`, laid end to end from the shot's start (so a long shot is split), and the shot's
remainder becomes one clip of the longest shorter count it fills; each target time takes the latest source
frame at or before it, which resamples any source rate, constant or variable. A clip is emitted only once
the shot is known to last its full duration, so no clip ever spans a cut.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

EPS = 1e-6


@dataclass
class CutDetector:
    """Hard cuts between consecutive frames, from thumbnails of every `stride`-th frame.

    A jump above `threshold` between two checked frames means a cut somewhere between them; only then are
    the frames in between thumbnailed, and the cut lands on the exact frame where the consecutive
    difference jumps, as if every frame had been checked. So a video costs one thumbnail per `stride`
    frames plus `stride - 1` per cut, and frames leave `stride - 1` frames late. What is missed: a flash
    shorter than `stride` frames that returns to the same picture.
    """

    threshold: float
    stride: int
    thumbnail: Callable[[object], np.ndarray]  # decoded frame -> (3, 16, 16) float in [0, 1]
    _last: np.ndarray | None = None  # thumbnail of the last checked frame
    _waiting: list[tuple[float, object]] = field(default_factory=list)  # frames after it

    def push(self, time: float, frame: object) -> list[tuple[float, object, bool]]:
        """Feed one frame; return the frames now checked, in order, as (time, frame, is_first_of_shot)."""
        self._waiting.append((time, frame))
        if self._last is not None and len(self._waiting) < self.stride:
            return []
        return self._check()

    def finish(self) -> list[tuple[float, object, bool]]:
        return self._check() if self._waiting else []

    def _jump(self, a: np.ndarray, b: np.ndarray) -> bool:
        return float(np.abs(a - b).mean()) > self.threshold

    def _check(self) -> list[tuple[float, object, bool]]:
        waiting, self._waiting = self._waiting, []
        last, thumb = self._last, self.thumbnail(waiting[-1][1])
        self._last = thumb
        if last is None:  # the stream's first frame starts the first shot
            return [(t, f, True) for t, f in waiting]
        if not self._jump(last, thumb):
            return [(t, f, False) for t, f in waiting]
        out = []
        for i, (t, f) in enumerate(waiting):  # locate the cut(s): consecutive differences
            now = thumb if i == len(waiting) - 1 else self.thumbnail(f)
            out.append((t, f, self._jump(last, now)))
            last = now
        return out


@dataclass
class Clip:
    start_s: float
    end_s: float
    frames: list[np.ndarray]  # arrays of (height, width, 3) uint8, one per frame (set when emitted)


RAW_BUDGET = 64 * 2**20  # decoded frames held unconverted for clips not yet known to complete


@dataclass
class _Held:
    """A decoded frame a clip will use. It is converted (resized to clip size) only when its clip is
    emitted, so a clip cut short by a shot's end costs no conversions, unless the frames held would
    exceed RAW_BUDGET (4K sources): then it is converted at once and the raw frame dropped."""

    time: float
    frame: object
    converted: np.ndarray | None = None

    @property
    def raw_bytes(self) -> int:
        return 0 if self.converted is not None else int(self.frame.width * self.frame.height * 1.5)


@dataclass
class ClipSampler:
    frame_counts: list[int]  # the clip lengths a shot is cut into, longest first
    fps: float
    max_clips_per_shot: int
    convert: Callable[[object], np.ndarray]  # decoded frame -> (height, width, 3) uint8
    shots: int = 0
    longest_shot_s: float = 0.0
    _shot_start: float = 0.0
    _held: _Held | None = None
    _clips_in_shot: int = 0
    _building: list[_Held] = field(default_factory=list)
    _pending: Clip | None = None  # full of frames, waiting to learn that the shot lasts until its end

    @property
    def num_frames(self) -> int:
        return self.frame_counts[0]

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.fps

    def _target(self) -> float:
        return self._shot_start + self._clips_in_shot * self.duration_s + len(self._building) / self.fps

    def _convert(self, held: _Held) -> np.ndarray:
        if held.converted is None:
            held.converted, held.frame = self.convert(held.frame), None
        return held.converted

    def _emit(self, clip: Clip) -> Clip:
        clip.frames = [self._convert(h) for h in clip.frames]
        return clip

    def _take_held(self) -> None:
        self._building.append(self._held)  # the same _Held may serve several targets
        held = {id(h): h for h in self._building + (self._pending.frames if self._pending else [])}
        if sum(h.raw_bytes for h in held.values()) > RAW_BUDGET:
            self._convert(self._held)
        if len(self._building) == self.num_frames:
            start = self._shot_start + self._clips_in_shot * self.duration_s
            self._pending = Clip(start, start + self.duration_s, self._building)
            self._building, self._clips_in_shot = [], self._clips_in_shot + 1

    def _sampling(self) -> bool:
        return self._pending is None and self._clips_in_shot < self.max_clips_per_shot

    def push(self, time: float, frame: object, first_of_shot: bool) -> list[Clip]:
        """Feed one frame (and whether a cut precedes it, from `CutDetector`); return the clips it
        completed."""
        out: list[Clip] = []
        if first_of_shot:
            if self.shots:
                out += self._end_shot(time)
            self._start_shot(time)
        if self._pending is not None and time >= self._pending.end_s - EPS:
            out.append(self._emit(self._pending))
            self._pending = None
        # Every target time before this frame is served by the held (previous) frame.
        while self._held is not None and self._sampling() and time > self._target() + EPS:
            self._take_held()
            if self._pending is not None and time >= self._pending.end_s - EPS:
                out.append(self._emit(self._pending))
                self._pending = None
        self._held = _Held(time, frame)
        return out

    def finish(self, end_time: float) -> list[Clip]:
        """End of stream at `end_time` (last frame's time plus its duration)."""
        return self._end_shot(end_time)

    def _start_shot(self, time: float) -> None:
        self._shot_start, self._held, self._clips_in_shot, self._building = time, None, 0, []
        self.shots += 1

    def _end_shot(self, end_time: float) -> list[Clip]:
        self.longest_shot_s = max(self.longest_shot_s, end_time - self._shot_start)
        while self._held is not None and self._sampling() and self._target() < end_time - EPS:
            self._take_held()  # the shot's last frame serves the targets up to its end
        done = self._pending
        self._pending = None
        out = [self._emit(done)] if done is not None and done.end_s <= end_time + EPS else []
        if self._building and self._clips_in_shot < self.max_clips_per_shot:  # the remainder: a shorter clip
            start = self._shot_start + self._clips_in_shot * self.duration_s
            fits = [n for n in self.frame_counts[1:] if start + n / self.fps <= end_time + EPS]
            if fits and len(self._building) >= fits[0]:
                out.append(self._emit(Clip(start, start + fits[0] / self.fps, self._building[: fits[0]])))
        self._building = []
        return out
