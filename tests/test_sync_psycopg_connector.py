"""SyncPsycopgConnector's own quirks (what every connector does is in tests/conformance)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import psycopg_pool

import pgqueue_ref

Db = Callable[..., list[tuple[Any, ...]]]


def _defer_one(app: pgqueue_ref.App) -> None:
    with app.open():
        app.configure_task("t").defer(n=1)


def test_parameters_from_libpq_environment(libpq_env: dict[str, str], db: Db) -> None:
    _defer_one(pgqueue_ref.App(connector=pgqueue_ref.SyncPsycopgConnector()))
    assert db("SELECT count(*) FROM pgqueue_jobs") == [(1,)]


def test_parameters_as_a_dsn(pg: dict[str, str], db: Db) -> None:
    conninfo = f"postgresql://{pg['user']}@{pg['host']}:{pg['port']}/{pg['dbname']}"
    _defer_one(pgqueue_ref.App(connector=pgqueue_ref.SyncPsycopgConnector(conninfo=conninfo)))
    assert db("SELECT count(*) FROM pgqueue_jobs") == [(1,)]


def test_parameters_as_kwargs_and_pool_arguments_pass_through(pg: dict[str, str], db: Db) -> None:
    connector = pgqueue_ref.SyncPsycopgConnector(
        kwargs=dict(pg), min_size=2, max_size=3, name="from-the-test", timeout=7
    )
    app = pgqueue_ref.App(connector=connector)
    with app.open():
        pool = connector.pool
        assert (pool.min_size, pool.max_size, pool.name, pool.timeout) == (
            2,
            3,
            "from-the-test",
            7,
        )
        app.configure_task("t").defer(n=1)
    assert pool.closed  # ours: closed by app.close()
    assert db("SELECT count(*) FROM pgqueue_jobs") == [(1,)]


def test_a_pool_handed_in_is_used_and_not_closed(dsn: str) -> None:
    with psycopg_pool.ConnectionPool(dsn, open=False) as pool:
        app = pgqueue_ref.App(connector=pgqueue_ref.SyncPsycopgConnector())
        with app.open(pool):
            app.configure_task("t").defer(n=1)
        assert not pool.closed
        with pool.connection() as conn:
            assert conn.execute("SELECT count(*) FROM pgqueue_jobs").fetchone() == (1,)


def test_the_callers_connection_needs_no_pool(dsn: str, db: Db) -> None:
    app = pgqueue_ref.App(connector=pgqueue_ref.SyncPsycopgConnector())  # never opened
    with psycopg.connect(dsn) as conn:  # the caller's, in a transaction the caller ends
        app.configure_task("t", connection=conn).defer(n=1)
        assert conn.info.transaction_status is psycopg.pq.TransactionStatus.INTRANS
        assert db("SELECT count(*) FROM pgqueue_jobs") == [(0,)]
    assert db("SELECT count(*) FROM pgqueue_jobs") == [(1,)]  # psycopg commits on leaving `with`
