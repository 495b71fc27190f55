"""The App face on PsycopgConnector: deferring, and what lands in the table."""

from __future__ import annotations

import datetime
import decimal
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

import pgqueue_ref
from pgqueue_ref.exceptions import AlreadyEnqueued, ConnectorNotOpen, UnserializableArguments
from pgqueue_ref.jobs import Face, JobSpec

Db = Callable[..., list[tuple[Any, ...]]]


async def test_defer_writes_one_row(app: pgqueue_ref.App, db: Db) -> None:
    @app.task(name="add", queue="math")
    async def add(a: int, b: int) -> int:
        return a + b

    job_id = await add.defer_async(a=1, b=2)

    assert db(
        "SELECT face, queue, task_name, args, status, priority, attempts FROM pgqueue_jobs"
    ) == [("app", "math", "add", {"a": 1, "b": 2}, "todo", 0, 0)]
    assert db("SELECT id FROM pgqueue_jobs") == [(job_id,)]


async def test_configure_sets_priority_schedule_and_locks(app: pgqueue_ref.App, db: Db) -> None:
    @app.task(name="add")
    async def add(a: int, b: int) -> None: ...

    await add.configure(
        priority=10, schedule_in={"seconds": 30}, queueing_lock="x", lock="L", queue="q"
    ).defer_async(a=2, b=3)

    ((priority, lock, queueing_lock, queue, delay),) = db(
        "SELECT priority, lock, queueing_lock, queue, extract(epoch FROM scheduled_at - now()) FROM pgqueue_jobs"
    )
    assert (priority, lock, queueing_lock, queue) == (10, "L", "x", "q")
    assert 25 < delay <= 30


async def test_schedule_at_needs_a_time_zone(app: pgqueue_ref.App) -> None:
    @app.task(name="t")
    def t() -> None: ...

    with pytest.raises(ValueError, match="has no time zone"):
        t.configure(schedule_at=datetime.datetime(2030, 1, 1))
    with pytest.raises(ValueError, match="schedule_at or schedule_in, not both"):
        t.configure(schedule_at=datetime.datetime.now(datetime.UTC), schedule_in={"seconds": 1})


async def test_batch_defer_is_one_statement_and_returns_ids_in_order(
    app: pgqueue_ref.App, db: Db
) -> None:
    @app.task(name="add")
    async def add(a: int, b: int) -> None: ...

    ids = await add.batch_defer_async({"a": 1, "b": 1}, {"a": 2, "b": 2}, {"a": 3, "b": 3})

    # One statement: every row was written by the same transaction (xmin).
    assert db("SELECT count(DISTINCT xmin::text) FROM pgqueue_jobs") == [(1,)]
    assert db("SELECT id, args->>'a' FROM pgqueue_jobs ORDER BY id") == [
        (ids[0], "1"),
        (ids[1], "2"),
        (ids[2], "3"),
    ]
    assert ids == sorted(ids)
    assert await add.batch_defer_async() == []


async def test_every_way_of_deferring_wakes_workers_once_per_queue(
    app: pgqueue_ref.App, dsn: str
) -> None:
    """The insert statements send the NOTIFY themselves (no trigger), while a worker of
    their queues is idle: check each one."""

    @app.task(name="t", queue="q1")
    async def t(n: int) -> None: ...

    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as listener:
        await listener.execute("LISTEN pgqueue_ref")
        worker_id = await app.job_manager.register_worker_async("idle listener")
        assert await app.job_manager.go_idle_async(Face.APP, worker_id) is True

        async def received() -> list[str]:
            return sorted([n.payload async for n in listener.notifies(timeout=0.3)])

        await t.defer_async(n=1)  # defer_job
        assert await received() == ["app:q1"]
        await t.batch_defer_async({"n": 1}, {"n": 2}, {"n": 3})  # defer_jobs_alike
        assert await received() == ["app:q1"]
        specs = [JobSpec("t", queue) for queue in ("q1", "q2", "q1", "q3")]
        await app.job_manager.defer_async(Face.APP, specs)  # defer_jobs
        assert await received() == ["app:q1", "app:q2", "app:q3"]


async def test_arguments_round_trip_as_json(app: pgqueue_ref.App) -> None:
    received: list[dict[str, Any]] = []
    big = "x" * 100_000

    @app.task(name="echo")
    async def echo(**kwargs: Any) -> None:
        received.append(kwargs)

    sent = {
        "text": "h\u00e9llo \u2603 \U0001f600",
        "nested": {"list": [1, 2.5, None, True]},
        "big": big,
        "quote": "'; DROP TABLE pgqueue_jobs; --",
    }
    await echo.defer_async(**sent)
    await app.run_worker_async(wait=False)

    assert received == [sent]


async def test_non_json_argument_is_refused_and_nothing_is_written(
    app: pgqueue_ref.App, db: Db
) -> None:
    @app.task(name="pay")
    def pay(amount: object) -> None: ...

    with pytest.raises(UnserializableArguments, match="argument 'amount' of task 'pay'"):
        await pay.batch_defer_async({"amount": 1}, {"amount": decimal.Decimal(1)})

    assert db("SELECT count(*) FROM pgqueue_jobs") == [(0,)]


async def test_positional_arguments_are_refused(app: pgqueue_ref.App) -> None:
    @app.task(name="t")
    def t(a: int) -> None: ...

    with pytest.raises(TypeError, match="takes keyword arguments only"):
        await t.defer_async(1)


async def test_queueing_lock_refuses_a_second_waiting_job(app: pgqueue_ref.App, db: Db) -> None:
    @app.task(name="sync_user", queueing_lock="user-1")
    def sync_user() -> None: ...

    await sync_user.defer_async()
    with pytest.raises(AlreadyEnqueued):
        await sync_user.defer_async()
    assert db("SELECT count(*) FROM pgqueue_jobs") == [(1,)]

    await app.run_worker_async(wait=False)  # once it has run, the lock is free again
    await sync_user.defer_async()
    assert db("SELECT status, count(*) FROM pgqueue_jobs GROUP BY 1 ORDER BY 1") == [
        ("succeeded", 1),
        ("todo", 1),
    ]


async def test_configure_task_by_name_defers_without_the_code(app: pgqueue_ref.App, db: Db) -> None:
    await app.configure_task("elsewhere.task", queue="other").defer_async(x=1)
    assert db("SELECT task_name, queue FROM pgqueue_jobs") == [("elsewhere.task", "other")]


async def test_default_task_name_is_module_and_qualname(app: pgqueue_ref.App) -> None:
    @app.task
    def plain() -> None: ...

    assert plain.name == f"{__name__}.test_default_task_name_is_module_and_qualname.<locals>.plain"
    assert app.tasks[plain.name].name == plain.name
    assert plain() is None  # calling a task runs it here and now


async def test_using_a_closed_app_says_to_open_it(dsn: str) -> None:
    app = pgqueue_ref.App(connector=pgqueue_ref.PsycopgConnector(conninfo=dsn))

    @app.task(name="t")
    def t() -> None: ...

    with pytest.raises(
        ConnectorNotOpen, match=r"PsycopgConnector is not open: call 'await app.open_async\(\)'"
    ):
        await t.defer_async()


async def test_apply_schema_twice_on_an_empty_database(empty_dsn: str) -> None:
    app = pgqueue_ref.App(connector=pgqueue_ref.PsycopgConnector(conninfo=empty_dsn))
    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        await app.schema_manager.apply_schema_async()
        assert await app.job_manager.status_counts_async() == []


async def test_await_open_async_then_close(dsn: str) -> None:
    app = pgqueue_ref.App(connector=pgqueue_ref.PsycopgConnector(conninfo=dsn))
    assert await app.open_async() is app
    await app.close_async()


def test_embedded_is_reachable_from_the_package_without_importing_it_first() -> None:
    import subprocess
    import sys

    code = "import sys, pgqueue_ref; assert 'pgqueue_ref.embedded' not in sys.modules; pgqueue_ref.embedded.default_dsn"
    subprocess.run([sys.executable, "-c", code], check=True)
