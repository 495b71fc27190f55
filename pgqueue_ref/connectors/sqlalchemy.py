"""SQLAlchemy: ``SQLAlchemyPsycopg2Connector``, blocking, through an engine on psycopg2.

For SQLAlchemy applications that only defer jobs (a worker needs an async
connector): deferring borrows connections from the same engine, so the same
pool, as the rest of the application. Its quirks, and nothing else:

* Either the connector makes its own engine, ``dsn=`` (an SQLAlchemy URL,
  ``postgresql+psycopg2://...``, or a libpq one, ``postgresql://...``, which
  gets the psycopg2 driver rather than SQLAlchemy's default; the default
  ``"postgresql+psycopg2://"`` names no server, so libpq reads the ``PG*``
  environment variables) plus any
  ``create_engine`` argument (``connect_args={"host": ...}``, ``pool_size``...),
  exposed as :attr:`~SQLAlchemyPsycopg2Connector.engine` and disposed of by
  ``app.close()``; or ``app.open(engine)`` shares the application's engine,
  which ``app.close()`` leaves open.
* SQL goes through ``Connection.exec_driver_sql``: the text reaches psycopg2
  unchanged, ``%(name)s`` placeholders included, and a statement without
  parameters reaches it without any (SQLAlchemy would otherwise pass an empty
  mapping, and psycopg2 would then read every ``%`` as a placeholder).
  SQLAlchemy's ``text()`` would want ``:name``, and escaping ``%`` for it is
  how procrastinate's version of this connector came to break its own schema.
* Each statement runs in ``engine.begin()``: SQLAlchemy connections are
  transactional, so BEGIN, the statement, COMMIT.
* It can defer on the caller's own ``sqlalchemy.engine.Connection``, inside
  the caller's transaction (``task.configure(connection=conn)``); we never
  commit it.
* Only the psycopg2 driver: its errors and parameter style are the ones the
  rest of pgqueue_ref expects. Another driver is refused with a clear error.
"""

from __future__ import annotations

from typing import Any

import psycopg2  # noqa: F401  (the engine's driver: missing, it is reported on first use, not at open)
import sqlalchemy
import sqlalchemy.engine

from ..exceptions import ConfigurationError
from .base import JsonDumps, JsonLoads, Params, Row, SyncPoolConnector

__all__ = ["SQLAlchemyPsycopg2Connector"]


Engine = sqlalchemy.engine.Engine


class SQLAlchemyPsycopg2Connector(SyncPoolConnector[Engine]):
    """Its "pool" is an SQLAlchemy engine (which holds the pool): :attr:`engine`."""

    external_connection_type = "sqlalchemy.engine.Connection"

    def __init__(
        self,
        *,
        dsn: str = "postgresql+psycopg2://",
        json_dumps: JsonDumps | None = None,
        json_loads: JsonLoads | None = None,
        **engine_args: Any,
    ) -> None:
        self._set_json(json_dumps, json_loads)
        self._dsn = dsn
        self._engine_args = engine_args

    @property
    def engine(self) -> Engine:
        """The engine jobs are deferred through: ours, or the one given to ``app.open()``."""
        return self.pool

    def _use_pool(self, pool: Engine, *, owned: bool) -> None:
        super()._use_pool(_psycopg2_engine(pool), owned=owned)

    def _create_pool(self) -> Engine:
        engine = sqlalchemy.create_engine(_with_psycopg2(self._dsn), **self._engine_args)
        try:
            _psycopg2_engine(engine)
            engine.connect().close()  # fail now, not at the first defer
        except BaseException:
            engine.dispose()
            raise
        return engine

    def _close_pool(self, pool: Engine) -> None:
        pool.dispose()

    def _fetch_all(self, query: str, params: Params, connection: Any) -> list[Row]:
        if connection is not None:
            return _run(self._external(connection, sqlalchemy.engine.Connection), query, params)
        with self.engine.begin() as conn:
            return _run(conn, query, params)


def _with_psycopg2(dsn: str) -> sqlalchemy.engine.URL:
    # A libpq URL names no driver, and SQLAlchemy 2.1 would then pick psycopg 3.
    url = sqlalchemy.engine.make_url(dsn)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg2")
    return url


def _psycopg2_engine(engine: Any) -> sqlalchemy.engine.Engine:
    if not isinstance(engine, sqlalchemy.engine.Engine):
        raise ConfigurationError(
            f"SQLAlchemyPsycopg2Connector opens on an sqlalchemy Engine; got "
            f"{type(engine).__name__}. Pass the result of sqlalchemy.create_engine(...)."
        )
    if engine.dialect.driver != "psycopg2":
        raise ConfigurationError(
            f"SQLAlchemyPsycopg2Connector needs an engine on the psycopg2 driver; this one uses "
            f"{engine.dialect.name}+{engine.dialect.driver}. Create it with a "
            "'postgresql+psycopg2://...' URL."
        )
    return engine


def _run(conn: sqlalchemy.engine.Connection, query: str, params: Params) -> list[Row]:
    # no_parameters: a statement without parameters reaches psycopg2 without
    # any (not even an empty dict), so psycopg2 leaves every % in it alone.
    result = conn.exec_driver_sql(query, dict(params), execution_options={"no_parameters": True})
    # A statement without RETURNING has no rows to fetch.
    return [dict(row) for row in result.mappings()] if result.returns_rows else []
