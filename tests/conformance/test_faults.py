"""Faults every async connector and driver must survive, tested once for all."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from pgqueue_ref import App, PsycopgConnector
from pgqueue_ref.exceptions import ConnectionFailed

from .conftest import WRAPPED_CONNECTIONS, Subject

Db = Callable[..., list[tuple[Any, ...]]]

KILL_OTHER_BACKENDS = """
SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
"""


async def _until(predicate: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {seconds} s for {what}")
        await asyncio.sleep(0.05)


async def test_worker_survives_killed_connections(subject: Subject, dsn: str, db: Db) -> None:
    """A worker survives killed connections (pool and LISTEN), and no job is lost"""
    if not subject.is_async:
        subject.skip_not_applicable("blocking: cannot run a worker")
    ran: list[int] = []

    @subject.app.task(name="n")
    async def n(i: int) -> None:
        ran.append(i)

    def defer(first: int, count: int) -> None:  # straight into the table, bypassing the subject
        db("INSERT INTO pgqueue_jobs (task_name, args) SELECT 'n', jsonb_build_object('i', i) "
           "FROM generate_series(%s::int, %s::int) AS i", first, first + count - 1)  # fmt: skip

    def recorded() -> int:
        """Jobs run and their outcome written: a kill then finds the worker between
        rounds, so no job runs twice (one whose outcome the kill lost would run
        again, as at-least-once allows; tests/reliability covers that case)."""
        ((succeeded,),) = db("SELECT count(*) FROM pgqueue_jobs WHERE status = 'succeeded'")
        return int(succeeded)

    worker = subject.app.worker(
        concurrency=2, polling_interval=0.2, heartbeat_interval=0.2, flush_interval=0.01
    )
    running = asyncio.create_task(worker.run())
    lost = False
    deferred = 50  # jobs 0 .. deferred - 1 are in the table
    try:
        await asyncio.wait_for(worker.listening.wait(), 5)
        defer(0, 50)
        await _until(lambda: recorded() == 50, 20, "the first 50 jobs")

        for round_ in range(3):  # pool and LISTEN connections die, three times
            (killed,) = db(KILL_OTHER_BACKENDS)[0]
            assert killed >= 1
            await asyncio.sleep(1)  # time for the worker to notice (it polls every 0.2 s)
            if subject.connector.connection_lost():  # a driver over one caller's connection
                lost = True
                break
            defer(deferred, 50)
            deferred += 50
            expected = deferred
            await _until(lambda: recorded() == expected, 30, f"the jobs after kill {round_ + 1}")  # noqa: B023
        else:
            # And LISTEN is back: with polling at 60 s, only a NOTIFY wakes it in time
            # (sent by the subject's defer statement; a plain INSERT sends none).
            worker.polling_interval = 60
            await _until(worker.listening.is_set, 20, "LISTEN to be back")
            await asyncio.sleep(0.3)
            await subject.defer_job("n", {}, i=200)
            await _until(lambda: len(ran) == 201, 10, "a NOTIFY to wake the worker")
    finally:
        worker.stop()
        (ended,) = await asyncio.wait_for(asyncio.gather(running, return_exceptions=True), 30)

    if lost:
        await _one_connection_driver_stops_and_loses_nothing(
            subject, ended, defer, deferred, dsn, ran, db
        )
    else:
        assert ended is worker.stats  # it ran to the end, no exception
        assert sorted(ran) == list(range(201))  # none lost, none run twice
        assert db("SELECT status, count(*) FROM pgqueue_jobs GROUP BY 1") == [("succeeded", 201)]
    if subject.pooled and subject.name in WRAPPED_CONNECTIONS:
        # Its one connection is to PgBouncer, not to the killed server process:
        # PgBouncer takes another server connection for the next transaction, but
        # closes the client when the kill lands inside one. Which, depends on timing.
        subject.unsupported(
            "its one connection is to PgBouncer: a kill between its transactions it "
            "survives, one inside a transaction makes PgBouncer close it, and the worker "
            "stops with ConnectionFailed, no job lost"
        )


async def _one_connection_driver_stops_and_loses_nothing(
    subject: Subject,
    ended: object,
    defer: Callable[[int, int], None],
    deferred: int,
    dsn: str,
    ran: list[int],
    db: Db,
) -> None:
    """A driver over ONE connection the caller opened cannot reopen it: its worker
    stops with ConnectionFailed saying so, and a worker elsewhere runs the rest."""
    assert isinstance(ended, ConnectionFailed), ended
    assert "a driver cannot reopen a connection it was handed" in str(ended)
    defer(deferred, 10)
    rescue = App(connector=PsycopgConnector(conninfo=dsn))

    @rescue.task(name="n")
    async def n(i: int) -> None:
        ran.append(i)

    async with rescue.open_async():  # stalled_after=0: the dead worker's claims come back at once
        await rescue.run_worker_async(wait=False, stalled_after=0, heartbeat_interval=0)
    assert sorted(ran) == list(range(deferred + 10))
    assert db("SELECT status, count(*) FROM pgqueue_jobs GROUP BY 1") == [
        ("succeeded", deferred + 10)
    ]
    if not subject.pooled:
        subject.unsupported(
            "its one connection is the caller's: the worker stops with ConnectionFailed, "
            "no job lost"
        )
