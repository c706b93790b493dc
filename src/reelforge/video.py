"""Video decode/encode with PyAV (FFmpeg): the only place that touches containers and codecs."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

VIDEO_EXTENSIONS = {".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".gif", ".mpg", ".mpeg", ".ts"}


@dataclass(frozen=True)
class Probe:
    duration_s: float
    fps: float
    width: int
    height: int
    codec: str


def probe(path: str | Path) -> Probe:
    """Container-level facts; raises av.FFmpegError (or ValueError) for files that are not video."""
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError("no video stream")
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 0)
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        else:
            duration = 0.0
        return Probe(
            duration, fps, stream.codec_context.width, stream.codec_context.height, stream.codec_context.name
        )


def _fit_size(width: int, height: int, size: int) -> tuple[int, int]:
    """Dimensions that scale the short side to `size`, keeping the aspect ratio."""
    if width <= height:
        return size, max(size, round(height * size / width))
    return max(size, round(width * size / height)), size


def decode_resized(path: str | Path, size: int) -> Iterator[tuple[float, np.ndarray]]:
    """Yield (time_s, frame) with frame (size, size, 3) uint8: short side scaled to `size`, centre-cropped.

    Frames are shrunk as they are decoded, so memory does not grow with the source resolution.
    """
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        target: tuple[int, int] | None = None
        for frame in container.decode(stream):
            if target is None:
                target = _fit_size(frame.width, frame.height, size)
            w, h = target
            rgb = frame.reformat(width=w, height=h, format="rgb24", interpolation="AREA").to_ndarray()
            top, left = (h - size) // 2, (w - size) // 2
            yield float(frame.time), rgb[top : top + size, left : left + size]


def encode_mp4(frames: np.ndarray, fps: float, crf: int = 18) -> bytes:
    """(T, H, W, 3) uint8 -> H.264 MP4 bytes (H and W must be even)."""
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf)}
        for rgb in frames:
            for packet in stream.encode(
                av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            ):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def encode_gif(frames: np.ndarray, fps: float, scale: int = 1) -> bytes:
    """(T, H, W, 3) uint8 -> looping GIF bytes (the MLflow UI previews GIFs inline, not MP4)."""
    images = [
        Image.fromarray(f).resize((f.shape[1] * scale, f.shape[0] * scale), Image.NEAREST) for f in frames
    ]
    buf = io.BytesIO()
    images[0].save(
        buf, format="GIF", save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0
    )
    return buf.getvalue()


def decode_bytes(data: bytes) -> np.ndarray:
    """Encoded video bytes -> (T, H, W, 3) uint8."""
    with av.open(io.BytesIO(data)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
