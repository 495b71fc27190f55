"""KeptConnection on a real asyncpg pool: reuse, concurrency, errors, renewal, close;
and the psycopg connector's fallback when its pool is not in autocommit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest

import pgqueue_ref
from pgqueue_ref.connectors import kept as kept_module
from pgqueue_ref.connectors.kept import KeptConnection

Db = Callable[..., list[tuple[Any, ...]]]
MAX_SIZE = 4


@pytest.fixture
async def pool(dsn: str) -> AsyncIterator[asyncpg.Pool]:
    async with asyncpg.create_pool(dsn, min_size=MAX_SIZE, max_size=MAX_SIZE) as pool:
        yield pool


class Counted:
    """The pool's own acquire and release, counted."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool, self.borrowed, self.given_back = pool, 0, 0

    async def borrow(self) -> Any:
        self.borrowed += 1
        return await self.pool.acquire()

    async def give_back(self, conn: Any) -> None:
        self.given_back += 1
        await self.pool.release(conn)


def pid(conn: Any) -> Any:
    return conn.fetchval("SELECT pg_backend_pid()")


async def test_one_by_one_statements_share_one_connection_borrowed_once(
    pool: asyncpg.Pool,
) -> None:
    counted = Counted(pool)
    kept = KeptConnection(counted.borrow, counted.give_back)
    pids = {await kept.run(pid) for _ in range(20)}
    assert len(pids) == 1
    assert (counted.borrowed, counted.given_back) == (1, 0)
    assert pool.get_idle_size() == MAX_SIZE - 1  # the kept one is out of the pool
    await kept.close()
    assert pool.get_idle_size() == MAX_SIZE


async def test_concurrent_statements_borrow_and_all_but_one_go_back(pool: asyncpg.Pool) -> None:
    counted = Counted(pool)
    kept = KeptConnection(counted.borrow, counted.give_back)

    async def slow(conn: Any) -> Any:
        return await conn.fetchval("SELECT pg_backend_pid() FROM pg_sleep(0.05)")

    pids = await asyncio.gather(*(kept.run(slow) for _ in range(8)))  # twice the pool's size
    assert len(set(pids)) == MAX_SIZE  # ran on every connection, none waited forever
    assert counted.borrowed - counted.given_back == 1  # exactly one kept afterwards
    await kept.close()
    assert counted.borrowed == counted.given_back


async def test_a_failed_statement_gives_its_connection_back(pool: asyncpg.Pool) -> None:
    counted = Counted(pool)
    kept = KeptConnection(counted.borrow, counted.give_back)
    await kept.run(pid)

    async def fails(conn: Any) -> None:
        await conn.execute("SELECT 1/0")

    with pytest.raises(asyncpg.DivisionByZeroError):
        await kept.run(fails)
    assert counted.borrowed == counted.given_back  # nothing kept after an error
    assert await kept.run(lambda conn: conn.fetchval("SELECT 42")) == 42
    assert counted.borrowed - counted.given_back == 1  # kept again
    await kept.close()


async def test_a_cancelled_statement_gives_its_connection_back(pool: asyncpg.Pool) -> None:
    counted = Counted(pool)
    kept = KeptConnection(counted.borrow, counted.give_back)
    running = asyncio.create_task(kept.run(lambda conn: conn.execute("SELECT pg_sleep(10)")))
    await asyncio.sleep(0.1)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert counted.borrowed == counted.given_back
    assert await kept.run(lambda conn: conn.fetchval("SELECT 1")) == 1
    await kept.close()


async def test_the_kept_connection_is_renewed_every_so_many_statements(
    pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kept_module, "RENEW_AFTER", 5)
    counted = Counted(pool)
    kept = KeptConnection(counted.borrow, counted.give_back)
    for _ in range(12):
        await kept.run(pid)
    assert (counted.borrowed, counted.given_back) == (3, 2)  # given back at the 5th and 10th
    await kept.close()


async def test_closing_lets_the_pool_close(dsn: str) -> None:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=3)
    kept = KeptConnection(pool.acquire, pool.release)
    await kept.run(pid)
    await kept.close()
    await asyncio.wait_for(pool.close(), 5)  # a pool waits for connections still out


async def test_psycopg_connector_without_autocommit_keeps_none_and_commits(
    dsn: str, db: Db
) -> None:
    connector = pgqueue_ref.PsycopgConnector(conninfo=dsn, kwargs={"autocommit": False})
    app = pgqueue_ref.App(connector=connector)
    async with app.open_async():

        @app.task(name="t")
        async def t() -> None: ...

        job_id = await t.defer_async()
        assert db("SELECT id FROM pgqueue_jobs") == [(job_id,)]  # committed, seen elsewhere
        assert connector.pool.get_stats()["pool_available"] == connector.pool.max_size


async def test_asyncpg_connector_keeps_one_only_if_its_pool_can_spare_it(dsn: str) -> None:
    for max_size, kept in ((2, False), (3, True)):
        connector = pgqueue_ref.AsyncpgConnector(dsn=dsn, min_size=1, max_size=max_size)
        async with pgqueue_ref.App(connector=connector).open_async():
            await connector.fetch_all_async("SELECT 1")
            assert connector.pool.get_idle_size() == connector.pool.get_size() - kept
