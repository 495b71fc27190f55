"""psycopg2: ``Psycopg2Connector``, blocking, over a ``psycopg2.pool.ThreadedConnectionPool``.

"Classic" synchronous I/O for applications that only defer jobs (a worker
needs an async connector). Its quirks, and nothing else:

* Connection parameters come as ``psycopg2.connect`` takes them: ``dsn=`` (a
  libpq connection string or URL) and/or libpq keywords (``host=``,
  ``user=``, ``dbname=``...), or neither, and libpq reads the ``PG*``
  environment variables. ``minconn`` and ``maxconn`` size the pool.
* psycopg2 opens a transaction before the first statement and waits for a
  COMMIT; we switch each borrowed connection to autocommit instead, so that
  each of our statements is a whole transaction in one round trip.
* The pool does not wait for a free connection: a thread asking for one more
  than ``maxconn`` gets "connection pool exhausted" at once. Size ``maxconn``
  for the number of threads that defer at the same time.
* Parameters are psycopg2's ``%(name)s``: queries are sent unchanged.
* No external connections: ``configure(connection=...)`` is refused.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import psycopg2.extras
import psycopg2.pool

from .base import JsonDumps, JsonLoads, Params, Row, SyncPoolConnector

__all__ = ["Psycopg2Connector"]


# psycopg2 has no type hints: its pool is psycopg2.pool.AbstractConnectionPool.
Pool: TypeAlias = Any


class Psycopg2Connector(SyncPoolConnector[Pool]):
    def __init__(
        self,
        *,
        dsn: str | None = None,
        minconn: int = 1,
        maxconn: int = 10,
        json_dumps: JsonDumps | None = None,
        json_loads: JsonLoads | None = None,
        **connect_args: Any,
    ) -> None:
        self._set_json(json_dumps, json_loads)
        self._dsn = dsn
        self._minconn, self._maxconn = minconn, maxconn
        self._connect_args = connect_args

    def _create_pool(self) -> Pool:
        # Opens minconn connections at once: wrong parameters fail here.
        return psycopg2.pool.ThreadedConnectionPool(
            self._minconn, self._maxconn, self._dsn, **self._connect_args
        )

    def _close_pool(self, pool: Pool) -> None:
        pool.closeall()

    def _fetch_all(self, query: str, params: Params, connection: Any) -> list[Row]:
        pool = self.pool
        conn = pool.getconn()
        try:
            conn.autocommit = True
            with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cursor:
                cursor.execute(query, params or None)
                # A statement without RETURNING has no result set to fetch.
                return [dict(row) for row in cursor.fetchall()] if cursor.description else []
        finally:
            pool.putconn(conn)  # a broken (closed) connection is dropped, not reused
