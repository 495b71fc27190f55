"""Factories of the Queue face's drivers for the conformance fixture.

A driver wraps a connection or pool that its caller opens and closes, so each
factory opens one on the test database and returns ``(driver, close)``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

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

Made = tuple[BaseConnector, Callable[[], Awaitable[None]]]


async def asyncpg_driver(dsn: str) -> Made:
    connection = await asyncpg.connect(dsn)
    return AsyncpgDriver(connection), connection.close


async def asyncpg_pool_driver(dsn: str) -> Made:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
    return AsyncpgPoolDriver(pool), pool.close


async def psycopg_driver(dsn: str) -> Made:
    connection = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    return PsycopgDriver(connection), connection.close


async def sync_psycopg_driver(dsn: str) -> Made:
    connection = await asyncio.to_thread(psycopg.connect, dsn, autocommit=True)
    return SyncPsycopgDriver(connection), lambda: asyncio.to_thread(connection.close)


async def psycopg_pool_driver(dsn: str) -> Made:
    pool = psycopg_pool.AsyncConnectionPool(dsn, min_size=1, max_size=4, open=False)
    await pool.open(wait=True)
    return PsycopgPoolDriver(pool), pool.close
