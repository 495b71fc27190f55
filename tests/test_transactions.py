"""Deferring on the caller's own connection, inside the caller's transaction (seed 002).

The INSERT runs on the caller's connection; we never commit it. So the job
exists if and only if the caller commits, and the NOTIFY that wakes workers
is sent at that commit, not before.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import psycopg
import pytest

import pgqueue_ref
from pgqueue_ref.exceptions import AlreadyEnqueued, ExternalConnectionError

Db = Callable[..., list[tuple[Any, ...]]]


class Notifications:
    """A plain LISTEN on the queue's channel, to see exactly when NOTIFY arrives."""

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.conn = conn

    async def received(self, wait: float) -> list[str]:
        return [n.payload async for n in self.conn.notifies(timeout=wait)]


@pytest.fixture
async def notifications(dsn: str) -> AsyncIterator[Notifications]:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute("LISTEN pgqueue_ref")
        yield Notifications(conn)


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


async def test_commit_writes_the_job_and_notifies_at_commit(
    app: pgqueue_ref.App, caller: psycopg.AsyncConnection[Any], notifications: Notifications, db: Db
) -> None:
    await caller.execute("INSERT INTO orders (id) VALUES (%s)", [42])
    job_id = await _task(app).configure(connection=caller).defer_async(order_id=42)

    assert db("SELECT count(*) FROM pgqueue_jobs") == [(0,)]  # invisible until the caller commits
    assert await notifications.received(wait=0.3) == []  # and no worker is woken yet

    await caller.commit()
    assert await notifications.received(wait=2) == ["app:default"]
    assert db("SELECT id, args FROM pgqueue_jobs") == [(job_id, {"order_id": 42})]
    assert db("SELECT id FROM orders") == [(42,)]


async def test_rollback_leaves_no_job_and_no_notification(
    app: pgqueue_ref.App, caller: psycopg.AsyncConnection[Any], notifications: Notifications, db: Db
) -> None:
    await caller.execute("INSERT INTO orders (id) VALUES (%s)", [42])
    await _task(app).configure(connection=caller).defer_async(order_id=42)
    await caller.rollback()

    assert await notifications.received(wait=0.5) == []
    assert db("SELECT count(*) FROM pgqueue_jobs") == [(0,)]
    assert db("SELECT count(*) FROM orders") == [(0,)]


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


async def test_queueing_lock_conflict_aborts_the_callers_transaction(
    app: pgqueue_ref.App, caller: psycopg.AsyncConnection[Any], db: Db
) -> None:
    deferrer = _task(app).configure(connection=caller, queueing_lock="order-42")
    await caller.execute("INSERT INTO orders (id) VALUES (%s)", [42])
    await deferrer.defer_async(order_id=42)

    with pytest.raises(AlreadyEnqueued):
        await deferrer.defer_async(order_id=42)
    # PostgreSQL aborted the whole transaction: nothing more can run in it.
    with pytest.raises(psycopg.errors.InFailedSqlTransaction):
        await caller.execute("INSERT INTO orders (id) VALUES (%s)", [43])
    await caller.rollback()
    assert db("SELECT count(*) FROM orders") == [(0,)]


async def test_savepoint_recipe_keeps_the_rest_of_the_transaction(
    app: pgqueue_ref.App, caller: psycopg.AsyncConnection[Any], db: Db
) -> None:
    # The recipe from docs/transactions.md: a nested transaction() is a SAVEPOINT.
    deferrer = _task(app).configure(connection=caller, queueing_lock="order-42")
    await caller.execute("INSERT INTO orders (id) VALUES (%s)", [42])
    await deferrer.defer_async(order_id=42)
    try:
        async with caller.transaction():  # SAVEPOINT
            await deferrer.defer_async(order_id=42)
    except AlreadyEnqueued:
        pass  # rolled back to the savepoint: the order and the first job survive
    await caller.execute("INSERT INTO orders (id) VALUES (%s)", [43])
    await caller.commit()

    assert db("SELECT id FROM orders ORDER BY id") == [(42,), (43,)]
    assert db("SELECT queueing_lock FROM pgqueue_jobs") == [("order-42",)]


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


async def test_wrong_connection_type_names_the_type_expected(
    app: pgqueue_ref.App, dsn: str
) -> None:
    with psycopg.connect(dsn) as sync_conn, pytest.raises(ExternalConnectionError) as caught:
        await _task(app).configure(connection=sync_conn).defer_async(order_id=1)
    assert (
        str(caught.value) == "PsycopgConnector defers on a psycopg.AsyncConnection; got Connection"
    )


async def test_blocking_defer_with_an_async_connection_points_to_defer_async(
    app: pgqueue_ref.App, caller: psycopg.AsyncConnection[Any]
) -> None:
    with pytest.raises(
        ExternalConnectionError, match=r"call defer_async\(\) / batch_defer_async\(\)"
    ):
        await asyncio.to_thread(_task(app).configure(connection=caller).defer, order_id=1)


async def test_connectors_without_support_say_so(
    dsn: str, caller: psycopg.AsyncConnection[Any]
) -> None:
    app = pgqueue_ref.App(connector=pgqueue_ref.AsyncpgConnector(dsn=dsn))
    async with app.open_async():
        with pytest.raises(ExternalConnectionError) as caught:
            await _task(app).configure(connection=caller).defer_async(order_id=1)
    assert str(caught.value) == "AsyncpgConnector does not support external connections"
    assert isinstance(caught.value, pgqueue_ref.exceptions.ConnectorException)


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
