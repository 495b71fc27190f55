"""A worker cut off from the database by a real TCP partition fences itself
before another worker is handed its jobs, and its late outcomes never
overwrite the new owner's."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import pgqueue_ref
from pgqueue_ref.testing import PartitionProxy, upstream_of

Db = Callable[..., list[tuple[Any, ...]]]
TIMEOUT = 60  # seconds for any one wait: generous, for a loaded 2-core machine


async def _until(predicate: Callable[[], Any], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not predicate():
        assert time.monotonic() < deadline, f"waited {TIMEOUT} s for {what}"
        await asyncio.sleep(0.05)


async def test_a_partitioned_worker_fences_itself_before_its_jobs_run_elsewhere(
    dsn: str, db: Db
) -> None:
    alive: list[float] = []  # A's async job, every 50 ms: time.monotonic()
    b_started: dict[str, float] = {}
    release_sync = threading.Event()

    # A's connector is replaced below by one through the proxy, once it listens.
    a = pgqueue_ref.App(connector=pgqueue_ref.PsycopgConnector(conninfo=dsn))

    @a.task(name="long")
    async def a_long() -> None:
        while True:
            alive.append(time.monotonic())
            await asyncio.sleep(0.05)

    @a.task(name="sync_long")
    def a_sync_long() -> None:
        release_sync.wait(TIMEOUT)  # a thread: the fence cannot cancel it

    b = pgqueue_ref.App(connector=pgqueue_ref.PsycopgConnector(conninfo=dsn))

    @b.task(name="long")
    async def b_long() -> None:
        b_started.setdefault("long", time.monotonic())

    @b.task(name="sync_long")
    def b_sync_long() -> None:
        b_started.setdefault("sync_long", time.monotonic())
        raise ValueError("run by B")

    options: dict[str, Any] = {
        "stalled_after": 3,
        "heartbeat_interval": 0.5,
        "polling_interval": 0.2,
    }
    async with PartitionProxy(*upstream_of(dsn)) as proxy:
        a.connector = pgqueue_ref.PsycopgConnector(conninfo=proxy.dsn_for(dsn))
        async with a.open_async(), b.open_async():
            long_id = await b.tasks["long"].defer_async()
            sync_id = await b.tasks["sync_long"].defer_async()
            worker_a = a.worker(concurrency=2, shutdown_timeout=5, **options)
            running_a = asyncio.create_task(worker_a.run())
            await _until(lambda: alive and worker_a._busy == 2, "A to run both jobs")
            worker_b = b.worker(concurrency=2, **options)
            running_b = asyncio.create_task(worker_b.run())
            old_id = worker_a.worker_id

            proxy.partition()
            await _until(lambda: len(b_started) == 2, "B to be handed both jobs and start them")
            assert worker_a.fenced
            # The promise: A's last sign of life in the job comes before B's start of it.
            assert alive[-1] < b_started["long"]
            assert worker_a.stats.fenced == 1  # the async job; the sync one runs on

            release_sync.set()  # A's sync job ends now, its outcome too late
            await asyncio.sleep(0.5)
            proxy.heal()
            await _until(lambda: worker_a.worker_id != old_id, "A to register again")
            await _until(lambda: not worker_a.fenced, "A to claim again")
            worker_a.stop()
            worker_b.stop()
            await asyncio.wait_for(asyncio.gather(running_a, running_b), TIMEOUT)

    # B's outcomes stand: A's late "succeeded" for the sync job was refused by the
    # worker_id guard, and A wrote nothing for the async job it cancelled.
    assert db("SELECT id, status, error FROM pgqueue_jobs ORDER BY id") == [
        (long_id, "succeeded", "requeued: its worker stopped sending heartbeats"),
        (sync_id, "failed", "ValueError: run by B"),
    ]


MARKS = "CREATE TABLE marks (who text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())"


CONNECTORS: dict[str, Callable[[str], pgqueue_ref.AsyncConnector]] = {
    "PsycopgConnector": lambda dsn: pgqueue_ref.PsycopgConnector(conninfo=dsn),
    "AsyncpgConnector": lambda dsn: pgqueue_ref.AsyncpgConnector(dsn=dsn),
}


@pytest.mark.parametrize("name", list(CONNECTORS))
async def test_a_fenced_job_stuck_in_a_query_ends_at_the_fence_and_its_query_never_lands(
    dsn: str, db: Db, name: str
) -> None:
    """The job is cut off *inside* a query (its bytes held by the partition): the fence
    must still end the run at once, and the query must never commit after another
    worker started the job (the server-side fence terminates the cut-off backends)."""
    db(MARKS)
    ended: list[float] = []
    b_started: list[float] = []
    a = pgqueue_ref.App(connector=CONNECTORS[name](dsn))
    b = pgqueue_ref.App(connector=CONNECTORS[name](dsn))

    @a.task(name="writer")
    async def a_writer() -> None:
        try:
            while True:  # each INSERT commits by itself: A's signs of life, by the server's clock
                await a.connector.execute_async("INSERT INTO marks (who) VALUES ('A')")
                await asyncio.sleep(0.02)
        finally:
            ended.append(time.monotonic())

    @b.task(name="writer")
    async def b_writer() -> None:
        b_started.append(time.monotonic())
        await b.connector.execute_async("INSERT INTO marks (who) VALUES ('B')")

    options: dict[str, Any] = {"stalled_after": 3, "heartbeat_interval": 0.5}
    async with PartitionProxy(*upstream_of(dsn)) as proxy:
        a.connector = CONNECTORS[name](proxy.dsn_for(dsn))
        async with a.open_async(), b.open_async():
            job_id = await b.tasks["writer"].defer_async()
            worker_a = a.worker(shutdown_timeout=5, polling_interval=0.2, **options)
            running_a = asyncio.create_task(worker_a.run())
            await _until(lambda: db("SELECT count(*) FROM marks")[0][0] > 5, "A to write")
            proxy.partition()
            cut = time.monotonic()
            await _until(lambda: worker_a.fenced, "A to fence itself")
            fenced = time.monotonic()
            worker_b = b.worker(polling_interval=0.2, **options)
            running_b = asyncio.create_task(worker_b.run())
            await _until(lambda: b_started, "B to be handed the job and start it")
            await asyncio.sleep(1)  # A's held INSERT would land at the heal, after B's
            proxy.heal()
            await _until(lambda: not worker_a.fenced, "A to claim again")
            await _until(lambda: ended, "A's run to end")
            worker_a.stop()
            worker_b.stop()
            await asyncio.wait_for(asyncio.gather(running_a, running_b), TIMEOUT)

    print(f"fence {fenced - cut:.2f} s after the cut, A's run ended {ended[0] - fenced:.2f} s "
          f"after the fence, B started {b_started[0] - fenced:.2f} s after it")  # fmt: skip
    ((last_a, first_b),) = db(
        "SELECT max(at) FILTER (WHERE who = 'A'), min(at) FILTER (WHERE who = 'B') FROM marks"
    )
    print(f"A's last write committed {(last_a - first_b).total_seconds():+.2f} s after B's first")
    assert ended[0] < b_started[0], "A's run went on after B had started the job"
    assert ended[0] - fenced < 0.5, "the fence did not end A's run at once"
    assert last_a < first_b, "a query A sent before the fence committed after B started the job"
    assert db("SELECT status FROM pgqueue_jobs WHERE id = %s", job_id) == [("succeeded",)]
