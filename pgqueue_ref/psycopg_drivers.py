"""``PsycopgDriver``, ``SyncPsycopgDriver``, ``PsycopgPoolDriver``: the Queue face over psycopg 3.

Their quirks, and nothing else (queries run through
:func:`pgqueue_ref.psycopg_connector.run`):

* **Autocommit is required, and checked at once.** A psycopg connection
  without autocommit opens a transaction at its first statement and keeps it
  open until someone commits: enqueued jobs stay invisible to consumers,
  claimed jobs stay locked, LISTEN never takes effect. Nobody would commit
  for the driver, so the driver refuses such a connection with
  :class:`~pgqueue_ref.exceptions.AutocommitRequired`, naming the fix
  (``autocommit=True``). asyncpg has no such flag: it is in this mode by default.
* **Your transaction is its transaction.** On an autocommit connection,
  ``async with conn.transaction():`` (or ``with conn.transaction():``) still
  opens an explicit transaction, and an enqueue inside it commits or rolls
  back with it. :class:`PsycopgPoolDriver` takes any pooled connection, so it
  cannot join your transaction.
* **SyncPsycopgDriver can only enqueue.** It is blocking; a consumer needs
  asyncio (LISTEN, concurrent jobs), so a worker on it is refused.
* **LISTEN on one connection without starving queries.** psycopg reads
  notifications only while it reads from the socket. PgQueuer's driver sits in
  ``notifies(timeout=1.0)``, which holds the connection's lock: every query
  waits up to a second (p95 55 ms measured). :class:`PsycopgDriver` instead
  registers a notify handler (psycopg calls it for notifications that arrive
  during any query) and, while the connection is idle, watches its socket
  for readability *without* holding the lock; only when data arrives does it
  take the lock for a moment to read what came in. Queries never wait for
  the listener, and an idle consumer wakes as soon as a NOTIFY arrives.
  The watch uses a duplicate of the socket's descriptor, because asyncio
  keeps one reader per descriptor and psycopg registers its own while a
  query waits for its result.
* **PsycopgPoolDriver** (PgQueuer has no psycopg pool driver): one pooled
  connection per query; a consumer's LISTEN holds one pooled connection for
  as long as it runs (so ``max_size >= 2``), switched to autocommit while it
  listens, and UNLISTENed before it goes back to the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import psycopg
import psycopg.sql
import psycopg_pool

from .connector import Params, Row, SyncConnector
from .driver import Driver
from .exceptions import AutocommitRequired, ConfigurationError, SyncConnectorConfigurationError
from .psycopg_connector import PsycopgConnector, listen, run
from .sync_psycopg_connector import run_blocking

__all__ = [
    "PsycopgDriver",
    "PsycopgPoolDriver",
    "SyncPsycopgDriver",
    "require_autocommit",
]


def require_autocommit(connection: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> None:
    """Refuse a connection without autocommit, saying how to turn it on."""
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
    raise AutocommitRequired(
        "the psycopg connection must be in autocommit mode (autocommit=True), and this one is "
        "not: its statements would wait in a transaction that nobody commits, so consumers "
        f"would never see the jobs. Fix: {how} before handing it over."
    )


def _check_type(connection: Any, expected: type, driver: str, instead: str) -> None:
    if not isinstance(connection, expected):
        raise TypeError(
            f"{driver} wraps a {expected.__module__}.{expected.__name__}; got "
            f"{type(connection).__name__}. {instead}"
        )


class PsycopgDriver(Driver):
    """One ``psycopg.AsyncConnection`` in autocommit mode, which you open and close."""

    def __init__(self, connection: psycopg.AsyncConnection[Any]) -> None:
        _check_type(
            connection,
            psycopg.AsyncConnection,
            "PsycopgDriver",
            "For a blocking psycopg.Connection, use SyncPsycopgDriver.",
        )
        require_autocommit(connection)
        super().__init__()
        self.connection = connection

    def connection_lost(self) -> bool:
        return bool(self.connection.closed or self.connection.broken)

    async def _execute(self, query: str, params: Params, connection: Any) -> None:
        await run(self.connection, query, params, rows=False)

    async def _fetch_all(self, query: str, params: Params, connection: Any) -> list[Row]:
        # psycopg serialises use of one connection itself (conn.lock).
        return await run(self.connection, query, params, rows=True)

    async def _listen(
        self, channel: str, on_notify: Callable[[str], None], on_ready: Callable[[], None]
    ) -> None:
        conn = self.connection

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


class SyncPsycopgDriver(SyncConnector):
    """One blocking ``psycopg.Connection`` in autocommit mode: it enqueues, nothing more."""

    opens_connections = False  # it wraps the caller's connection

    def __init__(self, connection: psycopg.Connection[Any]) -> None:
        _check_type(
            connection,
            psycopg.Connection,
            "SyncPsycopgDriver",
            "For a psycopg.AsyncConnection, use PsycopgDriver.",
        )
        require_autocommit(connection)
        self.connection = connection
        self._is_open = True  # the caller opened the connection

    def _open(self, pool: Any) -> None:
        if pool is not None:
            raise ConfigurationError("SyncPsycopgDriver already wraps its connection")

    def _close(self) -> None:
        """Nothing to close: the connection is the caller's."""

    def _execute(self, query: str, params: Params, connection: Any) -> None:
        run_blocking(self.connection, query, params)

    def _fetch_all(self, query: str, params: Params, connection: Any) -> list[Row]:
        return run_blocking(self.connection, query, params)

    def check_can_run_worker(self) -> None:
        raise SyncConnectorConfigurationError(
            "SyncPsycopgDriver can only defer jobs: a worker needs an async driver (it waits "
            "on LISTEN and runs jobs concurrently). Enqueue with it, and consume with "
            "PgQueuer.from_psycopg_connection(await psycopg.AsyncConnection.connect(dsn, "
            "autocommit=True)) or another async driver."
        )


class PsycopgPoolDriver(Driver, PsycopgConnector):
    """A ``psycopg_pool.AsyncConnectionPool`` you opened and will close:
    :class:`~pgqueue_ref.psycopg_connector.PsycopgConnector`'s queries on your pool; LISTEN on a pooled connection."""

    def __init__(self, pool: psycopg_pool.AsyncConnectionPool[Any]) -> None:
        _check_type(
            pool,
            psycopg_pool.AsyncConnectionPool,
            "PsycopgPoolDriver",
            "For one connection, use PsycopgDriver.",
        )
        super().__init__()
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
