"""Factories of the Queue face's drivers for the conformance fixture.

A driver wraps a connection or pool that its caller opens and closes, so each
factory opens one on the test database's :class:`Route` and returns
``(driver, close)``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import psycopg
import psycopg_pool

from pgqueue_ref.connectors import BaseConnector
from pgqueue_ref.db import (
    AsyncpgDriver,
    AsyncpgPoolDriver,
    PsycopgDriver,
    PsycopgPoolDriver,
    SyncPsycopgDriver,
)

#: A Queue-face consumer's row and its idle mark, as a consumer makes them before it
#: sleeps (go_idle in queries.sql): while it exists, enqueues NOTIFY the default channel.
IDLE_CONSUMER = (
    "WITH w AS (INSERT INTO pgqueue_workers (name) VALUES ('sleeping consumer') RETURNING id) "
    "INSERT INTO pgqueue_listeners (worker_id, face, queues, idle) SELECT id, 'queue', NULL, true FROM w"
)

#: What an async factory returns: the connector, and how to clean up after it.
Made = tuple[BaseConnector, Callable[[], Awaitable[None]]]


@dataclass(frozen=True)
class Route:
    """Where a connector's statements go, and what its driver needs to get there.

    Direct, ``dsn`` is the server and nothing changes. Through a transaction
    pooler (``listen_dsn`` set), each transaction may land on another server
    connection: a statement prepared on one is missing on the next, so the
    driver must not prepare, and a LISTEN goes deaf, so it gets a direct
    connection of its own (docs/connectors-howto.md, "Behind a transaction pooler").
    """

    dsn: str
    listen_dsn: str | None = None  # set: dsn is a transaction pooler, this the server

    @property
    def psycopg(self) -> dict[str, Any]:
        """psycopg 3's connection settings: it prepares a statement run five times."""
        return {"prepare_threshold": None} if self.listen_dsn else {}

    @property
    def asyncpg(self) -> dict[str, Any]:
        """asyncpg's connection settings: it prepares (and caches) every statement."""
        return {"statement_cache_size": 0} if self.listen_dsn else {}


async def asyncpg_driver(route: Route) -> Made:
    connection = await asyncpg.connect(route.dsn, **route.asyncpg)
    return AsyncpgDriver(connection, listen_dsn=route.listen_dsn), connection.close


async def asyncpg_pool_driver(route: Route) -> Made:
    pool = await asyncpg.create_pool(route.dsn, min_size=1, max_size=4, **route.asyncpg)
    return AsyncpgPoolDriver(pool, listen_dsn=route.listen_dsn), pool.close


async def psycopg_driver(route: Route) -> Made:
    connection = await psycopg.AsyncConnection.connect(route.dsn, autocommit=True, **route.psycopg)
    return PsycopgDriver(connection, listen_dsn=route.listen_dsn), connection.close


async def sync_psycopg_driver(route: Route) -> Made:  # blocking: no LISTEN
    connection = await asyncio.to_thread(
        psycopg.connect, route.dsn, autocommit=True, **route.psycopg
    )
    return SyncPsycopgDriver(connection), lambda: asyncio.to_thread(connection.close)


async def psycopg_pool_driver(route: Route) -> Made:
    pool = psycopg_pool.AsyncConnectionPool(
        route.dsn, kwargs=route.psycopg, min_size=1, max_size=4, open=False
    )
    await pool.open(wait=True)
    return PsycopgPoolDriver(pool, listen_dsn=route.listen_dsn), pool.close
