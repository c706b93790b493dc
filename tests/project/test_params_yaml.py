"""params.yaml is the one home of every tunable: it is valid, and the code's defaults equal it."""

from __future__ import annotations

import yaml

from reelforge.config import Params, load_params
from tests.conftest import REPO


def test_params_yaml_is_valid():
    load_params(REPO / "params.yaml")


def test_code_defaults_equal_params_yaml_key_for_key():
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    assert set(raw) == set(Params.model_fields), "params.yaml sections differ from reelforge.config.Params"
    for name, field in Params.model_fields.items():
        defaults = field.default_factory().model_dump()
        assert set(raw[name]) == set(defaults), f"{name}: keys differ (a tunable missing on one side)"
        for key, value in defaults.items():
            assert raw[name][key] == value, (
                f"{name}.{key}: code default {value!r} != params.yaml {raw[name][key]!r}"
            )


def test_the_demo_gates_its_model_on_what_the_videos_show():
    """params.yaml is the demo's configuration: its promotion includes the pixel check, so a fresh
    `make demo` serves a model only when its videos pass it (serve refuses a missing champion)."""
    gates = load_params(REPO / "params.yaml").promote.min_pixel_acc
    assert gates and all(0 < least <= 1 for least in gates.values()), gates
