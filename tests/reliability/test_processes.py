"""Every accepted job runs at least once, never by two workers at the same time."""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

from .conftest import Workers, wait_until

Db = Callable[..., list[tuple[Any, ...]]]

NO_OVERLAP = """
SELECT count(*) FROM runs a JOIN runs b
  ON a.job_id = b.job_id AND a.ctid <> b.ctid
 AND a.started < b.finished AND b.started < a.finished
"""


def _defer(db: Db, jobs: int, seconds: float = 0.0) -> None:
    db("INSERT INTO pgqueue_jobs (task_name, args) "
       "SELECT 'record', jsonb_build_object('seconds', %s::float) FROM generate_series(1, %s)",
       seconds, jobs)  # fmt: skip


def test_four_worker_processes_run_10k_jobs_exactly_once(workers: Workers, db: Db) -> None:
    _defer(db, 10_000)
    processes = [workers.start("--drain", "--concurrency", "8") for _ in range(4)]
    for process in processes:
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr

    assert db("SELECT count(*), count(DISTINCT job_id) FROM runs") == [(10_000, 10_000)]
    assert db("SELECT status, count(*) FROM pgqueue_jobs GROUP BY 1") == [("succeeded", 10_000)]
    per_worker = db("SELECT count(*) FROM runs GROUP BY pid")
    assert len(per_worker) == 4  # all four took part


def test_a_killed_workers_jobs_run_again_elsewhere(workers: Workers, db: Db) -> None:
    _defer(db, 1, seconds=30)  # long enough to be killed in the middle
    _defer(db, 3)
    victim = workers.start("--concurrency", "1", "--prefetch", "4", "--heartbeat-interval", "0.2")
    wait_until(lambda: db("SELECT count(*) FROM pgqueue_jobs WHERE status = 'doing'") == [(4,)], 30,
               "the victim to claim all four jobs")  # fmt: skip
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    db("UPDATE pgqueue_jobs SET args = '{\"seconds\": 0}'")  # the rerun need not take 30 s

    # Another worker notices the silence after --stalled-after seconds and takes over,
    # both the job that was running and the ones only fetched.
    rescuer = workers.start(
        "--concurrency", "4", "--stalled-after", "1", "--heartbeat-interval", "0.2"
    )
    wait_until(lambda: db("SELECT count(*) FROM pgqueue_jobs WHERE status = 'succeeded'") == [(4,)], 30,
               "the rescuer to finish all four jobs")  # fmt: skip
    rescuer.send_signal(signal.SIGTERM)
    rescuer.wait(20)

    assert db("SELECT count(DISTINCT job_id) FROM runs") == [(4,)]
    assert db(NO_OVERLAP) == [(0,)]
    assert db("SELECT max(attempts) FROM pgqueue_jobs") == [(2,)]  # the killed attempt counted


def test_sigterm_hands_back_fetched_jobs_and_exits_in_time(workers: Workers, db: Db) -> None:
    _defer(db, 1, seconds=0.5)
    _defer(db, 5)
    worker = workers.start("--concurrency", "1", "--prefetch", "6")
    wait_until(lambda: db("SELECT count(*) FROM runs") == [(0,)] and
               db("SELECT count(*) FROM pgqueue_jobs WHERE status = 'doing'") == [(6,)], 30,
               "the worker to claim every job")  # fmt: skip
    worker.send_signal(signal.SIGTERM)
    worker.wait(10)  # the bound: it exits well within the shutdown timeout
    assert worker.returncode == 0
    assert db("SELECT status, count(*) FROM pgqueue_jobs GROUP BY 1 ORDER BY 1") == [
        ("succeeded", 1),
        ("todo", 5),
    ]
