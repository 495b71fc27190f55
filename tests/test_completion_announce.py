"""Workers announce outcomes (a NOTIFY on ``pgqueue_ref_finished``) only while a
completion watcher is registered: with nobody watching, a finished job costs no NOTIFY,
and so no turn at PostgreSQL's commit lock for NOTIFYing transactions."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import psycopg

import pgqueue_ref
from pgqueue_ref.completion import FINISHED_CHANNEL, CompletionWatcher

Db = Callable[..., list[tuple[Any, ...]]]


async def _drain(app: pgqueue_ref.App, n: int) -> None:
    @app.task(name=f"noop{n}")
    def noop() -> None:
        pass

    for _ in range(n):
        await noop.defer_async()
    await app.run_worker_async(wait=False)


async def _heard(listener: psycopg.AsyncConnection[Any], seconds: float) -> list[str]:
    payloads: list[str] = []
    gen = listener.notifies(timeout=seconds)
    async for notify in gen:
        payloads.append(notify.payload)
    return payloads


async def test_no_watcher_no_announcement_and_one_watcher_is_announced_to(
    app: pgqueue_ref.App, dsn: str, db: Db
) -> None:
    listener = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    try:
        await listener.execute(f"LISTEN {FINISHED_CHANNEL}")
        await _drain(app, 3)
        assert db("SELECT count(*) FROM pgqueue_jobs WHERE status = 'succeeded'") == [(3,)]
        assert await _heard(listener, 0.5) == []  # nobody watches: no NOTIFY was sent

        async with CompletionWatcher(app.connector) as watcher:
            assert db("SELECT count(*) FROM pgqueue_watchers") == [(1,)]
            await _drain(app, 2)
            heard = await _heard(listener, 2)
            ids = sorted(int(item.split(":")[0]) for p in heard for item in p.split(","))
            assert ids == [4, 5], heard
            assert await asyncio.wait_for(watcher.wait_for(5), 5) == "successful"
        assert db("SELECT count(*) FROM pgqueue_watchers") == [(0,)]  # unregistered

        # A watcher that died without unregistering stops counting after a minute.
        db("INSERT INTO pgqueue_watchers (seen_at) VALUES (now() - interval '2 minutes')")
        await _drain(app, 1)
        assert await _heard(listener, 0.5) == []
    finally:
        await listener.close()
