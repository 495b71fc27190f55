"""The connector contract: what every connector and driver module implements.

A connector does I/O and nothing else: "run this SQL with these parameters on
my connection and give me the rows as dicts", "listen on this channel". It
receives SQL in the ``%(name)s`` style (see :mod:`pgqueue_ref.sql`), parameters
as a dict, and returns rows as dicts. Choosing queries, building parameters
and mapping rows happen in :mod:`pgqueue_ref.manager`, once for every driver.

Two base classes, one per kind of driver:

* :class:`AsyncConnector` — implement ``_open``, ``_close``, ``_fetch_all``
  and ``_listen`` as coroutines (and ``_execute`` if running a statement
  without rows differs). The base class adds the public ``*_async`` methods,
  their blocking twins (so an async connector also serves sync code, see
  :mod:`~pgqueue_ref.connectors.bridge`), and error translation.
* :class:`SyncConnector` — implement the same as blocking methods. Such a
  connector can defer jobs but cannot run a worker: :func:`require_async` is
  the one place that asks.

Connectors that make a pool, or adopt the caller's, say only how to create
and close one (:class:`AsyncPoolConnector`, :class:`SyncPoolConnector`). The
Queue face's drivers, which wrap what the caller opened, are
:class:`~pgqueue_ref.connectors.driver.Driver`.

Every call of a subclass runs inside :func:`translated_errors`, the single
place where driver exceptions become :mod:`pgqueue_ref.exceptions`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Iterator, Mapping
from typing import Any, ClassVar, Generic, TypeAlias, TypeVar

from ..exceptions import (
    ConnectorNotOpen,
    ExternalConnectionError,
    SyncConnectorConfigurationError,
    is_driver_error,
    translate,
)
from .bridge import LoopBridge
from .kept import KeptConnection

__all__ = [
    "AsyncConnector",
    "AsyncPoolConnector",
    "BaseConnector",
    "Params",
    "Row",
    "SyncConnector",
    "SyncPoolConnector",
    "require_async",
    "translated_errors",
]

T = TypeVar("T")
C = TypeVar("C")
P = TypeVar("P")
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


#: procrastinate's ``json_dumps``: a JSON value (the task's keyword arguments) -> JSON text.
JsonDumps: TypeAlias = Callable[[Any], str]
#: procrastinate's ``json_loads``: JSON text -> a JSON value.
JsonLoads: TypeAlias = Callable[[str], Any]


class BaseConnector:
    """What both kinds of connector share."""

    #: Whether it opens (and closes) its own connections. The Queue face's
    #: drivers wrap a connection or pool the caller opened and will close.
    opens_connections: ClassVar[bool] = True
    #: Type accepted by ``configure(connection=...)``, or None if unsupported.
    external_connection_type: ClassVar[str | None] = None
    #: How to open it, for the "not open" error.
    _how_to_open: ClassVar[str] = "'app.open()'"
    #: procrastinate's ``json_dumps=`` / ``json_loads=``: how the App face turns task
    #: arguments into JSON text and back (None: the ``json`` module). Applied in
    #: :func:`pgqueue_ref.jobs.dump_args` and :func:`~pgqueue_ref.jobs.job_from_row`,
    #: the one place for every driver; never passed to the driver itself.
    json_dumps: JsonDumps | None = None
    json_loads: JsonLoads | None = None

    def _set_json(self, json_dumps: JsonDumps | None, json_loads: JsonLoads | None) -> None:
        self.json_dumps, self.json_loads = json_dumps, json_loads

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

    def _not_open(self) -> ConnectorNotOpen:
        return ConnectorNotOpen(
            f"{type(self).__name__} is not open: call {self._how_to_open} first."
        )

    # Blocking I/O, which every connector offers (async ones through the bridge).
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


def require_async(connector: BaseConnector, *, worker: bool = False) -> AsyncConnector:
    """``connector`` as an :class:`AsyncConnector`, or an error that says what to use instead.

    The one place that asks "can this run a worker?" (``worker=True``: the App's
    worker, PgQueuer) or "can this be awaited?" (the ``*_async`` methods). Both
    need asyncio; a :class:`SyncConnector` only defers, and the error
    (:class:`~pgqueue_ref.exceptions.SyncConnectorConfigurationError`) names
    its async counterpart (:attr:`SyncConnector.for_a_worker`).
    """
    if isinstance(connector, AsyncConnector):
        return connector
    name = type(connector).__name__
    if worker:
        instead = getattr(connector, "for_a_worker", SyncConnector.for_a_worker)
        kind = "connector" if connector.opens_connections else "driver"
        raise SyncConnectorConfigurationError(
            f"{name} can only defer jobs: a worker needs an async {kind} (it waits on LISTEN "
            f"and runs jobs concurrently). {instead}"
        )
    raise SyncConnectorConfigurationError(
        f"{name} is a blocking connector: use the methods without _async (app.open(), defer(), "
        "batch_defer(), apply_schema()...)."
    )


class SyncConnector(BaseConnector):
    """Base class of blocking connectors (defer only)."""

    #: What to run a worker on instead, for :func:`~pgqueue_ref.connectors.base.require_async`'s error.
    for_a_worker: ClassVar[str] = (
        "Defer with it, and run the worker on an async connector (PsycopgConnector, "
        "AiopgConnector or AsyncpgConnector), e.g. in a second app: app.with_connector(...)."
    )
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
            raise self._not_open()

    # To implement:
    def _open(self, pool: Any) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError

    def _execute(self, query: str, params: Params, connection: Any) -> None:
        self._fetch_all(query, params, connection)  # rows, if any, are dropped

    def _fetch_all(self, query: str, params: Params, connection: Any) -> list[Row]:
        raise NotImplementedError


class AsyncConnector(BaseConnector):
    """Base class of asyncio connectors: they defer jobs and run workers."""

    _how_to_open = "'await app.open_async()' (or 'app.open()' in sync code)"

    def __init__(self, *, listen_dsn: str | None = None) -> None:
        self._bridge = LoopBridge()
        self._is_open = False
        #: A DSN for the LISTEN connection only, when it must not go where the
        #: statements go: behind a transaction pooler (PgBouncer in transaction mode),
        #: whose server connections forget a LISTEN as soon as its statement ends.
        #: Point it at the server itself, or at a session-mode pool.
        self.listen_dsn = listen_dsn

    # -- fencing (see the worker's fence) -----------------------------------

    @property
    def session_tag(self) -> str | None:
        """The ``application_name`` this connector gives every connection it opens,
        unique to it. A worker registers it, so that the worker that presumes it dead
        can terminate its backends before handing its jobs to anyone: the fence's
        server-side half. None (the default): its connections carry no tag of ours
        (a pool or connection of yours, or an ``application_name`` you chose), and
        nothing is terminated for it."""
        return None

    def abandon_connections(self) -> int:
        """Make every query in flight on this connector's connections fail at once, and
        those connections unusable (the pool replaces them): the fence's local half,
        for a worker cut off from the database, whose queries would otherwise hang
        until the network heals. Returns how many were abandoned; 0 where the
        connector cannot (the default)."""
        return 0

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

    # -- queries, blocking twins (see the bridge) ---------------------------

    def execute(self, query: str, params: Params | None = None, *, connection: Any = None) -> None:
        self._dispatch_blocking(self._execute, query, params, connection)

    def execute_blocking(self, query: str, params: Params | None = None) -> None:
        """``execute``, under a name no driver protocol takes: on a Queue-face
        :class:`~pgqueue_ref.connectors.driver.Driver`, ``execute`` is PgQueuer's coroutine."""
        self._dispatch_blocking(self._execute, query, params, None)

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
            raise self._not_open()
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
            raise self._not_open()
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
        Both callbacks may run in the connector's own loop thread (see the bridge): they
        must be thread-safe. With :attr:`listen_dsn`, the connection is opened there.
        """
        await self._bridge.run_async(
            self._listen_translated(channel, on_notify, on_ready or (lambda: None))
        )

    async def _listen_translated(
        self, channel: str, on_notify: Callable[[str], None], on_ready: Callable[[], None]
    ) -> None:
        with translated_errors():
            if self.listen_dsn is None:
                await self._listen(channel, on_notify, on_ready)
            else:
                await self._listen_at(self.listen_dsn, channel, on_notify, on_ready)

    # To implement:
    async def _open(self, pool: Any) -> None:
        raise NotImplementedError

    async def _close(self) -> None:
        raise NotImplementedError

    async def _execute(self, query: str, params: Params, connection: Any) -> None:
        await self._fetch_all(query, params, connection)  # rows, if any, are dropped

    async def _fetch_all(self, query: str, params: Params, connection: Any) -> list[Row]:
        raise NotImplementedError

    async def _listen(
        self, channel: str, on_notify: Callable[[str], None], on_ready: Callable[[], None]
    ) -> None:
        raise NotImplementedError

    async def _listen_at(
        self,
        dsn: str,
        channel: str,
        on_notify: Callable[[str], None],
        on_ready: Callable[[], None],
    ) -> None:
        """LISTEN on a connection of its own to ``dsn`` (``listen_dsn=``), opened
        with this connector's driver, and closed when cancelled."""
        raise NotImplementedError


# -- adopt or own a pool ----------------------------------------------------------------


class _PoolOwner(BaseConnector, Generic[P]):
    """A connector over a pool: one it creates and closes, or the caller's, which it
    uses and leaves open (``app.open(pool)``)."""

    _pool: P | None = None
    _owns_pool = False

    @property
    def pool(self) -> P:
        """The pool statements run on; :class:`~pgqueue_ref.exceptions.ConnectorNotOpen`
        before it is opened."""
        if self._pool is None:
            raise self._not_open()
        return self._pool

    def _use_pool(self, pool: P, *, owned: bool) -> None:
        self._pool, self._owns_pool = pool, owned

    def _drop_pool(self) -> P | None:
        """Forget the pool; return it if it is ours to close."""
        pool, owned = self._pool, self._owns_pool
        self._pool, self._owns_pool = None, False
        return pool if owned else None


class AsyncPoolConnector(_PoolOwner[P], AsyncConnector):
    """An async connector over a pool: implement ``_create_pool`` and ``_close_pool``.

    A subclass may also keep one pooled connection at hand for statements
    (``_keep_one``, see :mod:`~pgqueue_ref.connectors.kept`), only in a pool it owns.
    """

    _kept: KeptConnection[Any] | None = None

    async def _open(self, pool: P | None) -> None:
        if pool is None:
            self._use_pool(await self._create_pool(), owned=True)
        else:
            self._use_pool(pool, owned=False)

    def _use_pool(self, pool: P, *, owned: bool) -> None:
        super()._use_pool(pool, owned=owned)
        self._kept = self._keep_one(pool) if owned else None

    async def _close(self) -> None:
        if self._kept is not None:  # first: a closing pool waits for its connections
            await self._kept.close()
            self._kept = None
        if (pool := self._drop_pool()) is not None:
            await self._close_pool(pool)

    async def _create_pool(self) -> P:
        raise NotImplementedError

    async def _close_pool(self, pool: P) -> None:
        raise NotImplementedError

    def _keep_one(self, pool: P) -> KeptConnection[Any] | None:
        return None


class SyncPoolConnector(_PoolOwner[P], SyncConnector):
    """A blocking connector over a pool: implement ``_create_pool`` and ``_close_pool``."""

    def _open(self, pool: P | None) -> None:
        if pool is None:
            self._use_pool(self._create_pool(), owned=True)
        else:
            self._use_pool(pool, owned=False)

    def _close(self) -> None:
        if (pool := self._drop_pool()) is not None:
            self._close_pool(pool)

    def _create_pool(self) -> P:
        raise NotImplementedError

    def _close_pool(self, pool: P) -> None:
        raise NotImplementedError
