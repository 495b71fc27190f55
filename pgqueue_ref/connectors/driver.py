"""The Queue face's drivers' base: what the caller opened, and PgQueuer's driver protocol.

PgQueuer's drivers (``pgqueuer.db``) take a connection or pool that the caller
has opened and will close, and they are small public objects that its users
call, and write their own of: ``fetch(query, *args)`` (rows as dicts),
``execute(query, *args)``, ``notify(channel, payload)``,
``add_listener(channel, callback)`` and ``remove_listener``, a ``shutdown``
event, and ``async with driver:``. Queries there are PostgreSQL's own, with
``$1, $2`` placeholders. :class:`Driver` is both, and it is the Queue face's
extension point:

* **Ours speak it.** Every async driver of :mod:`pgqueue_ref.db` is a Driver:
  ``await driver.fetch("SELECT $1::int AS n", 1)`` works on each, through its
  own I/O (:func:`to_named` rewrites the ``$n`` query to ``%(pN)s`` once; the
  asyncpg drivers number it back).
* **Yours run ours.** A driver written only against the protocol runs
  :class:`~pgqueue_ref.queries.Queries` and a consumer
  (:meth:`~pgqueue_ref.queuer.PgQueuer.run`): each of our statements goes to its
  ``fetch`` or ``execute`` with ``$n`` placeholders
  (:func:`pgqueue_ref.sql.to_numbered`), and the consumer's LISTEN is its
  ``add_listener``. Either subclass Driver and override ``fetch``, ``execute``
  and ``add_listener`` (and ``remove_listener`` if it can), as PgQueuer users
  subclass ``pgqueuer.db.Driver`` (an ``__init__`` that never calls ours is
  fine: PgQueuer's has none), or pass any object with those methods:
  :func:`~pgqueue_ref.connectors.custom.as_connector` wraps it.

Where ours differ from PgQueuer's (``docs/compatibility.md`` says so too):

* On a Driver, ``execute`` is PgQueuer's coroutine, not the connector
  contract's blocking twin (that one is :meth:`~pgqueue_ref.connectors.base.AsyncConnector.execute_blocking` here), and it
  returns ``""`` rather than the command tag, which nothing in PgQueuer reads.
* ``PgQueuer.run()`` does not enter the driver with ``async with``: it LISTENs
  through ``add_listener`` and stops through ``remove_listener``, so a driver
  needs no ``__aenter__`` of its own. There is no ``tm`` (task manager).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable
from typing import Any, Protocol, Self, TypeAlias, runtime_checkable

from ..exceptions import ConfigurationError
from ..sql import to_numbered
from .base import AsyncConnector, Params, Row

__all__ = ["Driver", "NotifyCallback", "PgQueuerDriver", "to_named"]

#: What ``add_listener`` calls with each NOTIFY's payload (PgQueuer's ``NotifyCallback``).
NotifyCallback: TypeAlias = Callable[[str], None]

_NUMBERED = re.compile(r"\$(\d+)\b")


def to_named(query: str, args: tuple[object, ...]) -> tuple[str, dict[str, object]]:
    """A ``$1, $2`` query (PgQueuer's style) in ours: ``%(p1)s``, with ``%`` escaped.

    The inverse of :func:`pgqueue_ref.sql.to_numbered`::

        >>> to_named("SELECT $1::int + $2::int, '100%'", (1, 2))
        ("SELECT %(p1)s::int + %(p2)s::int, '100%%'", {'p1': 1, 'p2': 2})

    ``$$`` and ``$tag$`` (dollar quotes) are left alone; a ``$1`` inside a string
    literal is rewritten too, so pass such text as a parameter.
    """
    named = _NUMBERED.sub(r"%(p\1)s", query.replace("%", "%%"))
    used = {int(number) for number in _NUMBERED.findall(query)}
    if used and max(used) > len(args):
        raise TypeError(
            f"the query uses ${max(used)} but {len(args)} argument(s) were given: "
            "pass one argument per $n"
        )
    return named, {f"p{number}": args[number - 1] for number in range(1, len(args) + 1)}


@runtime_checkable
class PgQueuerDriver(Protocol):
    """The protocol, for type checkers and ``isinstance``: what a driver of yours needs."""

    async def fetch(self, query: str, *args: Any) -> list[dict[str, Any]]: ...

    async def execute(self, query: str, *args: Any) -> str: ...

    async def add_listener(self, channel: str, callback: NotifyCallback) -> None: ...


class Driver(AsyncConnector):
    """Base of the Queue face's async drivers (:mod:`pgqueue_ref.db`), and PgQueuer's protocol.

    A Driver is open from birth and never closes what it was given. Everything
    else (error translation, the blocking twins, the queries) is the connector
    contract's, so the job manager, the worker and the conformance suite use a
    driver exactly like a connector. A subclass that overrides ``fetch`` (a
    driver written for PgQueuer) gets the contract's ``_fetch_all``,
    ``_execute`` and ``_listen`` run through its ``fetch``, ``execute`` and
    ``add_listener``.
    """

    opens_connections = False

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        # A driver written for PgQueuer has an __init__ that never calls ours
        # (PgQueuer's protocol has none): its state is set up here instead.
        self = super().__new__(cls)
        self._driver_state(listen_dsn=None)
        return self

    def __init__(self, *, listen_dsn: str | None = None) -> None:
        super().__init__(listen_dsn=listen_dsn)
        self._driver_state(listen_dsn)

    def _driver_state(self, listen_dsn: str | None) -> None:
        if not hasattr(self, "_bridge"):
            AsyncConnector.__init__(self, listen_dsn=listen_dsn)
        self._is_open = True  # the caller opened the connection
        self._listeners: dict[tuple[str, NotifyCallback], asyncio.Task[None]] = {}
        self._shutdown = asyncio.Event()
        # Remember the loop the connection lives in, so that blocking code in
        # other threads (a sync entrypoint, say) can still use the driver.
        with contextlib.suppress(RuntimeError):
            self._bridge.loop = asyncio.get_running_loop()

    async def _open(self, pool: Any) -> None:
        if pool is not None:
            raise ConfigurationError(
                f"{type(self).__name__} already wraps the connection or pool it was built on; "
                "build another driver for another pool"
            )

    async def _close(self) -> None:
        """Nothing to close: the connection is the caller's, and so is closing it."""

    def check_room_for_listen(self) -> None:
        """Raise ConfigurationError if a consumer's LISTEN would leave no connection for
        queries. One connection carries both; pool drivers override this."""

    # -- PgQueuer's protocol, over our I/O ------------------------------------

    async def fetch(self, query: str, *args: Any) -> list[dict[str, Any]]:
        """Run ``query`` (``$1, $2`` placeholders) and return its rows as dicts."""
        named, params = to_named(query, args)
        return await self.fetch_all_async(named, params)

    async def execute(self, query: str, *args: Any) -> str:  # type: ignore[override]
        """PgQueuer's: run ``query`` (``$1, $2`` placeholders), dropping rows; returns ``""``
        (PgQueuer returns the command tag, which it never reads). On a Driver this name
        is PgQueuer's coroutine; the contract's blocking twin is :meth:`~pgqueue_ref.connectors.base.AsyncConnector.execute_blocking`."""
        named, params = to_named(query, args)
        await self.execute_async(named, params)
        return ""

    async def notify(self, channel: str, payload: str) -> None:
        await self.execute("SELECT pg_notify($1::text, $2::text)", channel, payload)

    async def add_listener(self, channel: str, callback: NotifyCallback) -> None:
        """LISTEN on ``channel``, calling ``callback(payload)`` for each NOTIFY, until
        :meth:`remove_listener` or the end of ``async with``. Returns once the LISTEN
        is in place; what keeps it from getting there is raised here."""
        loop = asyncio.get_running_loop()
        ready = asyncio.Event()

        def on_ready() -> None:
            loop.call_soon_threadsafe(ready.set)

        listening = asyncio.create_task(self.listen_async(channel, callback, on_ready))
        waiting = asyncio.create_task(ready.wait())
        await asyncio.wait({listening, waiting}, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        if listening.done():
            listening.result()  # raises what ended it
            raise ConnectionError(f"LISTEN on {channel!r} ended before it was in place")
        self._listeners[(channel, callback)] = listening

    async def remove_listener(self, channel: str, callback: NotifyCallback) -> None:
        """Stop calling ``callback`` for ``channel`` (UNLISTEN); nothing if it was not added."""
        listening = self._listeners.pop((channel, callback), None)
        if listening is not None:
            listening.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await listening

    @property
    def shutdown(self) -> asyncio.Event:
        """Set when ``async with driver:`` ends (PgQueuer's ``Driver.shutdown``)."""
        return self._shutdown

    async def __aenter__(self) -> Self:
        self._shutdown.clear()
        return self

    async def __aexit__(self, *_: object) -> None:
        """End every listener added by :meth:`add_listener`; the connection stays open
        (it is the caller's)."""
        self._shutdown.set()
        for channel, callback in list(self._listeners):
            await self.remove_listener(channel, callback)

    # -- the contract, over the protocol (drivers written for PgQueuer) ----------

    def _speaks_protocol_itself(self) -> bool:
        """Its class overrides ``fetch``: a driver written against the protocol."""
        return type(self).fetch is not Driver.fetch

    async def _fetch_all(self, query: str, params: Params, connection: Any) -> list[Row]:
        if not self._speaks_protocol_itself():
            return await super()._fetch_all(query, params, connection)
        numbered, names = to_numbered(query)
        return [dict(row) for row in await self.fetch(numbered, *(params[n] for n in names))]

    async def _execute(self, query: str, params: Params, connection: Any) -> None:
        if not self._speaks_protocol_itself():
            return await super()._execute(query, params, connection)
        numbered, names = to_numbered(query)
        await self.execute(numbered, *(params[n] for n in names))

    async def _listen(
        self, channel: str, on_notify: Callable[[str], None], on_ready: Callable[[], None]
    ) -> None:
        if not self._speaks_protocol_itself():
            return await super()._listen(channel, on_notify, on_ready)

        def callback(payload: str | bytes | bytearray) -> None:
            on_notify(payload if isinstance(payload, str) else bytes(payload).decode())

        await self.add_listener(channel, callback)
        try:
            on_ready()
            await asyncio.Future()  # until cancelled
        finally:
            with contextlib.suppress(Exception):  # the connection may be gone: nothing to undo
                await self.remove_listener(channel, callback)
