"""The job table's state machine on a real SQLite file and a real PostgreSQL server (Debian's, a throwaway
cluster), and the runner generating from it."""

from __future__ import annotations

import threading
import time

import pytest

from serving.jobs import JOBS, JobStore, QueueFull, default_url
from serving.worker import JobRunner
from tests.postgres import temporary_cluster

REQUEST = {"prompt": "a red circle moves left", "seed": 1, "format": "mp4"}


@pytest.fixture(scope="module")
def postgres():
    with temporary_cluster() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    """The job table's URL: an SQLite file (the default), or an emptied table on the PostgreSQL server."""
    if request.param == "sqlite":
        return default_url(tmp_path)
    url = request.getfixturevalue("postgres")
    with JobStore(url, tmp_path / "results", 3600, 60).engine.begin() as conn:
        conn.execute(JOBS.delete())
    return url


@pytest.fixture
def store(url, tmp_path):
    return JobStore(url, tmp_path / "results", result_ttl_s=3600, stale_s=60)


def test_a_job_goes_queued_running_succeeded_and_keeps_its_result(store):
    job = store.submit(REQUEST, "alice", "req-1", max_queued=4)
    assert (job.status, job.owner, job.request_id, job.request) == ("queued", "alice", "req-1", REQUEST)
    [claimed] = store.claim("w1", "7")
    assert (claimed.id, claimed.status, claimed.model_version, claimed.attempts) == (
        job.id,
        "running",
        "7",
        1,
    )
    assert store.claim("w2", "7") == []  # nothing else queued
    assert store.progress(job.id, "w1", 0.5) and store.get(job.id).progress == 0.5
    assert not store.progress(job.id, "w2", 0.6)  # another worker does not own it
    assert store.succeed(job.id, "w1", b"video", "mp4")
    done = store.get(job.id)
    assert (done.status, done.progress) == ("succeeded", 1.0)
    assert open(done.result, "rb").read() == b"video"
    assert done.public()["timings"]["running_s"] >= 0
    assert store.counts() == {"queued": 0, "running": 0, "succeeded": 1, "failed": 0, "cancelled": 0}


def test_the_queue_is_bounded(store):
    for _ in range(2):
        store.submit(REQUEST, None, None, max_queued=2)
    with pytest.raises(QueueFull) as full:
        store.submit(REQUEST, None, None, max_queued=2)
    assert full.value.queued == 2
    store.claim("w1", "1")  # one leaves the queue: there is room again
    store.submit(REQUEST, None, None, max_queued=2)


def test_concurrent_submitters_do_not_overshoot_the_bound(url, tmp_path):
    stores = [JobStore(url, tmp_path / "r", 3600, 60) for _ in range(4)]
    accepted, barrier = [], threading.Barrier(4)

    def submit(s):
        barrier.wait()
        for _ in range(10):
            try:
                s.submit(REQUEST, None, None, max_queued=7)
                accepted.append(1)
            except QueueFull:
                pass

    threads = [threading.Thread(target=submit, args=(s,)) for s in stores]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(accepted) == 7 and stores[0].counts()["queued"] == 7


def test_each_queued_job_is_claimed_by_exactly_one_worker(url, tmp_path):
    stores = [JobStore(url, tmp_path / "r", 3600, 60) for _ in range(3)]
    ids = {stores[0].submit(REQUEST, None, None, 100, batch_key="k").id for _ in range(30)}
    claimed: list[str] = []

    def work(i, s):
        while jobs := s.claim(f"w{i}", "1", max_batch=2):
            claimed.extend(j.id for j in jobs)

    threads = [threading.Thread(target=work, args=(i, s)) for i, s in enumerate(stores)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sorted(claimed) == sorted(ids)


def test_cancel_stops_a_running_job_and_delete_removes_a_finished_one(store):
    running = store.submit(REQUEST, None, None, 4)
    store.claim("w1", "1")
    assert store.cancel(running.id).status == "running"
    assert store.get(running.id).status == "cancelled"
    assert not store.progress(running.id, "w1", 0.3)  # the worker learns at its next step
    assert not store.succeed(running.id, "w1", b"late", "mp4")  # and writes no result
    assert not list(store.results_dir.iterdir())
    finished = store.submit(REQUEST, None, None, 4)
    store.claim("w1", "1")
    store.succeed(finished.id, "w1", b"v", "mp4")
    path = store.get(finished.id).result
    store.cancel(finished.id)
    assert store.get(finished.id) is None and not (store.results_dir / path).exists()
    assert store.cancel("no-such-job") is None


def test_a_job_whose_replica_died_is_requeued_once_then_failed_with_the_reason(url, tmp_path):
    store = JobStore(url, tmp_path / "r", 3600, stale_s=0.05)
    job = store.submit(REQUEST, None, None, 4)
    store.claim("dead-1", "1")
    time.sleep(0.1)
    assert store.recover() == [job.id]
    assert store.get(job.id).status == "queued"
    store.claim("dead-2", "1")
    time.sleep(0.1)
    store.recover()
    failed = store.get(job.id)
    assert failed.status == "failed" and "dead-2" in failed.error and failed.attempts == 2


def test_finished_jobs_expire_with_their_results(url, tmp_path):
    store = JobStore(url, tmp_path / "r", result_ttl_s=0.05, stale_s=60)
    job = store.submit(REQUEST, None, None, 4)
    store.claim("w", "1")
    store.succeed(job.id, "w", b"v", "mp4")
    queued = store.submit(REQUEST, None, None, 4)
    time.sleep(0.1)
    assert store.expire() == 1
    assert store.get(job.id) is None and not list(store.results_dir.iterdir())
    assert store.get(queued.id).status == "queued"  # only finished jobs expire


def test_compatible_jobs_are_claimed_together_oldest_first(store):
    a = [store.submit(REQUEST, None, None, 10, batch_key="16/20/3").id for _ in range(2)]
    other = store.submit(REQUEST, None, None, 10, batch_key="8/20/3").id
    a += [store.submit(REQUEST, None, None, 10, batch_key="16/20/3").id for _ in range(3)]
    assert [j.id for j in store.claim("w1", "1", max_batch=4)] == a[:4]
    assert [j.id for j in store.claim("w1", "1", max_batch=4)] == [other]  # the oldest left, alone
    assert [j.id for j in store.claim("w1", "1", max_batch=4)] == a[4:]


def test_the_runner_reports_progress_per_step_and_stops_when_cancelled(store):
    seen: list[float] = []
    go = threading.Event()

    def generate(requests, report):
        for i in range(1, 5):
            report(i / 4)
            seen.append(store.get(job.id).progress)
            if i == 2 and requests[0]["seed"] == 2:
                go.wait(5)  # the client cancels here
        return [(f"video {r['seed']}".encode(), "mp4") for r in requests]

    runner = JobRunner(store, generate, lambda: "3", "w1", poll_s=0.01).start()
    job = store.submit(REQUEST, None, None, 4)
    _wait(lambda: store.get(job.id).status == "succeeded")
    assert seen == [0.25, 0.5, 0.75, 1.0] and store.get(job.id).model_version == "3"
    job = store.submit(REQUEST | {"seed": 2}, None, None, 4)
    _wait(lambda: store.get(job.id).progress == 0.5)
    store.cancel(job.id)
    go.set()
    _wait(lambda: not runner.current)
    assert store.get(job.id).status == "cancelled" and len(list(store.results_dir.iterdir())) == 1

    def broken(requests, report):
        raise ValueError("num_frames must be 1 + 4k")

    runner.generate = broken
    job = store.submit(REQUEST, None, None, 4)
    _wait(lambda: store.get(job.id).status == "failed")
    assert store.get(job.id).error == "ValueError: num_frames must be 1 + 4k"
    assert runner.stop(5)


def test_a_batch_keeps_going_for_the_jobs_not_cancelled(store):
    first = store.submit(REQUEST | {"seed": 1}, None, None, 4, batch_key="k")
    second = store.submit(REQUEST | {"seed": 2}, None, None, 4, batch_key="k")
    runner = JobRunner(store, None, lambda: "1", "w1", max_batch=4)

    def generate(requests, report):
        report(0.5)
        store.cancel(first.id)  # the client cancels one job of the batch mid-way
        report(1.0)  # the other keeps the batch going
        return [(f"video {r['seed']}".encode(), "mp4") for r in requests]

    runner.generate = generate
    runner.run(store.claim("w1", "1", max_batch=4))
    assert store.get(first.id).status == "cancelled"
    done = store.get(second.id)
    assert done.status == "succeeded" and open(done.result, "rb").read() == b"video 2"
    assert [p.name for p in store.results_dir.iterdir()] == [f"{second.id}.mp4"]


def _wait(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_job_queued_on_this_replica_is_claimed_at_once_not_at_the_next_poll(store):
    ran = threading.Event()

    def generate(requests, report):
        ran.set()
        return [(b"v", "mp4") for _ in requests]

    runner = JobRunner(store, generate, lambda: "1", "w1", poll_s=30).start()
    time.sleep(0.2)  # the runner found nothing and waits for its next poll, 30 s away
    store.submit(REQUEST, None, None, 4)
    runner.wake()  # what POST /v1/videos does after queueing
    assert ran.wait(5)
    assert runner.stop(5)
