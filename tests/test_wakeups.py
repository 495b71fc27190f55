"""Wake-ups: a defer sends NOTIFY only while a worker of its queue is idle, and none is lost.

The protocol (``go_idle``, ``worker_busy`` and ``pgqueue_wake`` in the SQL files;
docs/architecture.md, "Wake-ups") on the real server: first each rule on its
own, with connections held open at the exact moment that matters; then the race
itself, a real worker that polls only every 60 s and producers that defer right
as it goes idle, where one lost wake-up would make a job wait a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import random
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import psycopg
import pytest

import pgqueue_ref
from pgqueue_ref import PgQueuer
from pgqueue_ref.db import PsycopgDriver
from pgqueue_ref.jobs import Face, Job
from pgqueue_ref.queries import Queries
from pgqueue_ref.sql import QUERIES

Db = Callable[..., list[tuple[Any, ...]]]


@pytest.fixture
async def listener(dsn: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute("LISTEN pgqueue_ref")
        yield conn


async def _received(listener: psycopg.AsyncConnection[Any], wait: float = 0.3) -> list[str]:
    return [n.payload async for n in listener.notifies(timeout=wait)]


@pytest.fixture
def task(app: pgqueue_ref.App) -> Any:
    @app.task(name="t", queue="q1")
    async def t(n: int) -> None: ...

    return t


async def test_no_idle_worker_no_notify(
    app: pgqueue_ref.App, task: Any, listener: psycopg.AsyncConnection[Any]
) -> None:
    """Nobody sleeps: the defer sends nothing (and so takes no part in NOTIFY's commit lock)."""
    await task.defer_async(n=1)
    assert await _received(listener) == []


async def test_idle_worker_is_notified_until_busy(
    app: pgqueue_ref.App, task: Any, listener: psycopg.AsyncConnection[Any], db: Db
) -> None:
    manager = app.job_manager
    worker_id = await manager.register_worker_async("w")
    assert await manager.go_idle_async(Face.APP, worker_id, ["q1"]) is True
    await task.defer_async(n=1)
    assert await _received(listener) == ["app:q1"]
    await task.configure(queue="q2").defer_async(n=2)  # not one of its queues
    assert await _received(listener) == []
    await manager.worker_busy_async(worker_id)
    await task.defer_async(n=3)
    assert await _received(listener) == []
    assert db("SELECT face, queues, idle FROM pgqueue_listeners") == [("app", ["q1"], False)]
    await manager.unregister_worker_async(worker_id)  # its mark goes with its row
    assert db("SELECT count(*) FROM pgqueue_listeners") == [(0,)]


async def test_a_defer_in_flight_keeps_the_mark_unsettled(
    app: pgqueue_ref.App, task: Any, dsn: str, listener: psycopg.AsyncConnection[Any]
) -> None:
    """The race's one dangerous moment, held still: a defer has read the marks (none
    yet) and has not committed. The worker's mark goes in, but is not settled: the
    worker must not sleep, since its claim cannot see that job yet and no NOTIFY
    will come. Once the defer commits, the mark settles and the claim sees the job."""
    manager = app.job_manager
    worker_id = await manager.register_worker_async("w")
    async with await psycopg.AsyncConnection.connect(dsn) as caller:
        await task.configure(connection=caller).defer_async(n=1)  # in caller's transaction
        assert await manager.go_idle_async(Face.APP, worker_id) is False
        await caller.commit()
    assert await _received(listener) == []  # it read the marks before ours: no NOTIFY...
    assert await manager.go_idle_async(Face.APP, worker_id) is True
    assert len(await manager.fetch_async(Face.APP, worker_id, 10)) == 1  # ...but the claim sees it


async def test_a_defer_after_the_mark_waits_for_it_and_notifies(
    app: pgqueue_ref.App, task: Any, dsn: str, listener: psycopg.AsyncConnection[Any]
) -> None:
    """A worker holds the wake lock (its go_idle transaction, held open here): a defer
    meanwhile waits for that commit, then reads the marks afresh and notifies."""
    worker_id = await app.job_manager.register_worker_async("w")
    go_idle = str(QUERIES["go_idle"])
    async with await psycopg.AsyncConnection.connect(dsn) as worker_conn:
        row = await (
            await worker_conn.execute(
                go_idle, {"worker_id": worker_id, "face": "app", "queues": None}
            )
        ).fetchone()
        assert row == (True,)
        deferring = asyncio.create_task(task.defer_async(n=1))
        await asyncio.sleep(0.3)
        assert not deferring.done()  # waits for the lock, with a snapshot from before the mark
        await worker_conn.commit()
        await asyncio.wait_for(deferring, 5)
    assert await _received(listener, 2) == ["app:q1"]


async def test_repeatable_read_always_notifies(
    app: pgqueue_ref.App, task: Any, dsn: str, listener: psycopg.AsyncConnection[Any]
) -> None:
    """A snapshot older than the statement may predate a mark: such a defer notifies."""
    async with await psycopg.AsyncConnection.connect(dsn) as caller:
        await caller.set_isolation_level(psycopg.IsolationLevel.REPEATABLE_READ)
        await task.configure(connection=caller).defer_async(n=1)
        await caller.commit()
    assert await _received(listener) == ["app:q1"]


async def test_no_wake_up_lost_in_the_race(dsn: str) -> None:
    """A real worker that polls only every 60 s, and a producer that defers at random
    moments right after the previous job started, that is while the worker goes idle:
    every job must start within seconds. A wake-up lost would cost a minute. (One
    producer: a second one's NOTIFY would wake the worker and hide a lost one.)"""
    app = pgqueue_ref.App(connector=pgqueue_ref.PsycopgConnector(conninfo=dsn))
    started: dict[int, float] = {}
    event = asyncio.Event()

    @app.task(name="noop")
    async def noop(n: int) -> None:
        started[n] = time.monotonic()
        event.set()

    rounds, producers = 400, 1
    async with app.open_async():
        worker = app.worker(concurrency=4, polling_interval=60.0)
        running = asyncio.create_task(worker.run())
        await asyncio.wait_for(worker.listening.wait(), 10)

        async def produce(first: int) -> list[float]:
            slowest = []
            for n in range(first, first + rounds):
                await asyncio.sleep(random.uniform(0, 0.003))
                deferred = time.monotonic()
                await noop.defer_async(n=n)
                slowest.append(await _until_started(n, started, event, deferred))
            return slowest

        waits = await asyncio.gather(*(produce(p * 10_000) for p in range(producers)))
        worker.stop()
        stats = await running
    assert len(started) == rounds * producers
    assert max(max(w) for w in waits) < 5.0
    assert stats.succeeded == rounds * producers
    assert stats.idle_marks > rounds // 2  # it did go idle between jobs, over and over


async def test_no_wake_up_lost_in_the_race_on_the_queue_face(dsn: str) -> None:
    """The same race for a PgQueuer consumer: its enqueues notify only while it sleeps
    (dequeue_timeout 60 s: a lost wake-up would cost a minute)."""
    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    pgq = PgQueuer.from_psycopg_connection(conn)
    started: dict[int, float] = {}
    event = asyncio.Event()

    @pgq.entrypoint("noop")
    async def noop(job: Job) -> None:
        started[int(job.payload or b"")] = time.monotonic()
        event.set()

    producer = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    queries = Queries(PsycopgDriver(producer))
    rounds, waits = 300, []
    try:
        running = asyncio.create_task(pgq.run(dequeue_timeout=datetime.timedelta(seconds=60)))
        for n in range(rounds):
            await asyncio.sleep(random.uniform(0, 0.003))
            enqueued = time.monotonic()
            await queries.enqueue("noop", str(n).encode())
            waits.append(await _until_started(n, started, event, enqueued))
        pgq.stop()
        stats = await asyncio.wait_for(running, 10)
    finally:
        await producer.close()
        await conn.close()
    assert len(started) == rounds == stats.succeeded
    assert max(waits) < 5.0
    assert stats.idle_marks > rounds // 2  # it did go idle between jobs, over and over


async def _until_started(
    n: int, started: dict[int, float], event: asyncio.Event, since: float
) -> float:
    """Wait until job ``n`` started (its runner records it in ``started`` and sets
    ``event``); how long after ``since``. 20 s without it: a lost wake-up."""
    while n not in started:
        if time.monotonic() - since > 20:
            raise AssertionError(f"job {n} did not start within 20 s: a lost wake-up")
        event.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), 0.5)
    return started[n] - since
