"""asyncpg: ``AsyncpgConnector`` (App face, over an ``asyncpg.Pool`` it creates or
adopts) and the Queue face's ``AsyncpgDriver`` (one connection) and
``AsyncpgPoolDriver`` (your pool).

Their quirks, and nothing else:

* asyncpg speaks PostgreSQL's own placeholders, ``$1, $2``, not ``%(name)s``:
  each query is rewritten once by :func:`pgqueue_ref.sql.to_numbered` and the
  parameters are passed in that order.
* **No autocommit flag to check.** An asyncpg connection commits each
  statement on its own unless a transaction is open (``async with
  conn.transaction():``), which is exactly the mode PgQueuer asks for; so,
  unlike the psycopg drivers, these accept any connection. On one connection
  (``AsyncpgDriver``), an enqueue inside your transaction commits or rolls
  back with it; a pool driver takes any pooled connection, so it cannot.
* **One connection, one operation at a time.** asyncpg refuses a second
  query while one is running on the same connection ("another operation is
  in progress"), and a consumer runs several at once (claiming, recording
  outcomes, heartbeat). ``AsyncpgDriver`` passes them through a lock. Your
  own queries on that connection do not take the lock: do not run them while
  a consumer uses it.
* Connection parameters: ``dsn=`` and/or asyncpg's keyword arguments
  (``host=``, ``user=``...), or neither, and asyncpg reads the libpq ``PG*``
  environment variables. Pool arguments (``min_size``, ``max_size``...) pass
  through to ``asyncpg.create_pool``.
* A pool we create skips asyncpg's reset query on release (``reset=``): by
  default each release sends ``SELECT pg_advisory_unlock_all(); CLOSE ALL;
  UNLISTEN *; RESET ALL``, one more round trip for every statement, to undo
  session state that our single autocommit statements never create. (asyncpg
  still rolls back a transaction left open.) Pass ``reset=`` to choose, and a
  pool of your own keeps its own setting: give it ``reset=keep_session`` if
  only pgqueue_ref uses it (:func:`keep_session`).
* Borrowing from an ``asyncpg.Pool`` costs more client time than a short
  statement: a pool we create keeps one connection out of it for statements
  (:mod:`~pgqueue_ref.connectors.kept`) when it has ``max_size >= 3`` (one for
  LISTEN, one kept, the rest shared). A pool of yours is used as it is.
* **Fencing**, as ``PsycopgConnector`` does it: a pool we create tags its
  connections with an ``application_name`` of its own (unless you set one in
  the DSN or ``server_settings``), which its workers register;
  ``abandon_connections()`` terminates them (``Connection.terminate()`` closes
  the transport, so a pending query fails at once).
* LISTEN uses ``add_listener``: asyncpg calls back for each notification,
  between queries, no polling loop needed. The connector and the pool driver
  hold one pooled connection for as long as a worker runs (so the pool needs
  ``max_size >= 2``); ``AsyncpgDriver``'s one connection serves queries and
  LISTEN without either waiting for the other.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
from psycopg.conninfo import conninfo_to_dict

from ..exceptions import ConfigurationError, ConnectionFailed
from ..sql import to_numbered
from .base import AsyncPoolConnector, JsonDumps, JsonLoads, Params, Row
from .driver import Driver
from .kept import KeptConnection

__all__ = [
    "AsyncpgConnector",
    "AsyncpgDriver",
    "AsyncpgPoolDriver",
    "check_pool_leaves_room_for_listen",
    "connection_failed",
    "execute",
    "fetch_all",
    "keep_session",
    "listen",
    "listen_at",
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


async def keep_session(conn: asyncpg.Connection) -> None:
    """Pool ``reset=``: nothing to undo after our statements (see the module docstring).

    A pool of yours that only pgqueue_ref uses (``PgQueuer.from_asyncpg_pool``,
    ``AsyncpgPoolDriver``) can skip the reset too:
    ``asyncpg.create_pool(dsn, reset=keep_session)``. Not if your own code leaves
    session state on its connections (``SET``, ``LISTEN``, advisory locks, cursors):
    that is what the reset undoes. Measured on a Queue-face drain (PgQueuer's
    ``batch_size=10``, a round trip per claim), two runs each: 13.4-13.6k -> 14.5-15.4k
    jobs/s."""


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


def connection_failed(error: Exception, dsn: str | None, args: dict[str, Any]) -> ConnectionFailed:
    """asyncpg's own message omits the address (e.g. a wrong password): say where
    we tried, from the same sources asyncpg reads, never with what password."""
    given = conninfo_to_dict(dsn) if dsn else {}
    host = args.get("host") or given.get("host") or os.environ.get("PGHOST", "localhost")
    port = args.get("port") or given.get("port") or os.environ.get("PGPORT", "5432")
    return ConnectionFailed(
        f"{type(error).__name__}: {error} (connecting to {host}:{port})",
        sqlstate=getattr(error, "sqlstate", None),
    )


async def listen_at(
    dsn: str, channel: str, on_notify: Callable[[str], None], on_ready: Callable[[], None]
) -> None:
    """LISTEN on a connection of its own to ``dsn`` (``listen_dsn=``) until cancelled."""
    try:
        conn = await asyncpg.connect(dsn)
    except (asyncpg.PostgresError, OSError) as error:
        raise connection_failed(error, dsn, {}) from error
    try:
        await listen(conn, channel, on_notify, on_ready)
    finally:
        await conn.close()


class AsyncpgConnector(AsyncPoolConnector[asyncpg.Pool]):
    def __init__(
        self,
        *,
        dsn: str | None = None,
        listen_dsn: str | None = None,
        json_dumps: JsonDumps | None = None,
        json_loads: JsonLoads | None = None,
        **pool_args: Any,
    ) -> None:
        super().__init__(listen_dsn=listen_dsn)
        self._set_json(json_dumps, json_loads)
        self._dsn = dsn
        self._pool_args = pool_args
        # Fencing, as PsycopgConnector does it: our tag on every connection of the pool
        # we create, unless you named them yourself; and every connection it opened.
        self._tag: str | None = None
        settings = dict(pool_args.get("server_settings") or {})
        if "application_name" not in {**conninfo_to_dict(dsn or ""), **settings}:
            self._tag = f"pgqueue_ref {secrets.token_hex(6)}"
            self._pool_args["server_settings"] = {**settings, "application_name": self._tag}
        self._connections: weakref.WeakSet[asyncpg.Connection] = weakref.WeakSet()

    @property
    def session_tag(self) -> str | None:
        return self._tag if self._owns_pool else None

    def abandon_connections(self) -> int:
        if not self._owns_pool:
            return 0
        abandoned = 0
        for conn in list(self._connections):
            if not conn.is_closed():
                conn.terminate()  # closes the transport: a pending query fails at once
                abandoned += 1
        return abandoned

    def _keep_one(self, pool: asyncpg.Pool) -> KeptConnection[asyncpg.Connection] | None:
        if pool.get_max_size() >= 3:  # LISTEN, the kept one, and one to share
            return KeptConnection(pool.acquire, pool.release)
        return None

    async def _create_pool(self) -> asyncpg.Pool:
        try:
            pool_args = {"reset": keep_session, **self._pool_args}
            init = pool_args.pop("init", None)

            async def initialised(conn: asyncpg.Connection) -> None:
                self._connections.add(conn)
                if init is not None:
                    await init(conn)

            return await asyncpg.create_pool(self._dsn, init=initialised, **pool_args)
        except (asyncpg.PostgresError, OSError) as error:
            raise connection_failed(error, self._dsn, self._pool_args) from error

    async def _close_pool(self, pool: asyncpg.Pool) -> None:
        await pool.close()

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

    async def _listen_at(
        self, dsn: str, channel: str, on_notify: Callable[[str], None], on_ready: Callable[[], None]
    ) -> None:
        await listen_at(dsn, channel, on_notify, on_ready)


class _OneAtATime:
    """An asyncpg connection that runs one operation at a time, so that a
    consumer's concurrent queries queue up instead of failing. It offers what
    the I/O functions above use."""

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

    def __init__(self, connection: asyncpg.Connection, *, listen_dsn: str | None = None) -> None:
        if not isinstance(connection, asyncpg.Connection):
            raise TypeError(
                f"AsyncpgDriver wraps an asyncpg.Connection (from 'await asyncpg.connect(dsn)'); "
                f"got {type(connection).__name__}. For a pool, use AsyncpgPoolDriver."
            )
        super().__init__(listen_dsn=listen_dsn)
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

    async def _listen_at(
        self, dsn: str, channel: str, on_notify: Callable[[str], None], on_ready: Callable[[], None]
    ) -> None:
        await listen_at(dsn, channel, on_notify, on_ready)


class AsyncpgPoolDriver(Driver, AsyncpgConnector):
    """An ``asyncpg.Pool`` you created and will close: :class:`AsyncpgConnector`'s
    I/O on your pool (one pooled connection per query; LISTEN holds one)."""

    def __init__(self, pool: asyncpg.Pool, *, listen_dsn: str | None = None) -> None:
        if not isinstance(pool, asyncpg.Pool):
            raise TypeError(
                "AsyncpgPoolDriver wraps an asyncpg.Pool (from 'await asyncpg.create_pool(dsn)'); "
                f"got {type(pool).__name__}. For one connection, use AsyncpgDriver."
            )
        super().__init__(listen_dsn=listen_dsn)
        self._use_pool(pool, owned=False)

    def check_room_for_listen(self) -> None:
        check_pool_leaves_room_for_listen(self.pool, type(self).__name__)
