"""Deferring on the caller's own connection (seed 002): PsycopgConnector's own
cases, and seed 002's examples as written.

What every connector with external connections shares (commit, rollback,
NOTIFY at commit, the aborted transaction, the savepoint recipe) is tested
once for all in tests/conformance/test_outbox.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import psycopg
import pytest

import pgqueue_ref
from pgqueue_ref.exceptions import ExternalConnectionError

Db = Callable[..., list[tuple[Any, ...]]]


@pytest.fixture
async def caller(dsn: str, db: Db) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """The application's own connection, with a table of its own."""
    db("CREATE TABLE orders (id integer PRIMARY KEY)")
    async with await psycopg.AsyncConnection.connect(dsn) as conn:  # autocommit is off by default
        yield conn


def _task(app: pgqueue_ref.App) -> pgqueue_ref.Task:
    @app.task(name="process_order")
    def process_order(order_id: int) -> None: ...

    return process_order


async def test_a_listening_worker_wakes_at_commit_not_before(
    app: pgqueue_ref.App, caller: psycopg.AsyncConnection[Any]
) -> None:
    ran = asyncio.Event()

    @app.task(name="process_order")
    async def process_order(order_id: int) -> None:
        ran.set()

    worker = app.worker(polling_interval=60)  # only a NOTIFY can wake it in time
    running = asyncio.create_task(worker.run())
    await asyncio.wait_for(worker.listening.wait(), 5)

    await process_order.configure(connection=caller).defer_async(order_id=1)
    await asyncio.sleep(0.3)
    assert not ran.is_set()

    await caller.commit()
    await asyncio.wait_for(ran.wait(), 5)
    worker.stop()
    await running


async def test_batch_defer_status_and_cancel_on_the_callers_connection(
    app: pgqueue_ref.App, caller: psycopg.AsyncConnection[Any], db: Db
) -> None:
    ids = (
        await _task(app)
        .configure(connection=caller)
        .batch_defer_async({"order_id": 1}, {"order_id": 2})
    )
    manager = app.job_manager
    assert await manager.job_status_async(ids[0], connection=caller) is pgqueue_ref.Status.TODO
    assert await manager.job_status_async(ids[0]) is None  # not visible outside yet
    assert await manager.cancel_async(ids[1], connection=caller) is pgqueue_ref.Status.CANCELLED
    await caller.commit()
    assert db("SELECT id, status FROM pgqueue_jobs ORDER BY id") == [
        (ids[0], "todo"),
        (ids[1], "cancelled"),
    ]


async def test_blocking_defer_with_an_async_connection_points_to_defer_async(
    app: pgqueue_ref.App, caller: psycopg.AsyncConnection[Any]
) -> None:
    with pytest.raises(
        ExternalConnectionError, match=r"call defer_async\(\) / batch_defer_async\(\)"
    ):
        await asyncio.to_thread(_task(app).configure(connection=caller).defer, order_id=1)


@pytest.mark.parametrize("outcome", ["commit", "rollback"])
async def test_seed_002_async_example(dsn: str, db: Db, outcome: str) -> None:
    db("CREATE TABLE orders (id integer PRIMARY KEY)")
    # From seed 002, "Async example (psycopg)", with "..." replaced by the test database,
    # one line corrected (see test_seed_002_async_example_line_psycopg_refuses), and the
    # final commit also tried as a rollback:
    import psycopg

    from pgqueue_ref import App, PsycopgConnector

    app = App(connector=PsycopgConnector(conninfo=dsn))
    await app.open_async()

    @app.task
    def process_order(order_id):  # type: ignore[no-untyped-def]
        ...

    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        await conn.set_autocommit(False)  # the seed: conn.autocommit = False
        await conn.execute("INSERT INTO orders (id) VALUES (%s)", [42])
        await process_order.configure(connection=conn).defer_async(order_id=42)
        await (conn.commit() if outcome == "commit" else conn.rollback())
    # (end of the seed's code)
    await app.close_async()
    expected = [(42, {"order_id": 42})] if outcome == "commit" else []
    assert db("SELECT o.id, j.args FROM orders o, pgqueue_jobs j") == expected
    assert db("SELECT count(*) FROM pgqueue_jobs") == [(len(expected),)]


async def test_seed_002_async_example_line_psycopg_refuses(dsn: str) -> None:
    # Seed 002's async example sets `conn.autocommit = False` on an AsyncConnection.
    # psycopg 3 itself refuses that (the property is read-only on async connections),
    # whatever queue library is used; the examples above run it as
    # `await conn.set_autocommit(False)`, which is what psycopg's message asks for.
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        with pytest.raises(AttributeError, match=r"use 'await .set_autocommit\(\)' instead"):
            conn.autocommit = False  # type: ignore[misc]


@pytest.mark.parametrize("outcome", ["commit", "rollback"])
def test_seed_002_sync_example(dsn: str, db: Db, outcome: str) -> None:
    db("CREATE TABLE orders (id integer PRIMARY KEY)")
    # From seed 002, "Sync example (psycopg)", "..." replaced by the test database,
    # "(id, ...) VALUES (%s, ...)" by the orders table's one column; commit also tried as rollback:
    import psycopg

    from pgqueue_ref import App, SyncPsycopgConnector

    app = App(connector=SyncPsycopgConnector(conninfo=dsn))
    app.open()

    @app.task
    def process_order(order_id):  # type: ignore[no-untyped-def]
        ...

    with psycopg.connect(dsn) as conn:
        conn.autocommit = False
        conn.execute("INSERT INTO orders (id) VALUES (%s)", [42])
        process_order.configure(connection=conn).defer(order_id=42)
        conn.commit() if outcome == "commit" else conn.rollback()
    # (end of the seed's code)
    app.close()
    expected = [(42, {"order_id": 42})] if outcome == "commit" else []
    assert db("SELECT o.id, j.args FROM orders o, pgqueue_jobs j") == expected
    assert db("SELECT count(*) FROM pgqueue_jobs") == [(len(expected),)]


@pytest.mark.parametrize("outcome", ["commit", "rollback"])
def test_seed_002_sqlalchemy_example(dsn: str, db: Db, outcome: str) -> None:
    db("CREATE TABLE orders (id integer PRIMARY KEY)")
    mydb = dsn.replace(
        "postgresql://", "postgresql+psycopg2://"
    )  # the seed: "postgresql+psycopg2:///mydb"
    # From seed 002, "SQLAlchemy example"; commit also tried as rollback:
    from pgqueue_ref import App
    from pgqueue_ref.contrib.sqlalchemy import SQLAlchemyPsycopg2Connector

    connector = SQLAlchemyPsycopg2Connector(dsn=mydb)
    app = App(connector=connector)
    app.open()

    @app.task
    def process_order(order_id):  # type: ignore[no-untyped-def]
        ...

    with connector.engine.connect() as conn:
        conn.exec_driver_sql("INSERT INTO orders (id) VALUES (%s)", (42,))  # the seed: [42]
        process_order.configure(connection=conn).defer(order_id=42)
        conn.commit() if outcome == "commit" else conn.rollback()
    # (end of the seed's code)
    app.close()
    expected = [(42, {"order_id": 42})] if outcome == "commit" else []
    assert db("SELECT o.id, j.args FROM orders o, pgqueue_jobs j") == expected


def test_seed_002_sqlalchemy_example_line_sqlalchemy_refuses(dsn: str, db: Db) -> None:
    # Seed 002's SQLAlchemy example passes [42] to exec_driver_sql. SQLAlchemy 2 reads a
    # list as many parameter sets (executemany) and refuses a bare 42 inside it, whatever
    # queue library is used; the example above passes the one row as the tuple (42,).
    import sqlalchemy

    db("CREATE TABLE orders (id integer PRIMARY KEY)")
    engine = sqlalchemy.create_engine(dsn.replace("postgresql://", "postgresql+psycopg2://"))
    with (
        engine.connect() as conn,
        pytest.raises(sqlalchemy.exc.ArgumentError, match="List argument must"),
    ):
        conn.exec_driver_sql("INSERT INTO orders (id) VALUES (%s)", [42])
    engine.dispose()
