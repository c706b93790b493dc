"""A replica's job runner: one thread that claims queued jobs from the shared table and generates them.

Progress is reported after every sampling step; a report that finds the job no longer running (the client
cancelled it) stops sampling there. `stop` lets the job in hand finish (a replica retired by a promotion
finishes it on the version it started on) and claims nothing more.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable

from serving.jobs import Job, JobStore

log = logging.getLogger("reelforge.jobs")

# (requests, report(fraction)) -> one (bytes, file suffix) per request; report raises Stopped when every
# job of the batch was cancelled
Generate = Callable[[list[dict], Callable[[float], None]], list[tuple[bytes, str]]]


class Stopped(Exception):
    """The job was cancelled (or taken back) while it ran."""


class JobRunner:
    def __init__(
        self,
        store: JobStore,
        generate: Generate,
        version: Callable[[], str],
        name: str,
        max_batch: int = 1,
        poll_s: float = 0.5,
        maintenance_s: float = 10.0,
    ):
        self.store, self.generate, self.version, self.name = store, generate, version, name
        self.max_batch, self.poll_s, self.maintenance_s = max_batch, poll_s, maintenance_s
        self.current: list[str] = []
        self._stop, self._wake = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"jobs-{name}", daemon=True)

    def start(self) -> JobRunner:
        self._thread.start()
        return self

    def wake(self) -> None:
        """A job was just queued here: claim now instead of at the next poll (other replicas poll)."""
        self._wake.set()

    def stop(self, wait_s: float) -> bool:
        """Claim nothing more; wait up to wait_s for the job in hand. True when the runner has stopped."""
        self._stop.set()
        self._wake.set()
        self._thread.join(wait_s)
        return not self._thread.is_alive()

    def _loop(self) -> None:
        last_maintenance = 0.0
        while not self._stop.is_set():
            try:
                if time.monotonic() - last_maintenance > self.maintenance_s:
                    for job_id in self.store.recover():
                        log.warning("job %s: its replica stopped reporting; re-queued or failed", job_id)
                    self.store.expire()
                    last_maintenance = time.monotonic()
                jobs = self.store.claim(self.name, self.version(), self.max_batch)
            except Exception:  # the database is unreachable for a moment: try again, do not die
                log.exception("job table")
                self._stop.wait(self.poll_s * 4)
                continue
            if not jobs:
                self._wake.wait(self.poll_s)
                self._wake.clear()
                continue
            self.run(jobs)

    def run(self, jobs: list[Job]) -> None:
        """Generate a batch of claimed jobs in one call. A job cancelled meanwhile is dropped from the
        result; sampling stops early only when every job of the batch was cancelled."""
        self.current = [j.id for j in jobs]

        def report(fraction: float) -> None:
            alive = [self.store.progress(j.id, self.name, fraction) for j in jobs]
            if not any(alive):
                raise Stopped

        try:
            results = self.generate([j.request for j in jobs], report)
            for job, (data, suffix) in zip(jobs, results, strict=True):
                self.store.succeed(job.id, self.name, data, suffix)
        except Stopped:
            log.info("jobs %s: stopped (cancelled)", self.current)
        except Exception as exc:
            log.error("jobs %s failed:\n%s", self.current, traceback.format_exc())
            for job in jobs:
                self.store.fail(job.id, self.name, f"{type(exc).__name__}: {exc}")
        finally:
            self.current = []
