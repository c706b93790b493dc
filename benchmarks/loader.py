"""What the encoded clip store costs and keeps: bytes per clip and PSNR against raw uint8 at the same shape,
and the price of decoding against reading raw arrays.

For each clip shape (--shapes HxW, --seconds, --fps) and each encoder setting (--settings codec:pix_fmt:crf:
preset; the first is params' default), on --clips clips of each content kind:
  textured  a synthetic natural-like scene: luma with a 1/f spectrum and smoother chroma (1/f^2), panning
            at sub-pixel speed under a moving disc, with sensor-like grain (sigma 1.5); no recorded
            footage is available here, so this stands in for it
  demo      the demo world's flat-colour shape over a flat background (what `make demo` stores)
it encodes each clip as the store does (`encode_mp4`), decodes it back (`decode_bytes`), and reports the
median bytes per clip, the ratio to raw uint8 (T x H x W x 3 bytes), the median and minimum PSNR, and the
median milliseconds to encode, to decode, and to read the same clip stored raw (`np.load` of its `.npy`
bytes: the baseline, measured in the same run). Prints a table, writes JSON.

    python benchmarks/loader.py --out reports/bench_loader.json
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import time
from pathlib import Path

import numpy as np

from reelforge.config import IngestParams
from reelforge.data.demo import BACKGROUNDS, COLORS
from reelforge.data.video import decode_bytes, encode_mp4, psnr_db


def _noise(rng: np.random.Generator, h: int, w: int, power: float) -> np.ndarray:
    """(h, w) noise with a 1/f**power amplitude spectrum, zero mean, unit std."""
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.rfftfreq(w)[None, :]
    amp = 1.0 / np.maximum(np.hypot(fy, fx), 1.0 / max(h, w)) ** power
    field = np.fft.irfft2(amp * np.exp(2j * np.pi * rng.random(amp.shape)), s=(h, w))
    return (field - field.mean()) / field.std()


def textured(rng: np.random.Generator, t: int, h: int, w: int) -> np.ndarray:
    """(t, h, w, 3) uint8: a natural-like scene (luma with a 1/f spectrum, smoother chroma with 1/f^2, as
    in photographs) panning 0.7 px/frame right and 0.3 down, a disc crossing it, and per-frame grain."""
    th, tw = h + int(0.3 * t) + 2, w + int(0.7 * t) + 2
    y = 128 + 40 * _noise(rng, th, tw, 1.0)
    cb, cr = 15 * _noise(rng, th, tw, 2.0), 15 * _noise(rng, th, tw, 2.0)
    scene = np.stack([y + 1.402 * cr, y - 0.344 * cb - 0.714 * cr, y + 1.772 * cb], -1)  # BT.601
    yy, xx = np.mgrid[0:h, 0:w]
    out = np.empty((t, h, w, 3), np.uint8)
    for i in range(t):
        y0, x0 = 0.3 * i, 0.7 * i
        iy, ix, fy_, fx_ = int(y0), int(x0), y0 % 1, x0 % 1
        frame = (
            scene[iy : iy + h, ix : ix + w] * (1 - fy_) * (1 - fx_)
            + scene[iy + 1 : iy + 1 + h, ix : ix + w] * fy_ * (1 - fx_)
            + scene[iy : iy + h, ix + 1 : ix + 1 + w] * (1 - fy_) * fx_
            + scene[iy + 1 : iy + 1 + h, ix + 1 : ix + 1 + w] * fy_ * fx_
        )
        cx, cy, r = w * (0.2 + 0.6 * i / max(t - 1, 1)), h / 2, min(h, w) / 6
        frame[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = (230, 60, 40)
        out[i] = np.clip(frame + rng.normal(0, 1.5, frame.shape), 0, 255)
    return out


def demo_world(rng: np.random.Generator, t: int, h: int, w: int) -> np.ndarray:
    """(t, h, w, 3) uint8: one flat-colour disc crossing a flat background, as the demo renders."""
    colours, backgrounds = list(COLORS.values()), list(BACKGROUNDS.values())
    fg, bg = colours[rng.integers(len(colours))], backgrounds[rng.integers(len(backgrounds))]
    yy, xx = np.mgrid[0:h, 0:w]
    out = np.empty((t, h, w, 3), np.uint8)
    for i in range(t):
        cx, cy, r = w * (0.2 + 0.6 * i / max(t - 1, 1)), h / 2, min(h, w) / 4
        out[i] = bg
        out[i][(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = fg
    return out


CONTENT = {"textured": textured, "demo": demo_world}
_P = IngestParams()
DEFAULT_SETTING = f"{_P.codec}:{_P.pix_fmt}:{_P.crf}:{_P.preset}"  # params' (lossless)
SCALE_SETTING = "h264:yuv444p:16:medium"  # what docs/data.md recommends at scale


def _ms(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return (time.perf_counter() - t0) * 1e3, out


def bench_cell(kind: str, h: int, w: int, seconds: float, fps: float, setting: str, clips: int) -> dict:
    codec, pix_fmt, crf, preset = setting.split(":")
    p = IngestParams(codec=codec, pix_fmt=pix_fmt, crf=int(crf), preset=preset)  # validated as params are
    t = round(seconds * fps)
    rng = np.random.default_rng(0)
    sizes, psnrs, enc, dec, raw_read = [], [], [], [], []
    for _ in range(clips):
        frames = CONTENT[kind](rng, t, h, w)
        ms, data = _ms(lambda f=frames: encode_mp4(f, fps, p.crf, p.codec, p.pix_fmt, p.preset))
        enc.append(ms)
        ms, back = _ms(lambda d=data: decode_bytes(d))
        dec.append(ms)
        buf = io.BytesIO()
        np.save(buf, frames)
        raw = buf.getvalue()
        ms, _ = _ms(lambda r=raw: np.load(io.BytesIO(r)))
        raw_read.append(ms)
        sizes.append(len(data))
        psnrs.append(psnr_db(back, frames))
    raw_bytes = t * h * w * 3
    return {
        "content": kind,
        "shape": f"{h}x{w}",
        "seconds": seconds,
        "fps": fps,
        "frames": t,
        "setting": setting,
        "clips": clips,
        "bytes_median": int(statistics.median(sizes)),
        "raw_bytes": raw_bytes,
        "ratio_median": round(raw_bytes / statistics.median(sizes), 1),
        "psnr_db_median": round(statistics.median(psnrs), 2),
        "psnr_db_min": round(min(psnrs), 2),
        "encode_ms_median": round(statistics.median(enc), 1),
        "decode_ms_median": round(statistics.median(dec), 1),
        "raw_read_ms_median": round(statistics.median(raw_read), 2),
        "decode_frames_per_s": round(t / (statistics.median(dec) / 1e3), 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", nargs="+", default=["64x64", "256x256", "256x448"])
    ap.add_argument("--seconds", nargs="+", type=float, default=[2.0, 10.0])
    ap.add_argument("--fps", nargs="+", type=float, default=[8.0, 24.0])
    ap.add_argument(
        "--settings",
        nargs="+",
        default=[DEFAULT_SETTING, SCALE_SETTING, "h264:yuv420p:16:medium"],
        help="codec:pix_fmt:crf:preset; the first is params' default (lossless), the second for scale",
    )
    ap.add_argument("--content", nargs="+", default=list(CONTENT), choices=list(CONTENT))
    ap.add_argument("--clips", type=int, default=3, help="clips per cell (medians over them)")
    ap.add_argument("--out", type=Path, default=Path("reports/bench_loader.json"))
    args = ap.parse_args()

    rows = []
    head = (
        f"{'content':<9} {'shape':>8} {'s':>4} {'fps':>3} {'setting':<24} {'KiB/clip':>9} {'raw KiB':>8} "
        f"{'ratio':>6} {'PSNR med':>8} {'min':>6} {'enc ms':>7} {'dec ms':>7} {'raw ms':>7} {'dec fps':>8}"
    )
    print(head)
    for kind in args.content:
        for shape in args.shapes:
            h, w = (int(x) for x in shape.split("x"))
            for seconds in args.seconds:
                for fps in args.fps:
                    for setting in args.settings:
                        r = bench_cell(kind, h, w, seconds, fps, setting, args.clips)
                        rows.append(r)
                        print(
                            f"{kind:<9} {r['shape']:>8} {seconds:>4g} {fps:>3g} {setting:<24} "
                            f"{r['bytes_median'] / 1024:>9.1f} {r['raw_bytes'] / 1024:>8.0f} "
                            f"{r['ratio_median']:>6.1f} {r['psnr_db_median']:>8.2f} {r['psnr_db_min']:>6.2f} "
                            f"{r['encode_ms_median']:>7.1f} {r['decode_ms_median']:>7.1f} "
                            f"{r['raw_read_ms_median']:>7.2f} {r['decode_frames_per_s']:>8.0f}",
                            flush=True,
                        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"rows": rows, "args": {k: str(v) for k, v in vars(args).items()}}, indent=2)
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
