"""The transactional outbox, on every connector that defers on the caller's connection.

Connectors without external connections are covered by
test_conformance.py::test_external_connection_defers_inside_the_callers_transaction
(they refuse clearly); here they are not applicable, and skipped.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import psycopg
import pytest

from pgqueue_ref.exceptions import AlreadyEnqueued
from pgqueue_ref.sql import QUERIES

from .conftest import EXTERNAL_CONNECTIONS, CallerConnection, Subject

Db = Callable[..., list[tuple[Any, ...]]]


@pytest.fixture
async def caller(subject: Subject, dsn: str, db: Db) -> AsyncIterator[CallerConnection]:
    """The caller's connection; where the connector takes none, the test is skipped
    as not applicable (the refusal is tested in test_conformance)."""
    if subject.name not in EXTERNAL_CONNECTIONS:
        subject.skip_not_applicable("takes no external connection")
    db("CREATE TABLE orders (id integer PRIMARY KEY)")
    async with EXTERNAL_CONNECTIONS[subject.name](subject.route) as conn:
        yield conn


@pytest.fixture
async def notifications(dsn: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """LISTENing as an idle worker does: defers notify only while one is marked idle."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute("LISTEN pgqueue_ref")
        register = {"name": "listener", "session_tag": None}  # no backends of its own to fence
        cursor = await conn.execute(str(QUERIES["register_worker"]), register)
        worker = await cursor.fetchone()
        assert worker is not None
        params = {"worker_id": worker[0], "face": "app", "queues": None}
        assert await (await conn.execute(str(QUERIES["go_idle"]), params)).fetchone() == (True,)
        yield conn


async def _received(listener: psycopg.AsyncConnection[Any], wait: float) -> list[str]:
    return [n.payload async for n in listener.notifies(timeout=wait)]


async def test_commit_makes_the_job_and_notifies_at_commit(
    subject: Subject,
    caller: CallerConnection,
    notifications: psycopg.AsyncConnection[Any],
    db: Db,
) -> None:
    """Outbox: the job exists after the caller's commit, and NOTIFY arrives then, not before"""
    await caller.execute("INSERT INTO orders (id) VALUES (%s)", 42)
    job_id = await subject.defer_job("t", {"connection": caller.connection}, order_id=42)
    assert db("SELECT count(*) FROM pgqueue_jobs") == [(0,)]
    assert await _received(notifications, 0.3) == []
    await caller.commit()
    assert await _received(notifications, 2) == ["app:default"]
    assert db("SELECT j.id, o.id FROM pgqueue_jobs j, orders o") == [(job_id, 42)]


async def test_rollback_leaves_no_job_and_no_notification(
    subject: Subject,
    caller: CallerConnection,
    notifications: psycopg.AsyncConnection[Any],
    db: Db,
) -> None:
    """Outbox: after the caller's rollback there is no job and no NOTIFY"""
    await caller.execute("INSERT INTO orders (id) VALUES (%s)", 42)
    await subject.batch_defer("t", {"n": 1}, {"n": 2}, options={"connection": caller.connection})
    await caller.rollback()
    assert await _received(notifications, 0.5) == []
    assert db("SELECT (SELECT count(*) FROM pgqueue_jobs), (SELECT count(*) FROM orders)") == [
        (0, 0)
    ]


async def test_conflict_aborts_the_callers_transaction(
    subject: Subject, caller: CallerConnection, db: Db
) -> None:
    """Outbox: a queueing-lock conflict raises AlreadyEnqueued and aborts the caller's transaction"""
    options = {"connection": caller.connection, "queueing_lock": "order-42"}
    await caller.execute("INSERT INTO orders (id) VALUES (%s)", 42)
    await subject.defer_job("t", options)
    with pytest.raises(AlreadyEnqueued):
        await subject.defer_job("t", options)
    with pytest.raises(Exception, match="current transaction is aborted"):
        await caller.execute("INSERT INTO orders (id) VALUES (%s)", 43)
    await caller.rollback()
    assert db("SELECT (SELECT count(*) FROM pgqueue_jobs), (SELECT count(*) FROM orders)") == [
        (0, 0)
    ]


async def test_savepoint_keeps_the_rest_of_the_transaction(
    subject: Subject, caller: CallerConnection, db: Db
) -> None:
    """Outbox: with a savepoint around the defer, a conflict leaves the rest of the transaction"""
    options = {"connection": caller.connection, "queueing_lock": "order-42"}
    await caller.execute("INSERT INTO orders (id) VALUES (%s)", 42)
    await subject.defer_job("t", options)
    with pytest.raises(AlreadyEnqueued):
        async with caller.savepoint():
            await subject.defer_job("t", options)
    await caller.execute("INSERT INTO orders (id) VALUES (%s)", 43)
    await caller.commit()
    assert db("SELECT id FROM orders ORDER BY id") == [(42,), (43,)]
    assert db("SELECT queueing_lock FROM pgqueue_jobs") == [("order-42",)]
