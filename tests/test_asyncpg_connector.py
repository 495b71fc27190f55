"""AsyncpgConnector's own quirks (what every connector does is in tests/conformance)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import asyncpg
import pytest

import pgqueue_ref
from pgqueue_ref.exceptions import ConfigurationError

Db = Callable[..., list[tuple[Any, ...]]]


async def _defer_one(app: pgqueue_ref.App) -> None:
    async with app.open_async():
        await app.configure_task("t").defer_async(n=1)


async def test_parameters_from_libpq_environment(libpq_env: dict[str, str], db: Db) -> None:
    await _defer_one(pgqueue_ref.App(connector=pgqueue_ref.AsyncpgConnector()))
    assert db("SELECT count(*) FROM pgqueue_jobs") == [(1,)]


async def test_parameters_as_a_dsn(pg: dict[str, str], db: Db) -> None:
    dsn = f"postgres://{pg['user']}@{pg['host']}:{pg['port']}/{pg['dbname']}"
    await _defer_one(pgqueue_ref.App(connector=pgqueue_ref.AsyncpgConnector(dsn=dsn)))
    assert db("SELECT count(*) FROM pgqueue_jobs") == [(1,)]


async def test_parameters_as_keywords_and_pool_arguments_pass_through(
    pg: dict[str, str], db: Db
) -> None:
    connector = pgqueue_ref.AsyncpgConnector(
        host=pg["host"],
        port=int(pg["port"]),
        user=pg["user"],
        database=pg["dbname"],  # asyncpg's name for it
        min_size=2,
        max_size=3,
    )
    app = pgqueue_ref.App(connector=connector)
    async with app.open_async():
        assert (connector.pool.get_min_size(), connector.pool.get_max_size()) == (2, 3)
        await app.configure_task("t").defer_async(n=1)
    assert db("SELECT count(*) FROM pgqueue_jobs") == [(1,)]


async def test_a_pool_handed_in_is_used_and_not_closed(dsn: str) -> None:
    async with asyncpg.create_pool(dsn) as pool:
        app = pgqueue_ref.App(connector=pgqueue_ref.AsyncpgConnector())
        async with app.open_async(pool):
            await app.configure_task("t").defer_async(n=1)
        assert not pool.is_closing()
        assert await pool.fetchval("SELECT count(*) FROM pgqueue_jobs") == 1


async def test_listen_needs_a_second_connection_in_the_pool(dsn: str) -> None:
    connector = pgqueue_ref.AsyncpgConnector(dsn=dsn, min_size=1, max_size=1)
    async with pgqueue_ref.App(connector=connector).open_async():
        with pytest.raises(
            ConfigurationError, match=r"max_size=1, but a worker's LISTEN holds one"
        ):
            await connector.listen_async("pgqueue_ref", lambda payload: None)
