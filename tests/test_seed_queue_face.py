"""The code examples of seeds 003/004 (PgQueuer's "Drivers" page), run as written with
``pgqueuer`` renamed ``pgqueue_ref``.

Each example's own lines are kept verbatim, in order; lines marked ``# test:`` are
the test's additions around them. ``await pgq.run()`` runs until stopped, so the
test registers an entrypoint that stops it after consuming one job it enqueued
(and, as a safety net, stops it after 10 s, which then fails the test).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from pgqueue_ref import QueueExecutionMode  # test:
from pgqueue_ref.jobs import Job  # test:
from pgqueue_ref.queuer import Context  # test:

Db = Callable[..., list[tuple[Any, ...]]]


def consume_one_then_stop(pgq: Any, consumed: list[Job]) -> None:  # test:
    """Register an entrypoint that records the job and stops the consumer."""

    @pgq.entrypoint("seed")
    async def seed(job: Job, context: Context) -> None:
        consumed.append(job)
        context.resources.setdefault("seen_by_entrypoint", True)
        pgq.stop()

    asyncio.get_running_loop().call_later(10, pgq.stop)  # never hang the suite


async def test_psycopg_driver_example(dsn: str) -> None:
    import psycopg

    from pgqueue_ref.db import PsycopgDriver

    conn = await psycopg.AsyncConnection.connect(dsn)
    # As written, the page's next line fails in psycopg 3 itself, before pgqueue_ref
    # is involved: autocommit is read-only on async connections.
    with pytest.raises(AttributeError, match="read-only on async connections"):  # test:
        conn.autocommit = True
    await conn.set_autocommit(True)  # test: what psycopg 3 takes instead
    driver = PsycopgDriver(conn)
    assert await driver.fetch_all_async("SELECT 1 AS one") == [{"one": 1}]  # test:
    await conn.close()  # test:


def test_sync_psycopg_driver_example(dsn: str, db: Db) -> None:
    import psycopg

    from pgqueue_ref.db import SyncPsycopgDriver
    from pgqueue_ref.queries import Queries

    conn = psycopg.connect(dsn, autocommit=True)
    driver = SyncPsycopgDriver(conn)
    queries = Queries(driver)
    queries.enqueue("fetch", b"payload")

    conn.close()  # test:
    assert db("SELECT face, task_name, payload, status FROM pgqueue_jobs") == [  # test:
        ("queue", "fetch", b"payload", "todo")
    ]


async def test_from_asyncpg_connection_example(dsn: str, db: Db) -> None:
    consumed: list[Job] = []  # test:
    import asyncpg

    from pgqueue_ref import PgQueuer

    connection = await asyncpg.connect(dsn)
    pgq = PgQueuer.from_asyncpg_connection(connection)

    # With optional shared resources
    pgq = PgQueuer.from_asyncpg_connection(
        connection,
        resources={"shared_cache": {}},
    )

    consume_one_then_stop(pgq, consumed)  # test:
    (job_id,) = await pgq.queries.enqueue("seed", b"hello")  # test:
    await pgq.run()

    await connection.close()  # test:
    assert [(j.id, j.payload) for j in consumed] == [(job_id, b"hello")]  # test:
    assert pgq.resources == {"shared_cache": {}, "seen_by_entrypoint": True}  # test:
    assert db("SELECT status FROM pgqueue_jobs") == [("succeeded",)]  # test:


async def test_from_asyncpg_pool_example(dsn: str, db: Db) -> None:
    consumed: list[Job] = []  # test:
    import asyncpg

    from pgqueue_ref import PgQueuer

    pool = await asyncpg.create_pool(dsn, min_size=2, max_size=10)
    pgq = PgQueuer.from_asyncpg_pool(pool)

    consume_one_then_stop(pgq, consumed)  # test:
    await pgq.queries.enqueue("seed", b"from a pool")  # test:
    await pgq.run()

    await pool.close()  # test:
    assert [j.payload for j in consumed] == [b"from a pool"]  # test:
    assert db("SELECT status FROM pgqueue_jobs") == [("succeeded",)]  # test:


async def test_from_psycopg_connection_example(dsn: str, db: Db) -> None:
    consumed: list[Job] = []  # test:
    import psycopg

    from pgqueue_ref import PgQueuer

    connection = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    pgq = PgQueuer.from_psycopg_connection(connection)

    consume_one_then_stop(pgq, consumed)  # test:
    await pgq.queries.enqueue("seed", b"from psycopg")  # test:
    await pgq.run()

    await pgq.run(mode=QueueExecutionMode.drain)  # test: nothing left
    await connection.close()  # test:
    assert [j.payload for j in consumed] == [b"from psycopg"]  # test:
    assert db("SELECT status FROM pgqueue_jobs") == [("succeeded",)]  # test:
