"""psycopg 3, asyncio: ``PsycopgConnector`` (App face) and the Queue face's
``PsycopgDriver`` and ``PsycopgPoolDriver``. The blocking twins are in
:mod:`~pgqueue_ref.connectors.psycopg_sync`.

Their quirks, and nothing else:

* **Connection parameters** (``PsycopgConnector``) come as psycopg takes them:
  ``conninfo=`` (a DSN or URL), ``kwargs={...}`` (libpq keywords), or neither,
  and libpq reads the ``PG*`` environment variables. Every other argument goes
  to the pool (``min_size``, ``max_size``, ``timeout``...).
* **Autocommit.** The connector's pool opens its connections with
  ``autocommit=True`` unless you say otherwise: each of our statements is a
  whole transaction, so BEGIN and COMMIT would only add two round trips. The
  drivers *require* it, and check at once: a psycopg connection without
  autocommit opens a transaction at its first statement and keeps it open
  until someone commits, so enqueued jobs would stay invisible to consumers,
  claimed jobs locked, and LISTEN would never take effect. Nobody would commit
  for the driver, so it refuses such a connection with
  :class:`~pgqueue_ref.exceptions.AutocommitRequired`, naming the fix.
* **Your transaction is its transaction.** ``PsycopgConnector`` defers on the
  caller's own ``psycopg.AsyncConnection`` (``task.configure(connection=conn)``),
  and ``PsycopgDriver`` on the connection it wraps: inside ``async with
  conn.transaction():`` an enqueue commits or rolls back with it; we never
  commit it. The pool driver takes any pooled connection, so it cannot.
* **LISTEN.** The connector's LISTEN holds a connection of its own, outside the
  pool, for as long as a worker listens: a pooled connection would be handed
  to someone else. The pool driver's holds one pooled connection (so
  ``max_size >= 2``), in autocommit while it listens, UNLISTENed before it goes
  back. ``PsycopgDriver`` LISTENs on its one connection without starving
  queries: PgQueuer's driver sits in ``notifies(timeout=1.0)``, which holds the
  connection's lock, so every query waits up to a second (p95 55 ms measured).
  Ours registers a notify handler (psycopg calls it for notifications that
  arrive during any query) and, while the connection is idle, watches its
  socket for readability *without* holding the lock; only when data arrives
  does it take the lock for a moment to read what came in. The watch uses a
  duplicate of the socket's descriptor, because asyncio keeps one reader per
  descriptor and psycopg registers its own while a query waits for its result.
* **Fencing.** A pool the connector creates tags its connections with an
  ``application_name`` of its own (``pgqueue_ref <random>``, unless you set
  one), which its workers register: the worker that presumes one of them dead
  terminates its backends on the server first. ``abandon_connections()`` shuts
  down the sockets of every connection of that pool, so that a query stuck on a
  cut-off connection fails at once. Not ``close()``: a closed descriptor leaves
  the query's await waiting forever, as epoll forgets it silently.
* **The kept connection.** Borrowing from the pool costs more client time than
  a short statement: a pool the connector creates keeps one connection out of
  it for statements (:mod:`~pgqueue_ref.connectors.kept`) when it is in
  autocommit and has ``max_size >= 2``. A pool of yours is used as it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Any

import psycopg
import psycopg.conninfo
import psycopg.rows
import psycopg.sql
import psycopg_pool

from ..exceptions import AutocommitRequired, ConfigurationError
from .base import AsyncPoolConnector, JsonDumps, JsonLoads, Params, Row
from .driver import Driver
from .kept import KeptConnection

__all__ = [
    "PsycopgConnector",
    "PsycopgDriver",
    "PsycopgPoolDriver",
    "check_type",
    "listen",
    "listen_at",
    "require_autocommit",
    "run",
]

Pool = psycopg_pool.AsyncConnectionPool[Any]


async def run(conn: psycopg.AsyncConnection[Any], query: str, params: Params) -> list[Row]:
    """Run ``query`` on ``conn``; its rows as dicts (none for a statement without rows)."""
    async with conn.cursor(row_factory=psycopg.rows.dict_row) as cursor:
        await cursor.execute(query, params or None)
        return await cursor.fetchall() if cursor.description is not None else []


async def listen_at(
    dsn: str, channel: str, on_notify: Callable[[str], None], on_ready: Callable[[], None]
) -> None:
    """LISTEN on a connection of its own to ``dsn`` (``listen_dsn=``) until cancelled."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await listen(conn, channel, on_notify, on_ready)


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


def require_autocommit(
    connection: psycopg.Connection[Any] | psycopg.AsyncConnection[Any], *, in_use: bool = False
) -> None:
    """Refuse a connection without autocommit, saying how to turn it on.

    The drivers call it when they are built, and again (``in_use``) before each
    statement: an attribute read, no round trip. A connection switched out of
    autocommit after the driver was built would otherwise take an enqueue into a
    transaction that nobody commits, return its id, and lose the job.
    """
    if connection.autocommit:
        return
    if isinstance(connection, psycopg.AsyncConnection):
        how = (
            "connect with 'await psycopg.AsyncConnection.connect(dsn, autocommit=True)', "
            "or call 'await conn.set_autocommit(True)'"
        )
    else:
        how = (
            "connect with 'psycopg.connect(dsn, autocommit=True)', or set 'conn.autocommit = True'"
        )
    if in_use:
        raise AutocommitRequired(
            "the driver's psycopg connection is no longer in autocommit mode: it was switched "
            "off after the driver was built, so this statement would wait in a transaction "
            "that nobody commits and its jobs would be lost; it was not sent. Fix: turn it back "
            f"on ({how.replace('connect with ', 'reconnect with ')}) and leave it on while the "
            "driver uses it (for a transaction of your own, use 'conn.transaction()', which "
            "keeps autocommit on)."
        )
    raise AutocommitRequired(
        "the psycopg connection must be in autocommit mode (autocommit=True), and this one is "
        "not: its statements would wait in a transaction that nobody commits, so consumers "
        f"would never see the jobs. Fix: {how} before handing it over."
    )


def check_type(connection: Any, expected: type, driver: str, instead: str) -> None:
    """A driver given the wrong kind of object says which kind it wraps."""
    if not isinstance(connection, expected):
        raise TypeError(
            f"{driver} wraps a {expected.__module__}.{expected.__name__}; got "
            f"{type(connection).__name__}. {instead}"
        )


class PsycopgConnector(AsyncPoolConnector[Pool]):
    external_connection_type = "psycopg.AsyncConnection"

    def __init__(
        self,
        *,
        conninfo: str = "",
        kwargs: dict[str, Any] | None = None,
        listen_dsn: str | None = None,
        json_dumps: JsonDumps | None = None,
        json_loads: JsonLoads | None = None,
        **pool_args: Any,
    ) -> None:
        super().__init__(listen_dsn=listen_dsn)
        self._set_json(json_dumps, json_loads)
        self._conninfo = conninfo
        self._kwargs = {"autocommit": True, **(kwargs or {})}
        self._pool_args = pool_args
        # Fencing: our tag on every connection of the pool we create, unless you named
        # them yourself; and every connection the pool opened, to abandon them.
        self._tag: str | None = None
        if "application_name" not in {
            **psycopg.conninfo.conninfo_to_dict(conninfo),
            **self._kwargs,
        }:
            self._tag = f"pgqueue_ref {secrets.token_hex(6)}"
            self._kwargs["application_name"] = self._tag
        self._connections: weakref.WeakSet[psycopg.AsyncConnection[Any]] = weakref.WeakSet()

    @property
    def session_tag(self) -> str | None:
        return self._tag if self._owns_pool else None

    def abandon_connections(self) -> int:
        if not self._owns_pool:
            return 0
        abandoned = 0
        for conn in list(self._connections):
            with contextlib.suppress(psycopg.Error, OSError):  # closed already
                with socket.socket(fileno=os.dup(conn.pgconn.socket)) as sock:
                    sock.shutdown(socket.SHUT_RDWR)  # its reads end now, in EOF
                abandoned += 1
        return abandoned

    async def _create_pool(self) -> Pool:
        # Fail fast, in the server's own words: a pool that cannot connect only
        # retries in the background and says "PoolTimeout" 30 seconds later.
        await (await psycopg.AsyncConnection.connect(self._conninfo, **self._kwargs)).close()
        pool_args = dict(self._pool_args)
        configure = pool_args.pop("configure", None)

        async def configured(conn: psycopg.AsyncConnection[Any]) -> None:
            self._connections.add(conn)
            if configure is not None:
                await configure(conn)

        pool = psycopg_pool.AsyncConnectionPool(
            self._conninfo, kwargs=self._kwargs, open=False, configure=configured, **pool_args
        )
        await pool.open(wait=True)
        return pool

    async def _close_pool(self, pool: Pool) -> None:
        await pool.close()

    def _keep_one(self, pool: Pool) -> KeptConnection[psycopg.AsyncConnection[Any]] | None:
        # The kept one and one to share (LISTEN has a connection of its own).
        if self._kwargs.get("autocommit") is True and pool.max_size >= 2:
            return KeptConnection(pool.getconn, pool.putconn)
        return None

    async def _fetch_all(self, query: str, params: Params, connection: Any) -> list[Row]:
        if connection is not None:
            return await run(self._external(connection, psycopg.AsyncConnection), query, params)
        if self._kept is not None:
            return await self._kept.run(lambda conn: run(conn, query, params))
        # The pool's context commits, or rolls back, a connection not in autocommit.
        async with self.pool.connection() as conn:
            return await run(conn, query, params)

    async def _listen(
        self, channel: str, on_notify: Callable[[str], None], on_ready: Callable[[], None]
    ) -> None:
        conninfo, kwargs = self._listen_params()
        async with await psycopg.AsyncConnection.connect(conninfo, **kwargs) as conn:
            await listen(conn, channel, on_notify, on_ready)

    async def _listen_at(
        self, dsn: str, channel: str, on_notify: Callable[[str], None], on_ready: Callable[[], None]
    ) -> None:
        await listen_at(dsn, channel, on_notify, on_ready)

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


class PsycopgDriver(Driver):
    """One ``psycopg.AsyncConnection`` in autocommit mode, which you open and close."""

    def __init__(
        self, connection: psycopg.AsyncConnection[Any], *, listen_dsn: str | None = None
    ) -> None:
        check_type(
            connection,
            psycopg.AsyncConnection,
            "PsycopgDriver",
            "For a blocking psycopg.Connection, use SyncPsycopgDriver.",
        )
        require_autocommit(connection)
        super().__init__(listen_dsn=listen_dsn)
        self.connection = connection

    async def _listen_at(
        self, dsn: str, channel: str, on_notify: Callable[[str], None], on_ready: Callable[[], None]
    ) -> None:
        await listen_at(dsn, channel, on_notify, on_ready)

    def connection_lost(self) -> bool:
        return bool(self.connection.closed or self.connection.broken)

    async def _fetch_all(self, query: str, params: Params, connection: Any) -> list[Row]:
        require_autocommit(self.connection, in_use=True)
        # psycopg serialises use of one connection itself (conn.lock).
        return await run(self.connection, query, params)

    async def _listen(
        self, channel: str, on_notify: Callable[[str], None], on_ready: Callable[[], None]
    ) -> None:
        conn = self.connection
        require_autocommit(conn, in_use=True)  # LISTEN takes effect at a commit

        def handler(notification: psycopg.Notify) -> None:
            if notification.channel == channel:
                on_notify(notification.payload)

        conn.add_notify_handler(handler)
        try:
            await conn.execute(psycopg.sql.SQL("LISTEN {}").format(psycopg.sql.Identifier(channel)))
            on_ready()
            async with _socket_watch(conn.pgconn.socket) as readable:
                while True:
                    await readable()
                    # Whatever arrived may be a query's reply (its query has the lock
                    # and reads it) or a notification nobody is reading: take the lock,
                    # then read what is there without waiting (libpq never blocks here).
                    async with conn.lock:
                        conn.pgconn.consume_input()
                        while notification := conn.pgconn.notifies():
                            # psycopg's own dispatch: our handler, and any of yours.
                            if conn.pgconn.notify_handler is not None:
                                conn.pgconn.notify_handler(notification)
        finally:
            conn.remove_notify_handler(handler)
            if not conn.closed:
                with contextlib.suppress(psycopg.Error):
                    await conn.execute(
                        psycopg.sql.SQL("UNLISTEN {}").format(psycopg.sql.Identifier(channel))
                    )


@contextlib.asynccontextmanager
async def _socket_watch(socket: int) -> AsyncIterator[Callable[[], asyncio.Future[None]]]:
    """``await readable()`` returns once the socket has data to read."""
    loop = asyncio.get_running_loop()
    fd = os.dup(socket)  # asyncio allows one reader per descriptor; psycopg uses the original

    def readable() -> asyncio.Future[None]:
        ready: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            loop.remove_reader(fd)  # level-triggered: stop before it fires again
            if not ready.done():
                ready.set_result(None)

        loop.add_reader(fd, wake)
        return ready

    try:
        yield readable
    finally:
        loop.remove_reader(fd)
        os.close(fd)


class PsycopgPoolDriver(Driver, PsycopgConnector):
    """A ``psycopg_pool.AsyncConnectionPool`` you opened and will close (beyond PgQueuer,
    which has no psycopg pool driver): :class:`PsycopgConnector`'s queries on your pool;
    LISTEN on a pooled connection."""

    def __init__(self, pool: Pool, *, listen_dsn: str | None = None) -> None:
        check_type(
            pool,
            psycopg_pool.AsyncConnectionPool,
            "PsycopgPoolDriver",
            "For one connection, use PsycopgDriver.",
        )
        super().__init__(listen_dsn=listen_dsn)
        self._use_pool(pool, owned=False)

    def check_room_for_listen(self) -> None:
        if self.pool.max_size < 2:
            raise ConfigurationError(
                f"PsycopgPoolDriver's pool has max_size={self.pool.max_size}, but a worker's "
                "LISTEN holds one connection for as long as it runs and queries need another: "
                "use max_size >= 2."
            )

    async def _listen(
        self, channel: str, on_notify: Callable[[str], None], on_ready: Callable[[], None]
    ) -> None:
        self.check_room_for_listen()
        async with self.pool.connection() as conn:
            # LISTEN takes effect at commit: in autocommit, at once. The pool
            # does not undo either LISTEN or autocommit when it takes the
            # connection back, so we do.
            autocommit = conn.autocommit
            await conn.set_autocommit(True)
            try:
                await listen(conn, channel, on_notify, on_ready)
            finally:
                with contextlib.suppress(psycopg.Error):  # a broken connection is discarded anyway
                    await conn.execute("UNLISTEN *")
                    await conn.set_autocommit(autocommit)
