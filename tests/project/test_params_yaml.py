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
