import pytest

from reelforge.config import ConfigError, load_params

REPO_PARAMS = __import__("pathlib").Path(__file__).resolve().parents[2] / "params.yaml"


def test_repo_params_are_valid():
    p = load_params(REPO_PARAMS)
    assert p.clip.num_frames == 16 and p.train.model_size in ("tiny",)


def test_unknown_key_is_named_with_fix(tmp_path):
    f = tmp_path / "params.yaml"
    f.write_text("train:\n  stepz: 3\n")
    with pytest.raises(ConfigError, match=r"train\.stepz.*remove it or fix its spelling"):
        load_params(f)


def test_all_problems_reported_at_once(tmp_path):
    f = tmp_path / "params.yaml"
    f.write_text("train:\n  steps: -1\n  model_size: huge\nclip:\n  fps: 0\n")
    with pytest.raises(ConfigError) as err:
        load_params(f)
    assert "clip.fps" in str(err.value) and "train" in str(err.value)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ("train:\n  accelerator: cpu\n  precision: bf16-mixed\n", "bf16-mixed needs a GPU"),
        ("clip:\n  num_frames: 8\nevaluate:\n  i3d_path: /models/i3d.pt\n", "I3D needs at least 10 frames"),
    ],
)
def test_impossible_combinations_fail_at_startup_with_the_fix(tmp_path, params, message):
    f = tmp_path / "params.yaml"
    f.write_text(params)
    with pytest.raises(ConfigError, match=message):
        load_params(f)


def test_overrides_are_typed_and_validated(tmp_path):
    f = tmp_path / "params.yaml"
    f.write_text("train:\n  steps: 10\n")
    assert load_params(f, ["train.steps=3", "sample.guidance=1.5"]).train.steps == 3
    with pytest.raises(ConfigError, match="section.key=value"):
        load_params(f, ["steps=3"])
    with pytest.raises(ConfigError, match="train.steps"):
        load_params(f, ["train.steps=zero"])
