"""Closing an app, or its connector, under a running worker: the worker never
outlives it, and never retries on a closed connector."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import pgqueue_ref
from pgqueue_ref.exceptions import ConnectorNotOpen

Db = Callable[..., list[tuple[Any, ...]]]


def slow_app(dsn: str, started: asyncio.Event) -> tuple[pgqueue_ref.App, Any]:
    app = pgqueue_ref.App(connector=pgqueue_ref.PsycopgConnector(conninfo=dsn))

    @app.task(name="slow")
    async def slow(i: int) -> None:
        started.set()
        await asyncio.sleep(0.3)

    return app, slow


async def test_closing_the_app_stops_its_workers_gracefully_first(dsn: str, db: Db) -> None:
    started = asyncio.Event()
    app, slow = slow_app(dsn, started)
    await app.open_async()
    await slow.batch_defer_async(*({"i": i} for i in range(5)))
    running = asyncio.create_task(app.run_worker_async(concurrency=1, prefetch=5))
    await asyncio.wait_for(started.wait(), 10)
    began = time.monotonic()
    await app.close_async()
    stats = await asyncio.wait_for(running, 5)  # already done: close waited for it
    assert time.monotonic() - began < 5
    assert stats.succeeded == 1  # the running job finished, and its outcome was written
    # The claimed ones went back, their attempt not counted; nothing is left 'doing'.
    assert db("SELECT status, attempts, count(*) FROM pgqueue_jobs GROUP BY 1, 2 ORDER BY 1") == [
        ("succeeded", 1, 1),
        ("todo", 0, 4),
    ]


def test_closing_a_blocking_app_stops_a_worker_running_in_another_thread(dsn: str, db: Db) -> None:
    app = pgqueue_ref.App(connector=pgqueue_ref.PsycopgConnector(conninfo=dsn))

    @app.task(name="noop")
    def noop() -> None: ...

    app.open()  # the pool lives in the connector's own loop thread
    noop.defer()
    worker = app.worker()
    runner = threading.Thread(target=asyncio.run, args=(worker.run(),))
    runner.start()
    deadline = time.monotonic() + 10
    while db("SELECT count(*) FROM pgqueue_jobs WHERE status = 'succeeded'") != [(1,)]:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    app.close()
    runner.join(5)
    assert not runner.is_alive() and not worker.running
    assert db("SELECT count(*) FROM pgqueue_workers") == [(0,)]  # it unregistered


async def test_a_connector_closed_under_a_worker_ends_it_with_connector_not_open(
    dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    started = asyncio.Event()
    app, slow = slow_app(dsn, started)
    await app.open_async()
    await slow.defer_async(i=0)
    running = asyncio.create_task(app.run_worker_async(heartbeat_interval=0.1))
    await asyncio.wait_for(started.wait(), 10)
    with caplog.at_level(logging.WARNING, logger="pgqueue_ref"):
        await app.connector.close_async()  # behind the app's back
        with pytest.raises(ConnectorNotOpen, match="closed while the worker ran"):
            await asyncio.wait_for(running, 10)
    # One error saying so, not a retry loop of warnings (156 in 8 s before).
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) <= 3, caplog.text
    assert "app.close_async()" in caplog.text
