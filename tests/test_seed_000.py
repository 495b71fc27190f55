"""Seed 000, "Control the way synchronous calls to defer are handled": each example
of the page as written (``procrastinate`` renamed ``pgqueue_ref``), with the test
server's connection values in place of the page's placeholders, then what the page
says it does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import psycopg2.pool
import pytest

from pgqueue_ref.exceptions import SyncConnectorConfigurationError

Db = Callable[..., list[tuple[Any, ...]]]


def test_psycopg2_connector(pg: dict[str, str], db: Db) -> None:
    import pgqueue_ref

    app = pgqueue_ref.App(
        connector=pgqueue_ref.Psycopg2Connector(
            host=pg["host"],  # the page: host="somehost"
            port=pg["port"],
            user=pg["user"],
            dbname=pg["dbname"],
        ),
    )

    # "the only thing you'll be able to do synchronously is deferred tasks"
    @app.task(name="hello")
    def hello(name: str) -> None: ...

    with app.open():
        # "will use a psycopg2.pool.ThreadedConnectionPool"
        assert isinstance(app.connector.pool, psycopg2.pool.ThreadedConnectionPool)  # type: ignore[attr-defined]
        hello.defer(name="world")
        with pytest.raises(SyncConnectorConfigurationError, match="a worker needs an async"):
            app.run_worker(wait=False)
    assert db("SELECT task_name, args FROM pgqueue_jobs") == [("hello", {"name": "world"})]


def test_sqlalchemy_psycopg2_connector_shares_the_engine(
    libpq_env: dict[str, str], db: Db, caplog: pytest.LogCaptureFixture
) -> None:
    # The page's URL names no server: libpq takes it from PGHOST, PGPORT... (libpq_env).
    from sqlalchemy import create_engine

    from pgqueue_ref import App
    from pgqueue_ref.contrib.sqlalchemy import SQLAlchemyPsycopg2Connector

    engine = create_engine("postgresql+psycopg2://", echo=True)

    app = App(connector=SQLAlchemyPsycopg2Connector())
    app.open(engine)

    # "Procrastinate can use the same SQLAlchemy engine (and connection pool)"
    try:
        assert app.connector.engine is engine  # type: ignore[attr-defined]
        app.configure_task("hello").defer(name="world")
        assert "INSERT INTO pgqueue_jobs" in caplog.text  # logged by the engine's echo=True
    finally:
        app.close()
    with engine.connect() as conn:  # the application's engine is still usable after close
        assert conn.exec_driver_sql("SELECT task_name FROM pgqueue_jobs").all() == [("hello",)]
    engine.dispose()


async def test_several_apps_over_one_set_of_tasks(dsn: str) -> None:
    import pgqueue_ref

    app = pgqueue_ref.App(
        connector=pgqueue_ref.AiopgConnector(dsn=dsn),  # the page: AiopgConnector(...)
    )

    sync_app = app.with_connector(
        connector=pgqueue_ref.Psycopg2Connector(dsn=dsn),  # the page: Psycopg2Connector(...)
    )

    # "you can then register or defer tasks on either app"
    ran: list[str] = []

    @app.task(name="registered_on_app")
    def registered_on_app() -> None:
        ran.append("registered_on_app")

    @sync_app.task(name="registered_on_sync_app")
    def registered_on_sync_app() -> None:
        ran.append("registered_on_sync_app")

    def synchronous_code() -> None:
        # Only sync_app is open: these defers go through its Psycopg2Connector.
        with sync_app.open():
            sync_app.tasks["registered_on_app"].defer()
            registered_on_sync_app.defer()

    await asyncio.to_thread(synchronous_code)
    async with app.open_async():
        await app.tasks["registered_on_sync_app"].defer_async()
        stats = await app.run_worker_async(wait=False)
    assert stats.succeeded == 3
    assert sorted(ran) == ["registered_on_app", "registered_on_sync_app", "registered_on_sync_app"]
