"""PsycopgConnector's own quirks (shared behaviour lives in the engine and app tests)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import psycopg
import psycopg_pool
import pytest
from psycopg.conninfo import conninfo_to_dict

import pgqueue_ref
from pgqueue_ref.exceptions import ConnectionFailed, SyncCallInAsyncContext

Db = Callable[..., list[tuple[Any, ...]]]


def _task(app: pgqueue_ref.App) -> pgqueue_ref.Task:
    @app.task(name="t")
    def t(n: int) -> None: ...

    return t


async def test_parameters_from_libpq_environment(
    dsn: str, db: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = conninfo_to_dict(dsn)
    monkeypatch.setenv("PGHOST", str(params["host"]))
    monkeypatch.setenv("PGPORT", str(params["port"]))
    monkeypatch.setenv("PGUSER", str(params["user"]))
    monkeypatch.setenv("PGDATABASE", str(params["dbname"]))
    app = pgqueue_ref.App(connector=pgqueue_ref.PsycopgConnector())  # as in seed 001
    async with app.open_async():
        await _task(app).defer_async(n=1)
    assert db("SELECT count(*) FROM pgqueue_jobs") == [(1,)]


async def test_parameters_as_kwargs_and_pool_arguments_pass_through(dsn: str, db: Db) -> None:
    params = conninfo_to_dict(dsn)
    connector = pgqueue_ref.PsycopgConnector(
        kwargs={
            "dbname": params["dbname"],
            "user": params["user"],
            "host": params["host"],
            "port": params["port"],
        },
        min_size=2,
        max_size=3,
        name="from-the-test",
    )
    app = pgqueue_ref.App(connector=connector)
    async with app.open_async():
        assert (connector.pool.min_size, connector.pool.max_size, connector.pool.name) == (
            2,
            3,
            "from-the-test",
        )
        await _task(app).defer_async(n=1)
    assert db("SELECT count(*) FROM pgqueue_jobs") == [(1,)]


async def test_a_pool_handed_in_is_used_and_not_closed(dsn: str, db: Db) -> None:
    async with psycopg_pool.AsyncConnectionPool(dsn, open=False) as pool:
        app = pgqueue_ref.App(connector=pgqueue_ref.PsycopgConnector())
        async with app.open_async(pool):
            await _task(app).defer_async(n=1)
        assert not pool.closed
        async with pool.connection() as conn:
            assert await (await conn.execute("SELECT count(*) FROM pgqueue_jobs")).fetchone() == (
                1,
            )


def test_blocking_use_outside_an_event_loop(dsn: str, db: Db) -> None:
    app = pgqueue_ref.App(connector=pgqueue_ref.PsycopgConnector(conninfo=dsn))
    with app.open():
        app.schema_manager.apply_schema()
        job_id = _task(app).defer(n=1)
        assert _task(app).batch_defer({"n": 2}, {"n": 3}) == [job_id + 1, job_id + 2]
        assert app.job_manager.job_status(job_id) is pgqueue_ref.Status.TODO
        app.run_worker(wait=False)
        assert app.job_manager.job_status(job_id) is pgqueue_ref.Status.SUCCEEDED


async def test_blocking_call_inside_the_loop_says_which_async_method_to_use(
    app: pgqueue_ref.App,
) -> None:
    with pytest.raises(SyncCallInAsyncContext) as caught:
        _task(app).defer(n=1)
    assert "defer() blocks" in str(caught.value)
    assert "use 'await task.defer_async(...)' there instead" in str(caught.value)
    with pytest.raises(SyncCallInAsyncContext, match=r"'await task.batch_defer_async\(...\)'"):
        _task(app).batch_defer({"n": 2})
    with pytest.raises(SyncCallInAsyncContext, match=r"use 'await app.run_worker_async\(...\)'"):
        app.run_worker(wait=False)


async def test_a_sync_task_can_defer_from_its_worker_thread(app: pgqueue_ref.App, db: Db) -> None:
    @app.task(name="child")
    def child() -> None: ...

    @app.task(name="parent")
    def parent() -> None:
        child.defer()  # blocking defer from a worker thread, onto the app's loop

    await parent.defer_async()
    stats = await app.run_worker_async(wait=False)
    assert stats.succeeded == 2
    assert db("SELECT task_name, status FROM pgqueue_jobs ORDER BY id") == [
        ("parent", "succeeded"),
        ("child", "succeeded"),
    ]


async def test_refused_connection_is_connection_failed() -> None:
    connector = pgqueue_ref.PsycopgConnector(conninfo="postgresql://u:secret@127.0.0.1:1/x")
    app = pgqueue_ref.App(connector=connector)
    with pytest.raises(ConnectionFailed) as caught:
        await asyncio.wait_for(app.open_async(), 10)  # at once, not after the pool's 30 s timeout
    message = str(caught.value)
    assert '"127.0.0.1", port 1 failed: Connection refused' in message
    assert "secret" not in message


async def test_defers_inside_the_callers_transaction(
    app: pgqueue_ref.App, dsn: str, db: Db
) -> None:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        await _task(app).configure(connection=conn).defer_async(n=1)
        assert db("SELECT count(*) FROM pgqueue_jobs") == [(0,)]  # not committed yet
        await conn.rollback()
    assert db("SELECT count(*) FROM pgqueue_jobs") == [(0,)]
