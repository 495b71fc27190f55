"""SQLAlchemyPsycopg2Connector's own quirks (what every connector does is in tests/conformance)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy

import pgqueue_ref
from pgqueue_ref.contrib.sqlalchemy import SQLAlchemyPsycopg2Connector
from pgqueue_ref.exceptions import ConfigurationError

Db = Callable[..., list[tuple[Any, ...]]]


def _connections(db: Db, application_name: str) -> int:
    rows = db("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", application_name)
    return int(rows[0][0])


def _defer_one(app: pgqueue_ref.App) -> None:
    with app.open():
        app.configure_task("t").defer(n=1)


def test_parameters_from_libpq_environment(libpq_env: dict[str, str], db: Db) -> None:
    _defer_one(pgqueue_ref.App(connector=SQLAlchemyPsycopg2Connector()))  # "postgresql+psycopg2://"
    assert db("SELECT count(*) FROM pgqueue_jobs") == [(1,)]


def test_parameters_as_an_sqlalchemy_url(pg: dict[str, str], db: Db) -> None:
    url = f"postgresql+psycopg2://{pg['user']}@{pg['host']}:{pg['port']}/{pg['dbname']}"
    _defer_one(pgqueue_ref.App(connector=SQLAlchemyPsycopg2Connector(dsn=url)))
    assert db("SELECT count(*) FROM pgqueue_jobs") == [(1,)]


def test_a_libpq_url_gets_the_psycopg2_driver(dsn: str) -> None:
    connector = SQLAlchemyPsycopg2Connector(
        dsn=dsn
    )  # postgresql://...: SQLAlchemy 2.1 says psycopg
    with pgqueue_ref.App(connector=connector).open():
        assert connector.engine.dialect.driver == "psycopg2"


def test_parameters_as_connect_args_and_engine_arguments_pass_through(
    pg: dict[str, str], db: Db
) -> None:
    connector = SQLAlchemyPsycopg2Connector(
        connect_args={**pg, "application_name": "sa-kwargs"}, pool_size=2
    )
    app = pgqueue_ref.App(connector=connector)
    with app.open():
        assert connector.engine.pool.size() == 2  # type: ignore[attr-defined]
        app.configure_task("t").defer(n=1)
        assert _connections(db, "sa-kwargs") == 1  # pooled, kept for the next defer
    assert _connections(db, "sa-kwargs") == 0  # our own engine: disposed of by close()
    assert db("SELECT count(*) FROM pgqueue_jobs") == [(1,)]


def test_the_applications_engine_is_shared_and_left_open(dsn: str, db: Db) -> None:
    url = sqlalchemy.engine.make_url(dsn).set(drivername="postgresql+psycopg2")
    engine = sqlalchemy.create_engine(url, connect_args={"application_name": "sa-shared"})
    try:
        with engine.connect() as conn:  # the application's own use of its pool
            conn.exec_driver_sql("SELECT 1")
        app = pgqueue_ref.App(connector=SQLAlchemyPsycopg2Connector())
        app.open(engine)
        assert app.connector.engine is engine  # type: ignore[attr-defined]
        app.configure_task("t").defer(n=1)
        assert _connections(db, "sa-shared") == 1  # one pool, one connection, for both
        app.close()
        assert _connections(db, "sa-shared") == 1  # not disposed of
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM pgqueue_jobs").scalar() == 1
    finally:
        engine.dispose()


def test_an_engine_on_another_driver_is_refused(dsn: str) -> None:
    url = sqlalchemy.engine.make_url(dsn).set(drivername="postgresql+psycopg")
    engine = sqlalchemy.create_engine(url)
    app = pgqueue_ref.App(connector=SQLAlchemyPsycopg2Connector())
    with pytest.raises(ConfigurationError) as caught:
        app.open(engine)
    assert str(caught.value) == (
        "SQLAlchemyPsycopg2Connector needs an engine on the psycopg2 driver; this one uses "
        "postgresql+psycopg. Create it with a 'postgresql+psycopg2://...' URL."
    )
    with pytest.raises(ConfigurationError, match=r"opens on an sqlalchemy Engine; got str"):
        app.open(dsn)
