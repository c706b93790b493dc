"""The endpoint's own Prometheus metrics, served as text at /metrics (beside Ray Serve's, which its
metrics export port serves).

One registry per replica process: `METRICS` is made when a replica imports this module. Each series
carries the replica's id, so series from several replicas stay apart when they are summed.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

SECONDS_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800)


class Metrics:
    def __init__(self, replica: str | None = None):
        self.replica = replica or f"pid{os.getpid()}"
        r = self.registry = CollectorRegistry()
        lab = ["replica"]
        self.requests = Counter(
            "reelforge_requests", "HTTP requests by route, method and status.",
            lab + ["route", "method", "status"], registry=r,
        )  # fmt: skip
        self.generation = Histogram(
            "reelforge_generation_seconds", "Seconds to generate and encode a video, by mode (sync or job).",
            lab + ["mode"], buckets=SECONDS_BUCKETS, registry=r,
        )  # fmt: skip
        self.batch = Histogram(
            "reelforge_batch_size", "Videos sampled together in one call of the model.",
            lab, buckets=(1, 2, 4, 8, 16, 32, 64), registry=r,
        )  # fmt: skip
        self.queue = Gauge("reelforge_job_queue_depth", "Jobs queued (all replicas).", lab, registry=r)
        self.jobs = Gauge("reelforge_jobs", "Jobs in the job table by state.", lab + ["state"], registry=r)
        self.model = Gauge(
            "reelforge_model_info", "The model version this replica serves (value 1).",
            lab + ["model_name", "version"], registry=r,
        )  # fmt: skip

    def request(self, route: str, method: str, status: int) -> None:
        self.requests.labels(self.replica, route, method, str(status)).inc()

    def generated(self, mode: str, seconds: float, batch: int) -> None:
        self.generation.labels(self.replica, mode).observe(seconds)
        self.batch.labels(self.replica).observe(batch)

    def serving(self, model_name: str, version: str) -> None:
        self.model.clear()
        self.model.labels(self.replica, model_name, str(version)).set(1)

    def render(self, job_counts: dict[str, int]) -> bytes:
        for state, n in job_counts.items():
            self.jobs.labels(self.replica, state).set(n)
        self.queue.labels(self.replica).set(job_counts.get("queued", 0))
        return generate_latest(self.registry)


METRICS = Metrics()
