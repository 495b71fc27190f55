"""psycopg 3, blocking: ``SyncPsycopgConnector`` (App face) and ``SyncPsycopgDriver``
(Queue face), the twins of :mod:`~pgqueue_ref.connectors.psycopg`'s.

For synchronous applications that only defer jobs: a worker needs asyncio
(LISTEN, jobs run concurrently), so one on these is refused with
:class:`~pgqueue_ref.exceptions.SyncConnectorConfigurationError`. Their quirks,
and nothing else:

* Connection parameters come as psycopg takes them: ``conninfo=`` (a DSN or
  URL), ``kwargs={...}`` (libpq keywords), or neither, and libpq reads the
  ``PG*`` environment variables. Every other argument goes to the pool
  (``min_size``, ``max_size``, ``timeout``, ``name``...).
* The connector's pool opens its connections with ``autocommit=True`` unless
  you say otherwise: each of our statements is a whole transaction. The driver
  requires autocommit, as the async one does.
* Both defer inside the caller's transaction: the connector on the caller's
  own ``psycopg.Connection`` (``task.configure(connection=conn)``), the driver
  on the connection it wraps (``with conn.transaction():``); we never commit it.
"""

from __future__ import annotations

from typing import Any

import psycopg
import psycopg.rows
import psycopg_pool

from ..exceptions import ConfigurationError
from .base import JsonDumps, JsonLoads, Params, Row, SyncConnector, SyncPoolConnector
from .driver import to_named
from .psycopg import check_type, require_autocommit

__all__ = ["SyncPsycopgConnector", "SyncPsycopgDriver", "run_blocking"]

Pool = psycopg_pool.ConnectionPool[Any]


def run_blocking(conn: psycopg.Connection[Any], query: str, params: Params) -> list[Row]:
    """Run ``query`` on a blocking psycopg connection; its rows as dicts (the
    blocking twin of :func:`pgqueue_ref.connectors.psycopg.run`)."""
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cursor:
        cursor.execute(query, params or None)
        # A statement without RETURNING has no result set to fetch.
        return cursor.fetchall() if cursor.description is not None else []


class SyncPsycopgConnector(SyncPoolConnector[Pool]):
    external_connection_type = "psycopg.Connection"

    def __init__(
        self,
        *,
        conninfo: str = "",
        kwargs: dict[str, Any] | None = None,
        json_dumps: JsonDumps | None = None,
        json_loads: JsonLoads | None = None,
        **pool_args: Any,
    ) -> None:
        self._set_json(json_dumps, json_loads)
        self._conninfo = conninfo
        self._kwargs = {"autocommit": True, **(kwargs or {})}
        self._pool_args = pool_args

    def _create_pool(self) -> Pool:
        # Fail fast, in the server's own words: a pool that cannot connect only
        # retries in the background and says "PoolTimeout" 30 seconds later.
        psycopg.connect(self._conninfo, **self._kwargs).close()
        pool = psycopg_pool.ConnectionPool(
            self._conninfo, kwargs=self._kwargs, open=False, **self._pool_args
        )
        pool.open(wait=True)
        return pool

    def _close_pool(self, pool: Pool) -> None:
        pool.close()

    def _fetch_all(self, query: str, params: Params, connection: Any) -> list[Row]:
        if connection is not None:
            return run_blocking(self._external(connection, psycopg.Connection), query, params)
        with self.pool.connection() as conn:
            return run_blocking(conn, query, params)


class SyncPsycopgDriver(SyncConnector):
    """One blocking ``psycopg.Connection`` in autocommit mode: it enqueues, nothing more."""

    opens_connections = False  # it wraps the caller's connection
    for_a_worker = (
        "Enqueue with it, and consume with PgQueuer.from_psycopg_connection(await "
        "psycopg.AsyncConnection.connect(dsn, autocommit=True)) or another async driver."
    )

    def __init__(self, connection: psycopg.Connection[Any]) -> None:
        check_type(
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

    def _fetch_all(self, query: str, params: Params, connection: Any) -> list[Row]:
        require_autocommit(self.connection, in_use=True)
        return run_blocking(self.connection, query, params)

    def fetch(self, query: str, *args: Any) -> list[dict[str, Any]]:
        """PgQueuer's ``SyncDriver`` protocol, which has only this: run ``query``
        (``$1, $2`` placeholders) and return its rows as dicts."""
        return self.fetch_all(*to_named(query, args))
