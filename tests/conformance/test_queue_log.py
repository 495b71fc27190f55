"""PgQueuer's queue maintenance, headers, queue log and statistics on every driver
and connector (``Queries.clear_queue``, ``enqueue(headers=)``, ``queue_log``,
``log_statistics``...), tested once for all. The log is read from the jobs
(``pgqueue_queue_log``, see :mod:`pgqueue_ref.queue_log`): the tests set jobs'
states and times with plain SQL, so every row of the log is known in advance.
The first line of each docstring is its row in ``docs/connectors.md``.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Callable
from typing import Any

import pytest

from pgqueue_ref import PgQueuer, QueueExecutionMode
from pgqueue_ref.jobs import Job
from pgqueue_ref.queries import Queries
from pgqueue_ref.queue_log import Log, LogStatistics

from .conftest import Subject
from .test_queue_face import call

Db = Callable[..., list[tuple[Any, ...]]]
T0 = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)


def _at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def _finish(db: Db, job_id: int, status: str, error: str | None = None) -> None:
    """The job as a consumer leaves it: created at T0, picked 1 s later, finished 2 s later."""
    db(
        "UPDATE pgqueue_jobs SET status = %s, error = %s, created_at = %s, started_at = %s, "
        "finished_at = %s WHERE id = %s",
        status,
        error,
        _at(0),
        _at(1),
        _at(2),
        job_id,
    )


async def test_clear_queue_deletes_waiting_jobs(subject: Subject, db: Db) -> None:
    """Queue log: `clear_queue(entrypoint)` deletes waiting and running jobs; finished and App jobs stay"""
    queries = Queries(subject.connector)
    a, b, done = await call(
        subject, queries.enqueue, ["a", "b", "a"], [None, None, None], [0, 0, 0]
    )
    _finish(db, done, "succeeded")
    db("UPDATE pgqueue_jobs SET status = 'doing' WHERE id = %s", b)
    app_job = await subject.defer_job("a")  # an App-face task of the same name
    await call(subject, queries.clear_queue, "b")
    assert db("SELECT id FROM pgqueue_jobs ORDER BY id") == [(a,), (done,), (app_job,)]
    await call(subject, queries.clear_queue)  # every entrypoint
    assert db("SELECT id FROM pgqueue_jobs ORDER BY id") == [(done,), (app_job,)]


async def test_enqueue_headers_reach_the_entrypoint(subject: Subject, db: Db) -> None:
    """Queue log: `enqueue(..., headers=)` stores a dict per job, and the entrypoint gets `job.headers`"""
    queries = Queries(subject.connector)
    one, two = await call(
        subject,
        queries.enqueue,
        ["traced", "traced"],
        [b"1", b"2"],
        [0, 0],
        None,
        None,
        [{"traceparent": "00-abc-01"}, None],
    )
    assert db("SELECT id, headers FROM pgqueue_jobs ORDER BY id") == [
        (one, {"traceparent": "00-abc-01"}),
        (two, None),
    ]
    with pytest.raises(TypeError, match="expected a dict of str to str"):
        await call(subject, queries.enqueue, "traced", b"", headers={"n": 1})
    if not subject.is_async:
        subject.not_applicable("blocking: the headers are stored (checked), but it cannot consume")
        return
    pgq = PgQueuer(subject.connector)
    seen: dict[int, dict[str, str] | None] = {}

    @pgq.entrypoint("traced")
    async def traced(job: Job) -> None:
        seen[job.id] = job.headers

    await asyncio.wait_for(pgq.run(mode=QueueExecutionMode.drain), 30)
    assert seen == {one: {"traceparent": "00-abc-01"}, two: None}


async def test_queue_log_and_job_log_history(subject: Subject, db: Db) -> None:
    """Queue log: `queue_log()` and `job_log_history(id)` give each job's transitions, PgQueuer's statuses"""
    queries = Queries(subject.connector)
    ok, bad, waiting = await call(
        subject, queries.enqueue, ["fetch", "fetch", "send"], [None] * 3, [0, 5, 0]
    )
    _finish(db, ok, "succeeded")
    _finish(db, bad, "failed", error="ValueError: no")
    db("UPDATE pgqueue_jobs SET created_at = %s WHERE id = %s", _at(3), waiting)
    await subject.defer_job("fetch")  # App-face jobs are not in the Queue face's log
    assert await call(subject, queries.queue_log) == [
        Log(_at(0), ok, "queued", 0, "fetch", None),
        Log(_at(0), bad, "queued", 5, "fetch", None),
        Log(_at(1), ok, "picked", 0, "fetch", None),
        Log(_at(1), bad, "picked", 5, "fetch", None),
        Log(_at(2), ok, "successful", 0, "fetch", None),
        Log(_at(2), bad, "exception", 5, "fetch", "ValueError: no"),
        Log(_at(3), waiting, "queued", 0, "send", None),
    ]
    assert await call(subject, queries.job_log_history, bad, limit=2) == [
        Log(_at(0), bad, "queued", 5, "fetch", None),
        Log(_at(1), bad, "picked", 5, "fetch", None),
    ]


async def test_log_statistics_counts_per_second(subject: Subject, db: Db) -> None:
    """Queue log: `log_statistics(limit, last=)` counts the log per second, entrypoint, priority, status"""
    queries = Queries(subject.connector)
    ids = await call(subject, queries.enqueue, ["fetch"] * 3, [None] * 3, [0, 0, 0])
    for job_id in ids[:2]:
        _finish(db, job_id, "succeeded")
    _finish(db, ids[2], "cancelled")
    await call(subject, queries.aggregate_logs)  # PgQueuer's fold: nothing to do here
    expected = [
        LogStatistics(2, _at(2), "fetch", 0, "successful"),
        LogStatistics(1, _at(2), "fetch", 0, "canceled"),
        LogStatistics(3, _at(1), "fetch", 0, "picked"),
        LogStatistics(3, _at(0), "fetch", 0, "queued"),
    ]
    assert await call(subject, queries.log_statistics, None) == sorted(
        expected, key=lambda s: (-s.created.timestamp(), s.status != "canceled")
    )
    assert await call(subject, queries.log_statistics, 1) == [
        LogStatistics(1, _at(2), "fetch", 0, "canceled")
    ]
    # T0 is long ago: nothing in the last hour, then one fresh job's 'queued'.
    last_hour = datetime.timedelta(hours=1)
    assert await call(subject, queries.log_statistics, 10, last_hour) == []
    await call(subject, queries.enqueue, "fetch", None)
    (fresh,) = await call(subject, queries.log_statistics, 10, last_hour)
    assert (fresh.count, fresh.entrypoint, fresh.status) == (1, "fetch", "queued")


async def test_clear_queue_log_deletes_finished_jobs(subject: Subject, db: Db) -> None:
    """Queue log: `clear_queue_log` / `clear_statistics_log(entrypoint)` delete finished jobs, never waiting ones"""
    queries = Queries(subject.connector)
    a_done, b_done, a_waiting = await call(
        subject, queries.enqueue, ["a", "b", "a"], [None] * 3, [0, 0, 0]
    )
    _finish(db, a_done, "succeeded")
    _finish(db, b_done, "failed")
    await call(subject, queries.clear_statistics_log, ["b"])
    assert db("SELECT id FROM pgqueue_jobs ORDER BY id") == [(a_done,), (a_waiting,)]
    await call(subject, queries.clear_queue_log)
    assert db("SELECT id FROM pgqueue_jobs ORDER BY id") == [(a_waiting,)]
    assert [log.status for log in await call(subject, queries.queue_log)] == ["queued"]
