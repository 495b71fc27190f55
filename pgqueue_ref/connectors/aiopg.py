"""aiopg: ``AiopgConnector``, asyncio with psycopg2 underneath, over an ``aiopg.Pool``.

Its quirks, and nothing else:

* Connection parameters come as psycopg2 takes them: ``dsn=`` (a libpq
  connection string or URL) and/or libpq keywords (``host=``, ``user=``...),
  or neither, and libpq reads the ``PG*`` environment variables. Pool
  arguments (``minsize``, ``maxsize``, ``timeout``...) go to
  ``aiopg.create_pool`` with them.
* aiopg connections are always in autocommit: psycopg2's asynchronous mode
  has no transactions of its own, so each statement commits by itself.
* Parameters are psycopg2's ``%(name)s``, the style our ``.sql`` files are
  written in: queries are sent unchanged. ``bytea`` comes back as
  ``memoryview`` (:func:`pgqueue_ref.jobs.job_from_row` copies it to bytes).
* aiopg's default operation timeout is 60 s, and a query that runs longer, or
  is cancelled, closes its connection (``timeout=`` changes the limit).
* LISTEN holds one pooled connection for as long as a worker listens (so the
  pool needs ``maxsize >= 2``), and closes it afterwards: a connection that
  was listening must not go back to the pool, where its queue of
  notifications would keep filling for whoever gets it next.
* libpq's asynchronous connect leaves the server's address out of its error
  ("Connection refused", but where?): when the pool cannot connect, we
  connect once more the blocking way, whose error names host and port.
* aiopg turns on psycopg2's hstore, UUID and JSON adaptation by default, and
  psycopg2 keeps adapters for the whole process: after aiopg's hstore setup,
  every psycopg2 connection of the program sends a ``dict`` as hstore. We
  pass ``enable_hstore=False, enable_uuid=False, enable_json=False`` (as
  procrastinate does) unless you set them; our queries need none of the
  three (arguments travel as JSON text).
* No external connections: ``configure(connection=...)`` is refused.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import aiopg
import psycopg2
import psycopg2.extensions
import psycopg2.extras

from ..exceptions import ConfigurationError
from .base import AsyncPoolConnector, JsonDumps, JsonLoads, Params, Row

__all__ = ["AiopgConnector"]

#: aiopg's options that change psycopg2's process-wide adapters: off unless given.
PROCESS_WIDE_OFF = {"enable_hstore": False, "enable_uuid": False, "enable_json": False}

# aiopg.create_pool's own arguments; the others are psycopg2.connect's.
_POOL_ONLY = {
    name
    for name, parameter in inspect.signature(aiopg.create_pool).parameters.items()
    if parameter.kind is inspect.Parameter.KEYWORD_ONLY
}


class AiopgConnector(AsyncPoolConnector[aiopg.Pool]):
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
        self._pool_args = {**PROCESS_WIDE_OFF, **pool_args}

    async def _create_pool(self) -> aiopg.Pool:
        try:
            return await aiopg.create_pool(self._dsn, **self._pool_args)
        except psycopg2.OperationalError:
            await asyncio.to_thread(_connect_blocking, self._dsn, self._pool_args)
            raise  # the blocking connect worked after all: the pool's own error, then

    async def _close_pool(self, pool: aiopg.Pool) -> None:
        pool.close()
        await pool.wait_closed()

    async def _fetch_all(self, query: str, params: Params, connection: Any) -> list[Row]:
        async with self.pool.acquire() as conn:
            return await _run(conn, query, params)

    async def _listen(
        self, channel: str, on_notify: Callable[[str], None], on_ready: Callable[[], None]
    ) -> None:
        maxsize = self.pool.maxsize  # None: no limit
        if maxsize is not None and maxsize < 2:
            raise ConfigurationError(
                f"AiopgConnector's pool has maxsize={maxsize}, but a worker's LISTEN holds one "
                "connection for as long as it runs and queries need another: use maxsize >= 2."
            )
        async with self.pool.acquire() as conn:
            try:
                await _listen(conn, channel, on_notify, on_ready)
            finally:
                conn.close()  # the pool drops closed connections instead of reusing them

    async def _listen_at(
        self, dsn: str, channel: str, on_notify: Callable[[str], None], on_ready: Callable[[], None]
    ) -> None:
        try:
            adapters = {name: self._pool_args[name] for name in PROCESS_WIDE_OFF}
            conn = await aiopg.connect(dsn, **adapters)
        except psycopg2.OperationalError:
            await asyncio.to_thread(_connect_blocking, dsn, {})  # whose error names the address
            raise
        try:
            await _listen(conn, channel, on_notify, on_ready)
        finally:
            await conn.close()


async def _listen(
    conn: aiopg.Connection,
    channel: str,
    on_notify: Callable[[str], None],
    on_ready: Callable[[], None],
) -> None:
    """LISTEN on ``conn`` until cancelled, or until the connection dies (get() raises)."""
    quoted = psycopg2.extensions.quote_ident(channel, conn.raw)  # no I/O
    await _run(conn, f"LISTEN {quoted}", {})
    on_ready()
    while True:
        notification = await conn.notifies.get()
        on_notify(notification.payload)


def _connect_blocking(dsn: str | None, pool_args: Mapping[str, Any]) -> None:
    """Connect once, the blocking way: if it fails, libpq's error says where."""
    connect_args = {k: v for k, v in pool_args.items() if k not in _POOL_ONLY}
    psycopg2.connect(dsn, **connect_args).close()


async def _run(conn: aiopg.Connection, query: str, params: Params) -> list[Row]:
    async with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cursor:
        await cursor.execute(query, params or None)
        # A statement without RETURNING has no result set to fetch.
        return [dict(row) for row in await cursor.fetchall()] if cursor.description else []
