"""``AsyncpgConnector``: asyncio, asyncpg, over an ``asyncpg.Pool``.

Its quirks, and nothing else:

* asyncpg speaks PostgreSQL's own placeholders, ``$1, $2``, not ``%(name)s``:
  each query is rewritten once by :func:`pgqueue_ref.sql.to_numbered` and the
  parameters are passed in that order.
* asyncpg has no autocommit flag: a connection is in autocommit unless a
  transaction is open (``async with conn.transaction():``).
* Connection parameters: ``dsn=`` and/or asyncpg's keyword arguments
  (``host=``, ``user=``...), or neither, and asyncpg reads the libpq ``PG*``
  environment variables. Pool arguments (``min_size``, ``max_size``...) pass
  through to ``asyncpg.create_pool``.
* A pool we create skips asyncpg's reset query on release (``reset=``): by
  default each release sends ``SELECT pg_advisory_unlock_all(); CLOSE ALL;
  UNLISTEN *; RESET ALL``, one more round trip for every statement, to undo
  session state that our single autocommit statements never create. (asyncpg
  still rolls back a transaction left open.) Pass ``reset=`` to choose, and a
  pool of your own keeps its own setting.
* Borrowing from an ``asyncpg.Pool`` costs more client time than a short
  statement: a pool we create keeps one connection out of it for statements
  (:mod:`pgqueue_ref.kept_connection`) when it has ``max_size >= 3`` (one for
  LISTEN, one kept, the rest shared). A pool of yours is used as it is.
* LISTEN uses ``add_listener`` on a pooled connection held for as long as a
  worker runs (so the pool needs ``max_size >= 2``); asyncpg calls back for
  each notification, no polling loop needed.

The module-level functions do the I/O on any asyncpg connection; the Queue
face's asyncpg drivers use them too.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
from psycopg.conninfo import conninfo_to_dict

from .connector import AsyncConnector, Params, Row
from .exceptions import ConfigurationError, ConnectionFailed
from .kept_connection import KeptConnection
from .sql import to_numbered

__all__ = [
    "AsyncpgConnector",
    "check_pool_leaves_room_for_listen",
    "execute",
    "fetch_all",
    "listen",
]

T = TypeVar("T")


async def execute(conn: Any, query: str, params: Params) -> None:
    """Run ``query`` (``%(name)s`` style) on an asyncpg connection, ignoring rows.

    Without parameters asyncpg uses the simple protocol, which also runs
    several statements in one string (the schema).
    """
    numbered, names = to_numbered(query)
    await conn.execute(numbered, *(params[name] for name in names))


async def fetch_all(conn: Any, query: str, params: Params) -> list[Row]:
    """Run ``query`` (``%(name)s`` style) on an asyncpg connection; rows as dicts."""
    numbered, names = to_numbered(query)
    records = await conn.fetch(numbered, *(params[name] for name in names))
    return [dict(record) for record in records]


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool ``reset=``: nothing to undo after our statements (see the module docstring)."""


def check_pool_leaves_room_for_listen(pool: asyncpg.Pool, owner: str) -> None:
    """The listener holds one pooled connection while a worker runs: keep one for queries."""
    if pool.get_max_size() < 2:
        raise ConfigurationError(
            f"{owner}'s pool has max_size={pool.get_max_size()}, but a worker's LISTEN holds one "
            "connection for as long as it runs and queries need another: use max_size >= 2."
        )


async def listen(
    conn: Any, channel: str, on_notify: Callable[[str], None], on_ready: Callable[[], None]
) -> None:
    """LISTEN on ``conn`` until cancelled; ``add_listener`` quotes the channel itself."""

    def callback(connection: Any, pid: int, channel: str, payload: str) -> None:
        on_notify(payload)

    lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_termination(connection: Any) -> None:
        if not lost.done():
            lost.set_result(None)

    conn.add_termination_listener(on_termination)
    await conn.add_listener(channel, callback)
    try:
        on_ready()
        await lost  # until cancelled, or until the connection dies
        raise ConnectionError("the LISTEN connection was closed")
    finally:
        if not conn.is_closed():
            await conn.remove_listener(channel, callback)


class AsyncpgConnector(AsyncConnector):
    def __init__(self, *, dsn: str | None = None, **pool_args: Any) -> None:
        super().__init__()
        self._dsn = dsn
        self._pool_args = pool_args
        self._pool: asyncpg.Pool | None = None
        self._owns_pool = False
        self._kept: KeptConnection[asyncpg.Connection] | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("AsyncpgConnector is not open")
        return self._pool

    async def _open(self, pool: asyncpg.Pool | None) -> None:
        if pool is None:
            self._use_pool(await self._create_pool(), owned=True)
        else:
            self._use_pool(pool, owned=False)

    def _use_pool(self, pool: asyncpg.Pool, *, owned: bool) -> None:
        self._pool, self._owns_pool = pool, owned
        keeps = owned and pool.get_max_size() >= 3  # LISTEN, the kept one, and one to share
        self._kept = KeptConnection(pool.acquire, pool.release) if keeps else None

    async def _create_pool(self) -> asyncpg.Pool:
        try:
            return await asyncpg.create_pool(
                self._dsn, **{"reset": _keep_session, **self._pool_args}
            )
        except (asyncpg.PostgresError, OSError) as error:
            # asyncpg's own message omits the address (e.g. a wrong password):
            # say where we tried, never with what password.
            raise ConnectionFailed(
                f"{type(error).__name__}: {error} (connecting to {self._address()})",
                sqlstate=getattr(error, "sqlstate", None),
            ) from error

    def _address(self) -> str:
        """host:port that asyncpg connects to, from the same sources it reads."""
        given = conninfo_to_dict(self._dsn) if self._dsn else {}
        host = (
            self._pool_args.get("host")
            or given.get("host")
            or os.environ.get("PGHOST", "localhost")
        )
        port = self._pool_args.get("port") or given.get("port") or os.environ.get("PGPORT", "5432")
        return f"{host}:{port}"

    async def _close(self) -> None:
        if self._kept is not None:
            await self._kept.close()
            self._kept = None
        if self._pool is not None and self._owns_pool:
            await self._pool.close()
        self._pool = None

    async def _execute(self, query: str, params: Params, connection: Any) -> None:
        await self._on_a_connection(lambda conn: execute(conn, query, params))

    async def _fetch_all(self, query: str, params: Params, connection: Any) -> list[Row]:
        return await self._on_a_connection(lambda conn: fetch_all(conn, query, params))

    async def _on_a_connection(self, work: Callable[[Any], Awaitable[T]]) -> T:
        if self._kept is not None:
            return await self._kept.run(work)
        async with self.pool.acquire() as conn:
            return await work(conn)

    async def _listen(
        self, channel: str, on_notify: Callable[[str], None], on_ready: Callable[[], None]
    ) -> None:
        # The LISTEN holds one pooled connection for as long as the worker runs.
        check_pool_leaves_room_for_listen(self.pool, type(self).__name__)
        async with self.pool.acquire() as conn:
            await listen(conn, channel, on_notify, on_ready)
