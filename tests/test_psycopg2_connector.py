"""Psycopg2Connector's own quirks (what every connector does is in tests/conformance)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg2.pool
import pytest

import pgqueue_ref
from pgqueue_ref.exceptions import ConnectorException

Db = Callable[..., list[tuple[Any, ...]]]


def _defer_one(app: pgqueue_ref.App) -> None:
    with app.open():
        app.configure_task("t").defer(n=1)


def test_parameters_from_libpq_environment(libpq_env: dict[str, str], db: Db) -> None:
    _defer_one(pgqueue_ref.App(connector=pgqueue_ref.Psycopg2Connector()))
    assert db("SELECT count(*) FROM pgqueue_jobs") == [(1,)]


def test_parameters_as_a_dsn(pg: dict[str, str], db: Db) -> None:
    dsn = f"host={pg['host']} port={pg['port']} user={pg['user']} dbname={pg['dbname']}"
    _defer_one(pgqueue_ref.App(connector=pgqueue_ref.Psycopg2Connector(dsn=dsn)))
    assert db("SELECT count(*) FROM pgqueue_jobs") == [(1,)]


def test_parameters_as_keywords_and_pool_size(pg: dict[str, str], db: Db) -> None:
    connector = pgqueue_ref.Psycopg2Connector(
        host=pg["host"], port=pg["port"], user=pg["user"], dbname=pg["dbname"], minconn=2
    )
    app = pgqueue_ref.App(connector=connector)
    with app.open():
        assert isinstance(connector.pool, psycopg2.pool.ThreadedConnectionPool)
        assert (connector.pool.minconn, connector.pool.maxconn) == (2, 10)
        app.configure_task("t").defer(n=1)
    assert db("SELECT count(*) FROM pgqueue_jobs") == [(1,)]


def test_a_pool_handed_in_is_used_and_not_closed(dsn: str) -> None:
    pool = psycopg2.pool.ThreadedConnectionPool(1, 2, dsn)
    try:
        app = pgqueue_ref.App(connector=pgqueue_ref.Psycopg2Connector())
        with app.open(pool):
            app.configure_task("t").defer(n=1)
        assert not pool.closed
        conn = pool.getconn()
        with conn.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pgqueue_jobs")
            assert cursor.fetchall() == [(1,)]
        pool.putconn(conn)
    finally:
        pool.closeall()


def test_a_full_pool_fails_at_once_instead_of_waiting(dsn: str, db: Db) -> None:
    connector = pgqueue_ref.Psycopg2Connector(dsn=dsn, maxconn=1)
    app = pgqueue_ref.App(connector=connector)
    with app.open():
        held = connector.pool.getconn()  # e.g. another thread, deferring right now
        with pytest.raises(ConnectorException, match="PoolError: connection pool exhausted"):
            app.configure_task("t").defer(n=1)
        connector.pool.putconn(held)
        app.configure_task("t").defer(n=2)
    assert db("SELECT args->>'n' FROM pgqueue_jobs") == [("2",)]


def test_connections_go_back_to_the_pool_idle(dsn: str) -> None:
    connector = pgqueue_ref.Psycopg2Connector(dsn=dsn, maxconn=1)
    app = pgqueue_ref.App(connector=connector)
    with app.open():
        app.configure_task("t").defer(n=1)
        conn = connector.pool.getconn()
        # autocommit: no transaction was left open for the pool to roll back
        assert (conn.autocommit, conn.info.transaction_status) == (
            True,
            psycopg2.extensions.TRANSACTION_STATUS_IDLE,
        )
        connector.pool.putconn(conn)
