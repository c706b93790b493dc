"""Autoscaling on the work replicas have, jobs included.

Serve's default policy scales on ongoing HTTP requests per replica. A job runs in a replica's runner thread,
not in a request, so a replica busy with jobs, with a queue behind it, looks idle to it. Each replica reports
the job table's queue depth and the jobs it is running (`Generator.record_autoscaling_stats`); this policy
asks for enough replicas for whichever is larger, the HTTP load or the job load, each at the profile's
`target_ongoing_requests` per replica. The gpu profile names it (`serving/profiles.yaml`).
"""

from __future__ import annotations

from typing import Any

from ray.serve.autoscaling_policy import replica_queue_length_autoscaling_policy
from ray.serve.config import AutoscalingContext


def job_load(ctx: AutoscalingContext) -> float:
    """Jobs queued (the shared table's count, which every replica reports: the latest is taken once) plus
    jobs running on the replicas."""
    metrics = ctx.aggregated_metrics or {}
    queued = max(metrics.get("jobs_queued", {}).values(), default=0.0)
    running = sum(metrics.get("jobs_running", {}).values())
    return queued + running


def job_queue_policy(ctx: AutoscalingContext) -> tuple[float, dict[str, Any]]:
    by_requests, state = replica_queue_length_autoscaling_policy(ctx)
    by_jobs = job_load(ctx) / ctx.config.get_target_ongoing_requests()
    desired = max(by_requests, by_jobs)
    return min(max(desired, ctx.capacity_adjusted_min_replicas), ctx.capacity_adjusted_max_replicas), state
