"""``SyncPsycopgConnector``: blocking, psycopg 3, over a ``psycopg_pool.ConnectionPool``.

The blocking twin of :class:`~pgqueue_ref.psycopg_connector.PsycopgConnector`, for synchronous
applications that only defer jobs (a worker needs an async connector). Its
quirks, and nothing else:

* Connection parameters come as psycopg takes them: ``conninfo=`` (a DSN or
  URL), ``kwargs={...}`` (libpq keywords), or neither, and libpq reads the
  ``PG*`` environment variables. Every other argument goes to the pool
  (``min_size``, ``max_size``, ``timeout``, ``name``...).
* The pool's connections are opened with ``autocommit=True`` unless you say
  otherwise: each of our statements is a whole transaction.
* It can defer on the caller's own ``psycopg.Connection``, inside the
  caller's transaction (``task.configure(connection=conn)``); we never commit it.
"""

from __future__ import annotations

from typing import Any

import psycopg
import psycopg.rows
import psycopg_pool

from .connector import Params, Row, SyncConnector

__all__ = ["SyncPsycopgConnector", "run_blocking"]


class SyncPsycopgConnector(SyncConnector):
    external_connection_type = "psycopg.Connection"

    def __init__(
        self, *, conninfo: str = "", kwargs: dict[str, Any] | None = None, **pool_args: Any
    ) -> None:
        self._conninfo = conninfo
        self._kwargs = {"autocommit": True, **(kwargs or {})}
        self._pool_args = pool_args
        self._pool: psycopg_pool.ConnectionPool[Any] | None = None
        self._owns_pool = False

    @property
    def pool(self) -> psycopg_pool.ConnectionPool[Any]:
        if self._pool is None:
            raise RuntimeError("SyncPsycopgConnector is not open")
        return self._pool

    def _open(self, pool: psycopg_pool.ConnectionPool[Any] | None) -> None:
        if pool is not None:
            self._pool, self._owns_pool = pool, False
            return
        # Fail fast, in the server's own words: a pool that cannot connect only
        # retries in the background and says "PoolTimeout" 30 seconds later.
        psycopg.connect(self._conninfo, **self._kwargs).close()
        self._pool = psycopg_pool.ConnectionPool(
            self._conninfo, kwargs=self._kwargs, open=False, **self._pool_args
        )
        self._owns_pool = True
        self._pool.open(wait=True)

    def _close(self) -> None:
        if self._pool is not None and self._owns_pool:
            self._pool.close()
        self._pool = None

    def _execute(self, query: str, params: Params, connection: Any) -> None:
        self._fetch_all(query, params, connection)

    def _fetch_all(self, query: str, params: Params, connection: Any) -> list[Row]:
        if connection is not None:
            return run_blocking(self._external(connection, psycopg.Connection), query, params)
        with self.pool.connection() as conn:
            return run_blocking(conn, query, params)


def run_blocking(conn: psycopg.Connection[Any], query: str, params: Params) -> list[Row]:
    """Run ``query`` on a blocking psycopg connection; its rows as dicts (the
    blocking twin of ``psycopg_connector.run``, shared with SyncPsycopgDriver)."""
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cursor:
        cursor.execute(query, params or None)
        # A statement without RETURNING has no result set to fetch.
        return cursor.fetchall() if cursor.description is not None else []
