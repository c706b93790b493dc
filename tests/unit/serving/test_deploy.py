"""Both replica profiles make deployment options that Ray Serve accepts (validated by Serve itself)."""

from __future__ import annotations

import pytest

from serving.app import Generator
from serving.deploy import deployment_options, load_profile


@pytest.mark.parametrize("name", ["cpu", "gpu"], ids=["cpu-profile", "gpu-profile"])  # not the `gpu` mark
def test_profiles_make_valid_serve_deployments(name):
    opts = deployment_options(load_profile(name))
    deployment = Generator.options(**opts)  # Serve validates the config here
    config = deployment._deployment_config
    assert config.max_queued_requests == opts["max_queued_requests"] > 0
    assert config.graceful_shutdown_timeout_s == opts["graceful_shutdown_timeout_s"]
    if name == "gpu":  # one replica per GPU, scaled between min and max
        assert opts["ray_actor_options"]["num_gpus"] == 1 and "num_replicas" not in opts
        scaling = config.autoscaling_config
        assert (scaling.min_replicas, scaling.max_replicas) == (1, 8) and scaling.target_ongoing_requests == 2
        assert load_profile(name)["autocast"] == "bfloat16"
    else:
        assert deployment.num_replicas == 1 and config.autoscaling_config is None
