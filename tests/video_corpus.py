"""A corpus of real encodings, one per case ingest must handle, with the outcome each must have.

Every video shows its own random blocky background (so no two files are near-duplicates) and a bright
square moving across it (so none is static). With the test clip of 8 frames at 8 fps (1 s), a file of
`seconds` s in one shot yields floor(seconds) clips.
"""

from __future__ import annotations

import os
import zipfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def frames(seed: int, w: int, h: int, n: int, *, dark: bool = False, static: bool = False) -> np.ndarray:
    """(n, h, w, 3) uint8: a random 4x4 colour grid upsampled, with a white square moving right."""
    rng = np.random.default_rng(seed)
    grid = rng.integers(40, 215, (4, 4, 3)).astype(np.uint8)
    bg = grid.repeat(-(-h // 4), 0).repeat(-(-w // 4), 1)[:h, :w]
    side = max(4, min(w, h) // 5)
    out = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        out[i] = bg
        x = 0 if static else int((w - side) * i / max(n - 1, 1))
        out[i, (h - side) // 2 : (h + side) // 2, x : x + side] = 250
    return out // 40 if dark else out


def encode(
    path: Path,
    video: np.ndarray,
    fps: float = 24,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    options: dict | None = None,
    times: list[float] | None = None,
    rotation: int = 0,
    audio: bool = False,
) -> Path:
    """Write `video` with PyAV; `times` gives explicit (variable) frame timestamps in seconds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format=_format_for(path)) as c:
        s = c.add_stream(codec, rate=Fraction(fps).limit_denominator(1000))
        s.width, s.height, s.pix_fmt = video.shape[2], video.shape[1], pix_fmt
        s.options = options or {}
        if times is not None:
            s.codec_context.time_base = Fraction(1, 1000)
        if rotation:
            s.set_display_rotation(rotation)
        a = c.add_stream("aac", rate=16000) if audio else None
        for i, rgb in enumerate(video):
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            if times is not None:
                f.pts, f.time_base = round(times[i] * 1000), Fraction(1, 1000)
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
        if a is not None:
            _mux_tone(c, a, len(video) / fps)
    return path


def _mux_tone(container, stream, seconds: float) -> None:
    """Encode and mux a mono sine tone of `seconds` into an AAC `stream` at 16 kHz."""
    tone = np.sin(np.arange(int(16000 * seconds)) / 5).astype(np.float32)[None]  # (1, samples)
    for i in range(0, tone.shape[1], 1024):
        af = av.AudioFrame.from_ndarray(tone[:, i : i + 1024].copy(), format="fltp", layout="mono")
        af.sample_rate, af.pts = 16000, i
        for p in stream.encode(af):
            container.mux(p)
    for p in stream.encode():
        container.mux(p)


def _format_for(path: Path) -> str | None:
    return {".mkv": "matroska", ".webm": "webm", ".gif": "gif"}.get(path.suffix.lower())


X264 = {"preset": "ultrafast"}


def build_corpus(root: Path, outside: Path) -> dict[str, tuple]:
    """Write the corpus under root; return file -> ("clips", n) or ("reject", stage, reason)."""
    f = frames
    encode(root / "h264.mp4", f(1, 128, 96, 60))
    encode(root / "hevc_10bit.MKV", f(2, 128, 96, 60), codec="libx265", pix_fmt="yuv420p10le",
           options={"preset": "ultrafast", "x265-params": "log-level=none"})  # fmt: skip
    encode(root / "vp9.WebM", f(3, 128, 96, 60), codec="libvpx-vp9", options={"deadline": "realtime"})
    encode(root / "av1.mkv", f(4, 128, 96, 60), codec="libsvtav1", options={"preset": "12"})
    encode(root / "mpeg4.avi", f(5, 128, 96, 60), codec="mpeg4")
    encode(root / "mjpeg.mov", f(6, 128, 96, 60), codec="mjpeg", pix_fmt="yuvj420p")
    encode(root / "ffv1_odd.mkv", f(7, 97, 75, 60), codec="ffv1", pix_fmt="yuv444p")
    encode(root / "anim.gif", f(8, 128, 96, 25), fps=10, codec="gif", pix_fmt="rgb8")
    encode(root / "rotated.mp4", f(9, 128, 96, 60), rotation=90, options=X264)
    vfr = np.cumsum([0] + [1 / 30 if i % 3 else 1 / 12 for i in range(59)]).tolist()  # 12-30 fps, ~3.3 s
    encode(root / "vfr.mkv", f(10, 128, 96, 60), codec="libx264", times=vfr, options=X264)
    encode(root / "with_audio.mp4", f(11, 128, 96, 60), audio=True, options=X264)
    encode(root / "portrait.mp4", f(12, 72, 128, 60), options=X264)
    encode(root / "uhd_4k.mp4", f(13, 3840, 2160, 12), fps=10, options=X264)
    encode(root / "vidéo 東京.mp4", f(14, 128, 96, 60), options=X264)
    encode(root / "sub" / "dir" / "nested.m4v", f(15, 128, 96, 60), options=X264)
    encode(root / "static.mp4", f(16, 128, 96, 60, static=True), options=X264)
    encode(root / "dark.mp4", f(17, 128, 96, 60, dark=True), options=X264)
    encode(root / "low_res.mp4", f(18, 48, 32, 60), options=X264)
    encode(root / "too_short.mp4", f(19, 128, 96, 12), options=X264)
    encode(root / "bomb.mp4", np.zeros((2, 4096, 4096, 3), np.uint8), options=X264)
    encode(root / "too_long.mkv", f(20, 128, 96, 3), times=[0.0, 50.0, 100.0], options=X264)
    big = encode(root / "big.mkv", f(21, 128, 96, 60), options=X264)
    with open(big, "ab") as fh:
        fh.write(os.urandom(3 * 2**20))  # a valid video with junk after it: over the 2 MiB test limit
    (root / "h264_copy.mp4").write_bytes((root / "h264.mp4").read_bytes())
    encode(root / "reencoded_h264.mp4", f(1, 128, 96, 60), options={"crf": "30"})  # same picture: near-dup
    (root / "zero.mp4").write_bytes(b"")
    (root / "text.mp4").write_text("not a video\n")
    data = (root / "h264.mp4").read_bytes()
    (root / "truncated.mp4").write_bytes(data[: len(data) // 3])
    _audio_only(root / "audio_only.mp4")
    (root / "image.webm").write_bytes(_png())
    corrupt = bytearray(encode(root / "corrupt.mp4", f(22, 128, 96, 60), options=X264).read_bytes())
    mid = len(corrupt) // 2
    corrupt[mid : mid + 2000] = np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8).tobytes()
    (root / "corrupt.mp4").write_bytes(bytes(corrupt))
    encode(outside / "elsewhere.mp4", f(23, 128, 96, 60), options=X264)
    (root / "escape.mp4").symlink_to(outside / "elsewhere.mp4")
    (root / "zz_link_inside.mp4").symlink_to(root / "sub" / "dir" / "nested.m4v")
    with zipfile.ZipFile(outside / "archive.zip", "w") as z:
        z.write(encode(outside / "zipped.mp4", f(24, 128, 96, 60), options=X264), "zipped.mp4")
    return EXPECTED


def _audio_only(path: Path) -> None:
    with av.open(str(path), "w") as c:
        _mux_tone(c, c.add_stream("aac", rate=16000), 2.0)


def _png() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frames(25, 128, 96, 1)[0]).save(buf, format="PNG")
    return buf.getvalue()


EXPECTED: dict[str, tuple] = {
    "h264.mp4": ("clips", 2),
    "hevc_10bit.MKV": ("clips", 2),
    "vp9.WebM": ("clips", 2),
    "av1.mkv": ("clips", 2),
    "mpeg4.avi": ("clips", 2),
    "mjpeg.mov": ("clips", 2),
    "ffv1_odd.mkv": ("clips", 2),
    "anim.gif": ("clips", 2),
    "rotated.mp4": ("clips", 2),
    "vfr.mkv": ("clips", 3),
    "with_audio.mp4": ("clips", 2),
    "portrait.mp4": ("clips", 2),
    "uhd_4k.mp4": ("clips", 1),
    "vidéo 東京.mp4": ("clips", 2),
    "sub/dir/nested.m4v": ("clips", 2),
    "zz_link_inside.mp4": ("reject", "dedup", "duplicate_file"),
    "static.mp4": ("reject", "filter", "static"),
    "dark.mp4": ("reject", "filter", "too_dark"),
    "low_res.mp4": ("reject", "probe", "low_resolution"),
    "too_short.mp4": ("reject", "cut", "no_full_clip"),
    "bomb.mp4": ("reject", "probe", "too_many_pixels"),
    "too_long.mkv": ("reject", "probe", "too_long"),
    "big.mkv": ("reject", "fetch", "file_too_large"),
    "h264_copy.mp4": ("reject", "dedup", "duplicate_file"),
    "reencoded_h264.mp4": ("reject", "dedup", "near_duplicate"),
    "zero.mp4": ("reject", "fetch", "empty_file"),
    "text.mp4": ("reject", "probe", "not_video"),
    "truncated.mp4": ("reject", "probe", "not_video"),
    "audio_only.mp4": ("reject", "probe", "not_video"),
    "image.webm": ("reject", "cut", "no_full_clip"),
    "corrupt.mp4": ("reject", "decode", "decode_error"),  # the decoder reports it: not trusted
    "escape.mp4": ("reject", "fetch", "outside_input_root"),
}
