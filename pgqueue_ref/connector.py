"""The connector contract: what every connector and driver module implements.

A connector does I/O and nothing else: "run this SQL with these parameters on
my connection and give me the rows as dicts", "listen on this channel". It
receives SQL in the ``%(name)s`` style (see :mod:`pgqueue_ref.sql`), parameters
as a dict, and returns rows as dicts. Choosing queries, building parameters
and mapping rows happen in :mod:`pgqueue_ref.manager`, once for every driver.

Two base classes, one per kind of driver:

* :class:`AsyncConnector` — implement ``_open``, ``_close``, ``_execute``,
  ``_fetch_all`` and ``_listen`` as coroutines. The base class adds the public
  ``*_async`` methods, their blocking twins (so an async connector also serves
  sync code, see ``_LoopBridge``), and error translation.
* :class:`SyncConnector` — implement the same as blocking methods. Such a
  connector can defer jobs but cannot run a worker.

Both wrap every call of the subclass in :func:`translated_errors`, the single
place where driver exceptions become :mod:`pgqueue_ref.exceptions`.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Coroutine, Iterator, Mapping
from typing import Any, ClassVar, TypeVar

from .exceptions import (
    ConfigurationError,
    ConnectorNotOpen,
    ExternalConnectionError,
    SyncCallInAsyncContext,
    SyncConnectorConfigurationError,
    is_driver_error,
    translate,
)

__all__ = [
    "AsyncConnector",
    "BaseConnector",
    "Params",
    "Row",
    "SyncConnector",
    "require_async",
    "translated_errors",
]

T = TypeVar("T")
C = TypeVar("C")
Params = Mapping[str, Any]
Row = dict[str, Any]
_Method = Callable[[str, Params, Any], Coroutine[Any, Any, T]]  # _execute or _fetch_all


@contextlib.contextmanager
def translated_errors() -> Iterator[None]:
    """Re-raise driver exceptions as ours (the driver's stays as ``__cause__``)."""
    try:
        yield
    except Exception as error:
        if is_driver_error(error):
            raise translate(error) from error
        raise


class BaseConnector:
    """What both kinds of connector share."""

    #: Whether this connector can run a worker (it needs async I/O and LISTEN).
    can_run_worker: ClassVar[bool] = False
    #: Whether it opens (and closes) its own connections. The Queue face's
    #: drivers wrap a connection or pool the caller opened and will close.
    opens_connections: ClassVar[bool] = True
    #: Type accepted by ``configure(connection=...)``, or None if unsupported.
    external_connection_type: ClassVar[str | None] = None

    def _check_external_connection(self, connection: Any) -> None:
        if connection is not None and self.external_connection_type is None:
            raise ExternalConnectionError(
                f"{type(self).__name__} does not support external connections"
            )

    def _external(self, connection: Any, expected: type[C]) -> C:
        """``connection`` if it is of the type this connector defers on, else a clear error."""
        if not isinstance(connection, expected):
            raise ExternalConnectionError(
                f"{type(self).__name__} defers on a {self.external_connection_type}; "
                f"got {type(connection).__name__}"
            )
        return connection

    def _not_open(self, how: str) -> ConnectorNotOpen:
        return ConnectorNotOpen(f"{type(self).__name__} is not open: call {how} first.")

    # Blocking I/O, which every connector offers (async ones through _LoopBridge).
    def open(self, pool: Any = None) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def execute(self, query: str, params: Params | None = None, *, connection: Any = None) -> None:
        raise NotImplementedError

    def fetch_all(
        self, query: str, params: Params | None = None, *, connection: Any = None
    ) -> list[Row]:
        raise NotImplementedError

    def check_can_run_worker(self) -> None:
        if not self.can_run_worker:
            raise SyncConnectorConfigurationError(
                f"{type(self).__name__} can only defer jobs: a worker needs an async connector "
                "(PsycopgConnector, AiopgConnector or AsyncpgConnector). Open a second app on an "
                "async connector for the worker, e.g. with app.with_connector(...)."
            )


def require_async(connector: BaseConnector) -> AsyncConnector:
    """The connector, if it is async; otherwise an error that says what to call instead."""
    if not isinstance(connector, AsyncConnector):
        raise ConfigurationError(
            f"{type(connector).__name__} is a blocking connector: use the methods without "
            "_async (app.open(), defer(), batch_defer(), apply_schema()...)."
        )
    return connector


class SyncConnector(BaseConnector):
    """Base class of blocking connectors (defer only)."""

    _is_open = False

    def open(self, pool: Any = None) -> None:
        with translated_errors():
            self._open(pool)
        self._is_open = True

    def close(self) -> None:
        with translated_errors():
            self._close()
        self._is_open = False

    def execute(self, query: str, params: Params | None = None, *, connection: Any = None) -> None:
        self._check_can_query(connection)
        with translated_errors():
            self._execute(query, params or {}, connection)

    def fetch_all(
        self, query: str, params: Params | None = None, *, connection: Any = None
    ) -> list[Row]:
        self._check_can_query(connection)
        with translated_errors():
            return self._fetch_all(query, params or {}, connection)

    def fetch_one(
        self, query: str, params: Params | None = None, *, connection: Any = None
    ) -> Row | None:
        rows = self.fetch_all(query, params, connection=connection)
        return rows[0] if rows else None

    def _check_can_query(self, connection: Any) -> None:
        self._check_external_connection(connection)
        if not self._is_open and connection is None:
            raise self._not_open("'app.open()'")

    # To implement:
    def _open(self, pool: Any) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError

    def _execute(self, query: str, params: Params, connection: Any) -> None:
        raise NotImplementedError

    def _fetch_all(self, query: str, params: Params, connection: Any) -> list[Row]:
        raise NotImplementedError


class _LoopBridge:
    """Lets blocking code use an async connector, and never deadlocks trying.

    An async pool belongs to the event loop it was opened in. Three cases:

    * opened by ``open_async()`` in loop L, called from L: plain ``await``.
    * opened by ``open_async()`` in L, called (blocking) from another thread,
      e.g. a sync task running in a worker thread: the coroutine is sent to L
      and the thread waits for it.
    * opened by blocking ``open()`` with no loop running: the bridge starts a
      private loop in a daemon thread and the pool lives there; blocking and
      async callers alike send their coroutines to it.

    A blocking call from inside L itself would wait for L while blocking L: it
    raises :class:`SyncCallInAsyncContext` instead, pointing to the ``_async`` twins.
    A caller's own connection (``configure(connection=...)``) belongs to the
    caller's loop, so queries on it never go through the bridge.
    """

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start_private_loop(self) -> None:
        loop = asyncio.new_event_loop()
        thread = threading.Thread(
            target=loop.run_forever, name="pgqueue_ref-connector", daemon=True
        )
        thread.start()
        self.loop, self._thread = loop, thread

    def stop_private_loop(self) -> None:
        if self._thread is not None and self.loop is not None:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join()
            self.loop.close()
        self.loop, self._thread = None, None

    @property
    def is_private(self) -> bool:
        return self._thread is not None

    async def run_async(self, coro: Coroutine[Any, Any, T]) -> T:
        loop = self.loop
        if loop is None or loop is asyncio.get_running_loop():
            return await coro
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))

    def run_blocking(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if self.loop is None or self.loop is running:
            coro.close()
            raise SyncCallInAsyncContext(
                "a blocking call (defer(), batch_defer(), apply_schema(), open()...) was made "
                "inside the running event loop the connector belongs to (a notebook, an async "
                "function): it would wait for that loop while blocking it. Use its _async twin "
                "there, e.g. 'await task.defer_async(...)' or 'await app.open_async()'."
            )
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()


_OPEN_ASYNC = "'await app.open_async()' (or 'app.open()' in sync code)"


class AsyncConnector(BaseConnector):
    """Base class of asyncio connectors: they defer jobs and run workers."""

    can_run_worker = True

    def __init__(self) -> None:
        self._bridge = _LoopBridge()
        self._is_open = False

    # -- opening and closing ------------------------------------------------

    async def open_async(self, pool: Any = None) -> None:
        """Open in the running loop, or adopt ``pool`` (which we then never close)."""
        self._bridge.loop = asyncio.get_running_loop()
        with translated_errors():
            await self._open(pool)
        self._is_open = True

    async def close_async(self) -> None:
        if self._bridge.is_private:
            await self._bridge.run_async(self._close())
            self._bridge.stop_private_loop()
        else:
            with translated_errors():
                await self._close()
            self._bridge.loop = None  # blocking calls now say "not open", not "wrong loop"
        self._is_open = False

    def open(self, pool: Any = None) -> None:
        """Blocking open, for sync code: the pool lives in a private loop thread."""
        self._bridge.start_private_loop()
        try:
            self._bridge.run_blocking(self._open_translated(pool))
        except BaseException:
            self._bridge.stop_private_loop()
            raise
        self._is_open = True

    def close(self) -> None:
        if self._bridge.is_private:
            self._bridge.run_blocking(self._close_translated())
            self._bridge.stop_private_loop()
            self._is_open = False
        elif self._is_open:
            self._bridge.run_blocking(self.close_async())

    async def _open_translated(self, pool: Any) -> None:
        with translated_errors():
            await self._open(pool)

    async def _close_translated(self) -> None:
        with translated_errors():
            await self._close()

    # -- queries, async -----------------------------------------------------

    async def execute_async(
        self, query: str, params: Params | None = None, *, connection: Any = None
    ) -> None:
        await self._dispatch_async(self._execute, query, params, connection)

    async def fetch_all_async(
        self, query: str, params: Params | None = None, *, connection: Any = None
    ) -> list[Row]:
        return await self._dispatch_async(self._fetch_all, query, params, connection)

    async def fetch_one_async(
        self, query: str, params: Params | None = None, *, connection: Any = None
    ) -> Row | None:
        rows = await self.fetch_all_async(query, params, connection=connection)
        return rows[0] if rows else None

    # -- queries, blocking twins (see _LoopBridge) -------------------------

    def execute(self, query: str, params: Params | None = None, *, connection: Any = None) -> None:
        self._dispatch_blocking(self._execute, query, params, connection)

    def fetch_all(
        self, query: str, params: Params | None = None, *, connection: Any = None
    ) -> list[Row]:
        return self._dispatch_blocking(self._fetch_all, query, params, connection)

    def fetch_one(
        self, query: str, params: Params | None = None, *, connection: Any = None
    ) -> Row | None:
        rows = self.fetch_all(query, params, connection=connection)
        return rows[0] if rows else None

    async def _dispatch_async(
        self, method: _Method[T], query: str, params: Params | None, connection: Any
    ) -> T:
        coro = self._call(method, query, params, connection)
        if connection is not None:
            return await coro  # the caller's connection belongs to the caller's loop
        return await self._bridge.run_async(coro)

    def _dispatch_blocking(
        self, method: _Method[T], query: str, params: Params | None, connection: Any
    ) -> T:
        if connection is not None:
            self._check_external_connection(connection)
            raise ExternalConnectionError(
                f"{type(self).__name__} uses the caller's {self.external_connection_type} with "
                "await: call defer_async() / batch_defer_async() with configure(connection=...)."
            )
        if self._bridge.loop is None:  # never opened, or closed: no loop to run it in
            raise self._not_open(_OPEN_ASYNC)
        return self._bridge.run_blocking(self._call(method, query, params, connection))

    async def _call(
        self,
        method: _Method[T],
        query: str,
        params: Params | None,
        connection: Any,
    ) -> T:
        self._check_external_connection(connection)
        if not self._is_open and connection is None:
            raise self._not_open(_OPEN_ASYNC)
        with translated_errors():
            return await method(query, params or {}, connection)

    # -- LISTEN/NOTIFY ------------------------------------------------------

    def connection_lost(self) -> bool:
        """True when the connector can never query again: a driver whose one
        connection, which the caller opened, has died. Connectors with pools
        reconnect, so they always answer False."""
        return False

    async def listen_async(
        self,
        channel: str,
        on_notify: Callable[[str], None],
        on_ready: Callable[[], None] | None = None,
    ) -> None:
        """LISTEN on ``channel`` on a connection of its own, calling ``on_notify(payload)``
        for each notification, until cancelled. ``on_ready`` is called once LISTEN is in place.
        Both callbacks may run in the connector's own loop thread (see _LoopBridge): they
        must be thread-safe.
        """
        await self._bridge.run_async(
            self._listen_translated(channel, on_notify, on_ready or (lambda: None))
        )

    async def _listen_translated(
        self, channel: str, on_notify: Callable[[str], None], on_ready: Callable[[], None]
    ) -> None:
        with translated_errors():
            await self._listen(channel, on_notify, on_ready)

    # To implement:
    async def _open(self, pool: Any) -> None:
        raise NotImplementedError

    async def _close(self) -> None:
        raise NotImplementedError

    async def _execute(self, query: str, params: Params, connection: Any) -> None:
        raise NotImplementedError

    async def _fetch_all(self, query: str, params: Params, connection: Any) -> list[Row]:
        raise NotImplementedError

    async def _listen(
        self, channel: str, on_notify: Callable[[str], None], on_ready: Callable[[], None]
    ) -> None:
        raise NotImplementedError
