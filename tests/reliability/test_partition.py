"""A worker cut off from the database by a real TCP partition fences itself
before another worker is handed its jobs, and its late outcomes never
overwrite the new owner's."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pgqueue_ref

from .partition import PartitionProxy, upstream_of

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
