"""AiopgConnector's own quirks (what every connector does is in tests/conformance)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiopg
import pytest

import pgqueue_ref
from pgqueue_ref.exceptions import ConfigurationError

Db = Callable[..., list[tuple[Any, ...]]]


async def _defer_one(app: pgqueue_ref.App) -> None:
    async with app.open_async():
        await app.configure_task("t").defer_async(n=1)


async def test_parameters_from_libpq_environment(libpq_env: dict[str, str], db: Db) -> None:
    await _defer_one(pgqueue_ref.App(connector=pgqueue_ref.AiopgConnector()))
    assert db("SELECT count(*) FROM pgqueue_jobs") == [(1,)]


async def test_parameters_as_a_dsn(pg: dict[str, str], db: Db) -> None:
    dsn = f"host={pg['host']} port={pg['port']} user={pg['user']} dbname={pg['dbname']}"
    await _defer_one(pgqueue_ref.App(connector=pgqueue_ref.AiopgConnector(dsn=dsn)))
    assert db("SELECT count(*) FROM pgqueue_jobs") == [(1,)]


async def test_parameters_as_keywords_and_pool_arguments_pass_through(
    pg: dict[str, str], db: Db
) -> None:
    connector = pgqueue_ref.AiopgConnector(**pg, minsize=2, maxsize=3, timeout=5)
    app = pgqueue_ref.App(connector=connector)
    async with app.open_async():
        assert (connector.pool.minsize, connector.pool.maxsize, connector.pool.timeout) == (2, 3, 5)
        await app.configure_task("t").defer_async(n=1)
    assert db("SELECT count(*) FROM pgqueue_jobs") == [(1,)]


async def test_a_pool_handed_in_is_used_and_not_closed(dsn: str, db: Db) -> None:
    async with aiopg.create_pool(dsn) as pool:
        app = pgqueue_ref.App(connector=pgqueue_ref.AiopgConnector())
        async with app.open_async(pool):
            await app.configure_task("t").defer_async(n=1)
        assert not pool.closed
        async with pool.acquire() as conn, conn.cursor() as cursor:
            await cursor.execute("SELECT count(*) FROM pgqueue_jobs")
            assert await cursor.fetchall() == [(1,)]


async def test_listen_needs_a_second_connection_in_the_pool(dsn: str) -> None:
    connector = pgqueue_ref.AiopgConnector(dsn=dsn, minsize=1, maxsize=1)
    async with pgqueue_ref.App(connector=connector).open_async():
        with pytest.raises(ConfigurationError, match=r"maxsize=1, but a worker's LISTEN holds one"):
            await connector.listen_async("pgqueue_ref", lambda payload: None)


async def test_the_listening_connection_is_closed_not_reused(dsn: str, db: Db) -> None:
    listening = (
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND query LIKE 'LISTEN%%'"
    )
    connector = pgqueue_ref.AiopgConnector(dsn=dsn)
    async with pgqueue_ref.App(connector=connector).open_async():
        ready = asyncio.Event()
        listener = asyncio.create_task(
            connector.listen_async("pgqueue_ref", lambda payload: None, ready.set)
        )
        await asyncio.wait_for(ready.wait(), 5)
        assert db(listening) == [(1,)]
        listener.cancel()
        with pytest.raises(asyncio.CancelledError):
            await listener
        assert db(listening) == [(0,)]  # its backend is gone: closed, not back in the pool
        assert connector.pool.freesize == connector.pool.size  # nothing lent out any more
