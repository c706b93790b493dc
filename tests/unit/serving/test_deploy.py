"""Both replica profiles make deployment options that Ray Serve accepts (validated by Serve itself)."""

from __future__ import annotations

import pytest
from ray.serve._private.common import DeploymentID, ReplicaID
from ray.serve.config import AutoscalingConfig, AutoscalingContext

from serving.app import Generator
from serving.autoscale import job_queue_policy
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
        assert scaling.policy.get_policy().__qualname__ == job_queue_policy.__qualname__  # the path resolves
        assert load_profile(name)["autocast"] == "bfloat16"
    else:
        assert deployment.num_replicas == 1 and config.autoscaling_config is None


def _context(replicas: int, http_requests: float, jobs_queued: float, jobs_running: list[float]):
    deployment = DeploymentID(name="generator", app_name="reelforge")
    ids = [ReplicaID(f"r{i}", deployment) for i in range(replicas)]
    return AutoscalingContext(
        deployment_id=deployment, deployment_name="generator", app_name="reelforge",
        current_num_replicas=replicas, target_num_replicas=replicas, running_replicas=ids,
        total_num_requests=http_requests, total_queued_requests=0,
        aggregated_metrics={"jobs_queued": dict.fromkeys(ids, jobs_queued),
                            "jobs_running": dict(zip(ids, jobs_running, strict=True))},
        raw_metrics={}, capacity_adjusted_min_replicas=1, capacity_adjusted_max_replicas=8, policy_state={},
        last_scale_up_time=None, last_scale_down_time=None, current_time=None,
        config=AutoscalingConfig(min_replicas=1, max_replicas=8, target_ongoing_requests=2),
    )  # fmt: skip


def test_the_autoscaling_policy_counts_jobs_as_well_as_http_requests():
    assert job_queue_policy(_context(1, 0, 0, [0]))[0] == 1  # idle: the minimum
    assert job_queue_policy(_context(1, 0, 7, [1]))[0] == 4  # busy with jobs, no HTTP: (7 + 1) / 2
    assert job_queue_policy(_context(2, 12, 1, [1, 1]))[0] == 6  # HTTP is the larger load: 12 / 2
    assert job_queue_policy(_context(4, 0, 40, [1, 1, 1, 1]))[0] == 8  # at most max_replicas
