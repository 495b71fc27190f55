"""Measure LISTEN on one psycopg connection: does it hold up the queries? (docs/queue-face.md)

1. ``SELECT 1`` on a ``PsycopgDriver`` connection that LISTENs, 200 times with
   5 ms idle gaps, with our listener and with PgQueuer 1.6's pattern (a
   ``notifies(timeout=1.0)`` loop, which holds the connection's lock).
2. Enqueue -> entrypoint start, 200 single jobs inserted from another
   connection, for ``PgQueuer`` on ``PsycopgDriver`` and on ``AsyncpgDriver``.

Run: ``python docs/measure_queue_listen.py`` (starts a throwaway PostgreSQL).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import asyncpg
import psycopg
import psycopg.sql

from pgqueue_ref import PgQueuer
from pgqueue_ref.db import PsycopgDriver
from pgqueue_ref.embedded import EmbeddedPostgres
from pgqueue_ref.sql import SCHEMA

ROUNDS = 200


async def pgqueuer_16_listen(
    conn: psycopg.AsyncConnection[Any],
    channel: str,
    on_notify: Callable[[str], None],
    on_ready: Callable[[], None],
) -> None:
    """PgQueuer 1.6's psycopg listener, for comparison."""
    await conn.execute(psycopg.sql.SQL("LISTEN {}").format(psycopg.sql.Identifier(channel)))
    on_ready()
    while True:
        async for notification in conn.notifies(timeout=1.0):
            on_notify(notification.payload)
        await asyncio.sleep(0)


def summary(name: str, milliseconds: list[float]) -> str:
    ordered = sorted(milliseconds)

    def at(p: int) -> float:
        return ordered[min(len(ordered) - 1, p * len(ordered) // 100)]

    return f"{name}: p50 {at(50):.2f} ms, p95 {at(95):.2f} ms, max {ordered[-1]:.1f} ms"


async def query_latency(dsn: str, ours: bool) -> list[float]:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        driver = PsycopgDriver(conn)
        ready = asyncio.Event()
        listen = driver.listen_async if ours else lambda *a: pgqueuer_16_listen(conn, *a)
        listener = asyncio.create_task(listen("chan", lambda payload: None, ready.set))
        await ready.wait()
        latencies = []
        for _ in range(ROUNDS):
            await asyncio.sleep(0.005)  # idle, as between a consumer's queries
            started = time.perf_counter()
            await driver.fetch_all_async("SELECT 1")
            latencies.append((time.perf_counter() - started) * 1000)
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
    return latencies


async def start_latency(dsn: str, driver: str) -> list[float]:
    if driver == "PsycopgDriver":
        connection: Any = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
        pgq = PgQueuer.from_psycopg_connection(connection)
    else:
        connection = await asyncpg.connect(dsn)
        pgq = PgQueuer.from_asyncpg_connection(connection)
    latencies: list[float] = []
    sent: dict[bytes | None, float] = {}
    started = asyncio.Event()

    @pgq.entrypoint("ping")
    async def ping(job: Any) -> None:
        latencies.append((time.perf_counter() - sent[job.payload]) * 1000)
        started.set()

    running = asyncio.create_task(pgq.run())
    await asyncio.sleep(0.5)  # let it LISTEN
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as producer:
        for n in range(ROUNDS):
            started.clear()
            payload = str(n).encode()
            sent[payload] = time.perf_counter()
            await producer.execute(
                "INSERT INTO pgqueue_jobs (face, task_name, payload) VALUES ('queue', 'ping', %s)",
                [payload],
            )
            await asyncio.wait_for(started.wait(), 5)
            await asyncio.sleep(0.01)
    pgq.stop()
    await running
    await connection.close()
    return latencies


async def main() -> None:
    server = EmbeddedPostgres(fast=True)
    try:
        with psycopg.connect(server.dsn_url, autocommit=True) as conn:
            conn.execute(SCHEMA)
        for ours, name in ((True, "this design"), (False, "PgQueuer 1.6's loop")):
            latencies = await query_latency(server.dsn_url, ours)
            print(summary(f"SELECT 1 on a listening PsycopgDriver connection, {name}", latencies))
        for driver in ("PsycopgDriver", "AsyncpgDriver"):
            latencies = await start_latency(server.dsn_url, driver)
            print(summary(f"enqueue -> entrypoint start, PgQueuer on {driver}", latencies))
    finally:
        server.stop()


if __name__ == "__main__":
    asyncio.run(main())
