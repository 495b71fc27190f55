"""``PsycopgConnector``: asyncio, psycopg 3, over a ``psycopg_pool.AsyncConnectionPool``.

Its quirks, and nothing else:

* Connection parameters come as psycopg takes them: ``conninfo=`` (a DSN or
  URL), ``kwargs={...}`` (libpq keywords), or neither, and libpq reads the
  ``PG*`` environment variables. Every other argument goes to the pool
  (``min_size``, ``max_size``, ``timeout``...).
* The pool's connections are opened with ``autocommit=True`` unless you say
  otherwise: each of our statements is a whole transaction, so BEGIN and
  COMMIT would only add two round trips.
* It can defer on the caller's own ``psycopg.AsyncConnection``, inside the
  caller's transaction (``task.configure(connection=conn)``); we never commit it.
* LISTEN holds a connection of its own, outside the pool, for as long as a
  worker listens: a pooled connection would be handed to someone else.
* Borrowing from the pool costs more client time than a short statement: a
  pool we create keeps one connection out of it for statements
  (:mod:`pgqueue_ref.kept_connection`) when it is in autocommit and has
  ``max_size >= 2``. A pool of yours is used as it is.

The module-level functions do the I/O on any ``psycopg.AsyncConnection``; the
Queue face's psycopg drivers use them too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import psycopg.rows
import psycopg.sql
import psycopg_pool

from .connector import AsyncConnector, Params, Row
from .exceptions import ConfigurationError
from .kept_connection import KeptConnection

__all__ = ["PsycopgConnector", "listen", "run"]


class PsycopgConnector(AsyncConnector):
    external_connection_type = "psycopg.AsyncConnection"

    def __init__(
        self, *, conninfo: str = "", kwargs: dict[str, Any] | None = None, **pool_args: Any
    ) -> None:
        super().__init__()
        self._conninfo = conninfo
        self._kwargs = {"autocommit": True, **(kwargs or {})}
        self._pool_args = pool_args
        self._pool: psycopg_pool.AsyncConnectionPool[Any] | None = None
        self._owns_pool = False
        self._kept: KeptConnection[psycopg.AsyncConnection[Any]] | None = None

    @property
    def pool(self) -> psycopg_pool.AsyncConnectionPool[Any]:
        if self._pool is None:
            raise RuntimeError("PsycopgConnector is not open")
        return self._pool

    async def _open(self, pool: psycopg_pool.AsyncConnectionPool[Any] | None) -> None:
        if pool is None:
            self._use_pool(await self._create_pool(), owned=True)
        else:
            self._use_pool(pool, owned=False)

    def _use_pool(self, pool: psycopg_pool.AsyncConnectionPool[Any], *, owned: bool) -> None:
        self._pool, self._owns_pool = pool, owned
        # The kept one and one to share (LISTEN has a connection of its own).
        keeps = owned and self._kwargs.get("autocommit") is True and pool.max_size >= 2
        self._kept = KeptConnection(pool.getconn, pool.putconn) if keeps else None

    async def _create_pool(self) -> psycopg_pool.AsyncConnectionPool[Any]:
        # Fail fast, in the server's own words: a pool that cannot connect only
        # retries in the background and says "PoolTimeout" 30 seconds later.
        await (await psycopg.AsyncConnection.connect(self._conninfo, **self._kwargs)).close()
        pool = psycopg_pool.AsyncConnectionPool(
            self._conninfo, kwargs=self._kwargs, open=False, **self._pool_args
        )
        await pool.open(wait=True)
        return pool

    async def _close(self) -> None:
        if self._kept is not None:
            await self._kept.close()
            self._kept = None
        if self._pool is not None and self._owns_pool:
            await self._pool.close()
        self._pool = None

    async def _execute(self, query: str, params: Params, connection: Any) -> None:
        await self._fetch(query, params, connection, rows=False)

    async def _fetch_all(self, query: str, params: Params, connection: Any) -> list[Row]:
        return await self._fetch(query, params, connection, rows=True)

    async def _fetch(self, query: str, params: Params, connection: Any, *, rows: bool) -> list[Row]:
        if connection is not None:
            connection = self._external(connection, psycopg.AsyncConnection)
            return await run(connection, query, params, rows)
        if self._kept is not None:
            return await self._kept.run(lambda conn: run(conn, query, params, rows))
        # The pool's context commits, or rolls back, a connection not in autocommit.
        async with self.pool.connection() as conn:
            return await run(conn, query, params, rows)

    async def _listen(
        self, channel: str, on_notify: Callable[[str], None], on_ready: Callable[[], None]
    ) -> None:
        conninfo, kwargs = self._listen_params()
        async with await psycopg.AsyncConnection.connect(conninfo, **kwargs) as conn:
            await listen(conn, channel, on_notify, on_ready)

    def _listen_params(self) -> tuple[str, dict[str, Any]]:
        pool = self._pool
        if self._owns_pool or pool is None:
            return self._conninfo, self._kwargs
        # An adopted pool knows its own parameters (unless they are callables).
        if not isinstance(pool.conninfo, str) or not (
            pool.kwargs is None or isinstance(pool.kwargs, dict)
        ):
            raise ConfigurationError(
                "PsycopgConnector cannot LISTEN through a pool whose conninfo or kwargs are callables: "
                "give the connector conninfo=/kwargs= as well."
            )
        return pool.conninfo, {**(pool.kwargs or {}), "autocommit": True}


async def run(
    conn: psycopg.AsyncConnection[Any], query: str, params: Params, rows: bool
) -> list[Row]:
    """Run ``query`` on ``conn``; its rows as dicts if ``rows``, else none."""
    async with conn.cursor(row_factory=psycopg.rows.dict_row) as cursor:
        await cursor.execute(query, params or None)
        # A statement without RETURNING has no result set to fetch.
        return await cursor.fetchall() if rows and cursor.description is not None else []


async def listen(
    conn: psycopg.AsyncConnection[Any],
    channel: str,
    on_notify: Callable[[str], None],
    on_ready: Callable[[], None],
) -> None:
    """LISTEN on ``conn`` until cancelled. ``notifies()`` holds the connection
    the whole time, so ``conn`` must be one that nobody else queries."""
    await conn.execute(psycopg.sql.SQL("LISTEN {}").format(psycopg.sql.Identifier(channel)))
    on_ready()
    async for notification in conn.notifies():
        on_notify(notification.payload)
