"""``AsyncpgDriver`` and ``AsyncpgPoolDriver``: the Queue face over asyncpg.

Their quirks, and nothing else (the I/O itself is :mod:`pgqueue_ref.asyncpg_connector`'s):

* **No autocommit flag to check.** An asyncpg connection commits each
  statement on its own unless a transaction is open (``async with
  connection.transaction():``), which is exactly the mode PgQueuer asks
  for; so, unlike the psycopg drivers, these accept any connection.
* **One connection, one operation at a time.** asyncpg refuses a second
  query while one is running on the same connection ("another operation is
  in progress"), and a consumer runs several at once (claiming, recording
  outcomes, heartbeat). :class:`AsyncpgDriver` passes them through a lock.
  Your own queries on that connection do not take the lock: do not run them
  while a consumer uses it.
* **Your transaction is its transaction.** On one connection, an enqueue
  inside ``async with connection.transaction():`` commits or rolls back with
  it. A pool driver takes any connection from the pool, so it cannot join
  your transaction: enqueue through an ``AsyncpgDriver`` on the connection
  that holds the transaction instead.
* **LISTEN.** asyncpg delivers notifications through ``add_listener``
  callbacks, on the same connection, between queries: a single connection
  serves queries and LISTEN without either waiting for the other. The pool
  driver holds one pooled connection for LISTEN while a consumer runs, so
  its pool needs ``max_size >= 2``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import asyncpg

from .asyncpg_connector import (
    AsyncpgConnector,
    check_pool_leaves_room_for_listen,
    execute,
    fetch_all,
    listen,
)
from .connector import Params, Row
from .driver import Driver

__all__ = ["AsyncpgDriver", "AsyncpgPoolDriver"]


class _OneAtATime:
    """An asyncpg connection that runs one operation at a time, so that a
    consumer's concurrent queries queue up instead of failing. It offers what
    the I/O functions of :mod:`~pgqueue_ref.asyncpg_connector` use."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.lock = asyncio.Lock()

    async def execute(self, query: str, *args: Any) -> Any:
        async with self.lock:
            return await self.connection.execute(query, *args)

    async def fetch(self, query: str, *args: Any) -> Any:
        async with self.lock:
            return await self.connection.fetch(query, *args)

    async def add_listener(self, channel: str, callback: Callable[..., None]) -> None:
        async with self.lock:  # sends LISTEN
            await self.connection.add_listener(channel, callback)

    async def remove_listener(self, channel: str, callback: Callable[..., None]) -> None:
        async with self.lock:  # sends UNLISTEN
            await self.connection.remove_listener(channel, callback)

    def add_termination_listener(self, callback: Callable[[Any], None]) -> None:
        self.connection.add_termination_listener(callback)

    def is_closed(self) -> bool:
        return bool(self.connection.is_closed())


class AsyncpgDriver(Driver):
    """Thin wrapper around one ``asyncpg.Connection``, which you open and close."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        if not isinstance(connection, asyncpg.Connection):
            raise TypeError(
                f"AsyncpgDriver wraps an asyncpg.Connection (from 'await asyncpg.connect(dsn)'); "
                f"got {type(connection).__name__}. For a pool, use AsyncpgPoolDriver."
            )
        super().__init__()
        self.connection = connection
        self._conn = _OneAtATime(connection)

    def connection_lost(self) -> bool:
        return bool(self.connection.is_closed())

    async def _execute(self, query: str, params: Params, connection: Any) -> None:
        await execute(self._conn, query, params)

    async def _fetch_all(self, query: str, params: Params, connection: Any) -> list[Row]:
        return await fetch_all(self._conn, query, params)

    async def _listen(
        self, channel: str, on_notify: Callable[[str], None], on_ready: Callable[[], None]
    ) -> None:
        await listen(self._conn, channel, on_notify, on_ready)


class AsyncpgPoolDriver(Driver, AsyncpgConnector):
    """An ``asyncpg.Pool`` you created and will close: :class:`~pgqueue_ref.asyncpg_connector.AsyncpgConnector`'s
    I/O on your pool (one pooled connection per query; LISTEN holds one)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        if not isinstance(pool, asyncpg.Pool):
            raise TypeError(
                "AsyncpgPoolDriver wraps an asyncpg.Pool (from 'await asyncpg.create_pool(dsn)'); "
                f"got {type(pool).__name__}. For one connection, use AsyncpgDriver."
            )
        super().__init__()
        self._use_pool(pool, owned=False)

    def check_room_for_listen(self) -> None:
        check_pool_leaves_room_for_listen(self.pool, type(self).__name__)
