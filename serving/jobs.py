"""Durable generation jobs: the job table and the result files, shared by every replica.

The table lives in an SQL database given by URL: an SQLite file by default (one machine; every replica on
it shares the file), PostgreSQL when `serve.jobs_url` names one (several machines). Results are files under
`results_dir`, written atomically, and deleted with their row `result_ttl_s` after the job finished.

A job is a state machine, each move one conditional UPDATE so that replicas racing for the same row cannot
both win:

    queued --claim--> running --succeed--> succeeded
       |                 |  \\--fail-----> failed
       +--cancel--> cancelled <--cancel--+
                         |
           stale heartbeat (its replica died): back to queued once, then failed with the reason

A running job's worker updates its heartbeat with every progress report (once per sampling step). A
running job whose heartbeat is older than `stale_s` belongs to a replica that died: `recover` re-queues it
once and fails it the second time, saying why.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

STATES = ("queued", "running", "succeeded", "failed", "cancelled")
FINISHED = ("succeeded", "failed", "cancelled")
MAX_ATTEMPTS = 2  # a job whose replica dies is re-queued once
SUBMIT_LOCK = 0x7265656C  # PostgreSQL advisory lock that serialises submitters (the queue bound)

_meta = sa.MetaData()
JOBS = sa.Table(
    "jobs",
    _meta,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("request", sa.Text, nullable=False),  # the request body, JSON
    sa.Column("batch_key", sa.String(128)),  # jobs with equal keys can be sampled in one batch
    sa.Column("owner", sa.String(128)),  # the API key's name, or null on an open local endpoint
    sa.Column("request_id", sa.String(64)),
    sa.Column("progress", sa.Float, nullable=False, default=0.0),
    sa.Column("model_version", sa.String(32)),  # the version that generated it (set when claimed)
    sa.Column("worker", sa.String(64)),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("created_at", sa.Float, nullable=False, index=True),
    sa.Column("started_at", sa.Float),
    sa.Column("heartbeat_at", sa.Float),
    sa.Column("finished_at", sa.Float),
    sa.Column("error", sa.Text),
    sa.Column("result", sa.Text),  # path of the result file
)


class QueueFull(Exception):
    """The job queue is at `max_queued`: the caller should answer 503 with Retry-After."""

    def __init__(self, queued: int):
        super().__init__(f"{queued} jobs are queued, the limit")
        self.queued = queued


@dataclass(frozen=True)
class Job:
    id: str
    status: str
    request: dict
    batch_key: str | None
    owner: str | None
    request_id: str | None
    progress: float
    model_version: str | None
    worker: str | None
    attempts: int
    created_at: float
    started_at: float | None
    heartbeat_at: float | None
    finished_at: float | None
    error: str | None
    result: str | None

    @classmethod
    def of(cls, row: sa.Row) -> Job:
        d = row._asdict()
        return cls(**(d | {"request": json.loads(d["request"])}))

    def public(self) -> dict:
        """What GET /v1/videos/{id} shows."""
        timings = {}
        if self.started_at:
            timings["queued_s"] = round(self.started_at - self.created_at, 3)
        if self.started_at and self.finished_at:
            timings["running_s"] = round(self.finished_at - self.started_at, 3)
        return {
            "id": self.id,
            "status": self.status,
            "progress": round(self.progress, 4),
            "model_version": self.model_version,
            "attempts": self.attempts,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "timings": timings,
            "error": self.error,
            "request": self.request,
        }


def default_url(state_dir: str | Path) -> str:
    return f"sqlite:///{Path(state_dir).resolve() / 'jobs.db'}"


class JobStore:
    def __init__(self, url: str, results_dir: str | Path, result_ttl_s: float, stale_s: float):
        self.results_dir = Path(results_dir)
        self.results_dir.mkdir(parents=True, exist_ok=True)
        self.result_ttl_s, self.stale_s = result_ttl_s, stale_s
        sqlite = url.startswith("sqlite")
        if sqlite:
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.engine = sa.create_engine(url, connect_args={"timeout": 30} if sqlite else {})
        if sqlite:  # readers do not block the writer; every replica on the machine opens the same file

            @sa.event.listens_for(self.engine, "connect")
            def _wal(conn, _record) -> None:  # noqa: ANN001
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA busy_timeout=30000")

        _meta.create_all(self.engine)

    # --- what the API does ---------------------------------------------------------------------------
    def submit(
        self,
        request: dict,
        owner: str | None,
        request_id: str | None,
        max_queued: int,
        batch_key: str | None = None,
    ) -> Job:
        """Queue a job, or raise QueueFull when `max_queued` jobs are already queued. The count and the
        insert are one statement, so concurrent submitters cannot overshoot the bound. Jobs with the same
        `batch_key` may be claimed together (`claim(max_batch=...)`)."""
        job_id = uuid.uuid4().hex
        row = {
            "id": job_id, "status": "queued", "request": json.dumps(request), "batch_key": batch_key,
            "owner": owner, "request_id": request_id, "progress": 0.0, "attempts": 0,
            "created_at": time.time(),
        }  # fmt: skip
        queued = sa.select(sa.func.count()).select_from(JOBS).where(JOBS.c.status == "queued")
        values = sa.select(*[sa.literal(v, JOBS.c[k].type).label(k) for k, v in row.items()]).where(
            queued.scalar_subquery() < max_queued
        )
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":  # its snapshots would let concurrent counts all pass
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": SUBMIT_LOCK})
            insert = JOBS.insert().from_select(list(row), values).returning(JOBS.c.id)
            if conn.execute(insert).first() is None:  # (rowcount is not reliable for INSERT ... SELECT)
                raise QueueFull(conn.execute(queued).scalar_one())
        return self.get(job_id)

    def get(self, job_id: str) -> Job | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(JOBS).where(JOBS.c.id == job_id)).first()
        return Job.of(row) if row else None

    def cancel(self, job_id: str) -> Job | None:
        """DELETE: a queued or running job is cancelled (a running one stops at its next sampling step);
        a finished one is deleted with its result. None when there is no such job."""
        job = self.get(job_id)
        if job is None:
            return None
        with self.engine.begin() as conn:
            moved = conn.execute(
                JOBS.update()
                .where(JOBS.c.id == job_id, JOBS.c.status.in_(("queued", "running")))
                .values(status="cancelled", finished_at=time.time(), error="cancelled by the client")
            ).rowcount
            if not moved:
                conn.execute(JOBS.delete().where(JOBS.c.id == job_id))
        if not moved and job.result:
            Path(job.result).unlink(missing_ok=True)
        return job

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(JOBS.c.status, sa.func.count()).group_by(JOBS.c.status)).all()
        return {s: 0 for s in STATES} | dict(rows)

    # --- what a replica's worker does ----------------------------------------------------------------
    def claim(self, worker: str, model_version: str, max_batch: int = 1) -> list[Job]:
        """The oldest queued job, moved to running for `worker`, with up to max_batch - 1 more queued jobs
        of the same batch key (oldest first); [] when the queue is empty."""
        while True:
            first = self._oldest(JOBS.c.status == "queued", 1)
            if not first:
                return []
            if self._take(first[0], worker, model_version):
                break
        job = self.get(first[0])
        taken = [job]
        if max_batch > 1 and job.batch_key is not None:
            same = (JOBS.c.status == "queued") & (JOBS.c.batch_key == job.batch_key)
            for job_id in self._oldest(same, max_batch - 1):
                if self._take(job_id, worker, model_version):
                    taken.append(self.get(job_id))
        return taken

    def _oldest(self, where: sa.ColumnElement, n: int) -> list[str]:
        with self.engine.connect() as conn:
            query = sa.select(JOBS.c.id).where(where).order_by(JOBS.c.created_at).limit(n)
            return list(conn.execute(query).scalars())

    def _take(self, job_id: str, worker: str, model_version: str) -> bool:
        now = time.time()
        with self.engine.begin() as conn:
            return bool(
                conn.execute(
                    JOBS.update()
                    .where(JOBS.c.id == job_id, JOBS.c.status == "queued")
                    .values(
                        status="running",
                        worker=worker,
                        model_version=model_version,
                        progress=0.0,
                        attempts=JOBS.c.attempts + 1,
                        started_at=now,
                        heartbeat_at=now,
                    )  # fmt: skip
                ).rowcount
            )

    def progress(self, job_id: str, worker: str, fraction: float) -> bool:
        """Record progress and the heartbeat; False when the job is no longer this worker's to run
        (cancelled, deleted, or re-queued after its heartbeat went stale)."""
        with self.engine.begin() as conn:
            return bool(
                conn.execute(
                    JOBS.update()
                    .where(JOBS.c.id == job_id, JOBS.c.status == "running", JOBS.c.worker == worker)
                    .values(progress=fraction, heartbeat_at=time.time())
                ).rowcount
            )

    def succeed(self, job_id: str, worker: str, data: bytes, suffix: str) -> bool:
        """Write the result (atomically) and mark the job succeeded; False (and no file) if it was
        cancelled meanwhile."""
        path = self.results_dir / f"{job_id}.{suffix}"
        tmp = path.with_name(path.name + ".partial")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        with self.engine.begin() as conn:
            done = conn.execute(
                JOBS.update()
                .where(JOBS.c.id == job_id, JOBS.c.status == "running", JOBS.c.worker == worker)
                .values(status="succeeded", progress=1.0, finished_at=time.time(), result=str(path))
            ).rowcount
        if not done:
            path.unlink(missing_ok=True)
        return bool(done)

    def fail(self, job_id: str, worker: str, reason: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                JOBS.update()
                .where(JOBS.c.id == job_id, JOBS.c.status == "running", JOBS.c.worker == worker)
                .values(status="failed", finished_at=time.time(), error=reason)
            )

    def recover(self) -> list[str]:
        """Running jobs whose worker stopped reporting: re-queued once, failed the second time. Returns the
        ids moved."""
        cutoff, now = time.time() - self.stale_s, time.time()
        stale = (JOBS.c.status == "running") & (JOBS.c.heartbeat_at < cutoff)
        with self.engine.begin() as conn:
            rows = conn.execute(sa.select(JOBS.c.id, JOBS.c.attempts, JOBS.c.worker).where(stale)).all()
            for job_id, attempts, worker in rows:
                where = (JOBS.c.id == job_id) & stale
                if attempts >= MAX_ATTEMPTS:
                    values = {
                        "status": "failed", "finished_at": now,
                        "error": f"its replica ({worker}) stopped while running it, {attempts} times",
                    }  # fmt: skip
                else:
                    values = {"status": "queued", "worker": None, "progress": 0.0}
                conn.execute(JOBS.update().where(where).values(**values))
        return [r[0] for r in rows]

    def expire(self) -> int:
        """Delete finished jobs (and their results) older than result_ttl_s; returns how many."""
        cutoff = time.time() - self.result_ttl_s
        old = JOBS.c.status.in_(FINISHED) & (JOBS.c.finished_at < cutoff)
        with self.engine.begin() as conn:
            rows = conn.execute(sa.select(JOBS.c.id, JOBS.c.result).where(old)).all()
            conn.execute(JOBS.delete().where(JOBS.c.id.in_([r[0] for r in rows])))
        for _, result in rows:
            if result:
                Path(result).unlink(missing_ok=True)
        return len(rows)
