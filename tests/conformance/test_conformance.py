"""What every connector and driver does the same way, tested once for all.

The first line of each test's docstring is its row in ``docs/connectors.md``.
A connector that cannot do what a test is about must refuse clearly; the test
checks the refusal, then records it with ``subject.unsupported(reason)``. Where
there is nothing to check (the question does not arise), the test skips with
its reason, ``subject.skip_not_applicable(reason)``: no test passes without
asserting.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest

from pgqueue_ref import App, Status
from pgqueue_ref.exceptions import (
    AlreadyEnqueued,
    ConfigurationError,
    ConnectionFailed,
    ConnectorException,
    ConnectorNotOpen,
    ExternalConnectionError,
    SyncCallInAsyncContext,
    SyncConnectorConfigurationError,
)
from pgqueue_ref.jobs import Face, JobSpec
from pgqueue_ref.pooler import PgBouncer

from .conftest import CONNECTORS, EXTERNAL_CONNECTIONS, Subject, Topology, built
from .queue_drivers import Route
from .support_table import PGBOUNCER

Db = Callable[..., list[tuple[Any, ...]]]

ARGUMENTS: dict[str, Any] = {
    "unicode": "h\u00e9llo \u2603 \U0001f600 \u4e2d\u6587",
    "nested": {"list": [1, 2.5, None, True, {"deep": ["x"]}], "empty": {}},
    "large": "x" * 200_000,
    "sql": "'; DROP TABLE pgqueue_jobs; -- %(name)s $1 %s",
    "numbers": [0, -1, 2**53, 1e-300],
}


def _refuses_a_worker(subject: Subject) -> None:
    """A defer-only connector asked for a worker: the named error, naming the async ones."""
    kind = "connector" if subject.connector.opens_connections else "driver"
    for ask in (subject.app.worker, subject.app.run_worker):
        with pytest.raises(SyncConnectorConfigurationError) as caught:
            ask()
        assert str(caught.value).startswith(
            f"{subject.name} can only defer jobs: a worker needs an async {kind} "
        )
        if kind == "connector":
            assert "(PsycopgConnector, AiopgConnector or AsyncpgConnector)" in str(caught.value)
    subject.unsupported("defer only: asking for a worker raises SyncConnectorConfigurationError")


# -- deferring ----------------------------------------------------------------


async def test_defer_writes_a_job(subject: Subject, db: Db) -> None:
    """Defers a job: one row with its queue, priority and arguments"""
    job_id = await subject.defer_job("t", {"queue": "q", "priority": 3}, a=1)
    assert db("SELECT id, face, queue, task_name, args, priority, status FROM pgqueue_jobs") == [
        (job_id, "app", "q", "t", {"a": 1}, 3, "todo")
    ]


async def test_batch_defer_is_one_transaction_with_ids_in_order(subject: Subject, db: Db) -> None:
    """Defers a batch in one statement, ids in order"""
    ids = await subject.batch_defer("t", {"n": 1}, {"n": 2}, {"n": 3})
    assert db("SELECT id, args->>'n' FROM pgqueue_jobs ORDER BY id") == list(
        zip(ids, ["1", "2", "3"])
    )
    assert db("SELECT count(DISTINCT xmin::text) FROM pgqueue_jobs") == [(1,)]


async def test_arguments_round_trip(subject: Subject) -> None:
    """JSON arguments round trip: unicode, nesting, 200 kB, SQL-looking text"""
    await subject.defer_job("t", **ARGUMENTS)
    (job,) = await subject.list_jobs()
    assert json.loads(job["args"]) == ARGUMENTS


async def test_payload_bytes_round_trip(subject: Subject) -> None:
    """Bytes payloads (the Queue face's) round trip, NULL included"""
    payload = bytes(range(256)) * 100
    specs = [JobSpec(task_name="fetch", payload=payload), JobSpec(task_name="fetch", payload=None)]
    await subject.call(subject.app.job_manager, "defer", Face.QUEUE, specs)
    jobs = await subject.list_jobs()
    assert sorted(
        (bytes(j["payload"]) if j["payload"] is not None else None) is None for j in jobs
    ) == [False, True]
    assert any(j["payload"] is not None and bytes(j["payload"]) == payload for j in jobs)


async def test_external_connection_defers_inside_the_callers_transaction(
    subject: Subject, dsn: str, db: Db
) -> None:
    """Defers on the caller's own connection, inside the caller's transaction"""
    expected_type = subject.connector.external_connection_type
    with pytest.raises(ExternalConnectionError) as caught:
        await subject.defer_job("t", {"connection": object()})
    if expected_type is None:
        assert str(caught.value) == f"{subject.name} does not support external connections"
        subject.unsupported("`configure(connection=...)` raises ExternalConnectionError")
    else:
        assert str(caught.value) == f"{subject.name} defers on a {expected_type}; got object"
        await _defers_inside_the_callers_transaction(subject, dsn, db)


async def _defers_inside_the_callers_transaction(subject: Subject, dsn: str, db: Db) -> None:
    assert subject.name in EXTERNAL_CONNECTIONS, "add its connection factory to the conftest"
    async with EXTERNAL_CONNECTIONS[subject.name](subject.route) as caller:
        await subject.defer_job("t", {"connection": caller.connection}, n=1)
        assert db("SELECT count(*) FROM pgqueue_jobs") == [(0,)]  # not committed yet
        await caller.rollback()
        job_id = await subject.defer_job("t", {"connection": caller.connection}, n=2)
        await caller.commit()
    assert db("SELECT id, args FROM pgqueue_jobs") == [(job_id, {"n": 2})]


# -- errors ---------------------------------------------------------------------


async def test_queueing_lock_conflict_is_already_enqueued(subject: Subject, db: Db) -> None:
    """A queueing-lock conflict raises AlreadyEnqueued, and writes nothing"""
    await subject.defer_job("t", {"queueing_lock": "one"})
    with pytest.raises(AlreadyEnqueued) as caught:
        await subject.defer_job("t", {"queueing_lock": "one"})
    assert caught.value.sqlstate == "23505"
    with pytest.raises(AlreadyEnqueued):  # a batch colliding with itself: no partial write
        await subject.batch_defer("t", {"n": 1}, {"n": 2}, options={"queueing_lock": "two"})
    assert db("SELECT queueing_lock FROM pgqueue_jobs") == [("one",)]


async def test_database_errors_become_connector_exceptions_with_sqlstate(subject: Subject) -> None:
    """Database errors become ConnectorException with their SQLSTATE"""
    with pytest.raises(ConnectorException) as caught:
        await subject.fetch_all("SELECT 1 / %(zero)s::int", {"zero": 0})
    assert type(caught.value) is ConnectorException
    assert caught.value.sqlstate == "22012"
    assert "division by zero" in str(caught.value)
    assert isinstance(caught.value.__cause__, Exception)  # the driver's own, for debugging


async def test_sql_text_reaches_the_server_unchanged(subject: Subject) -> None:
    """SQL reaches the server as written: a literal % as is, %% with parameters"""
    # Without parameters no driver formats the text: what a schema with a
    # plpgsql RAISE '... %' needs. With parameters, %% is psycopg's literal %.
    assert await subject.fetch_all("SELECT '100%' AS s", {}) == [{"s": "100%"}]
    assert await subject.fetch_all("SELECT '100%%' || %(x)s::text AS s", {"x": "!"}) == [
        {"s": "100%!"}
    ]


async def test_unreachable_server_is_connection_failed_at_open(subject: Subject) -> None:
    """An unreachable server: ConnectionFailed at open, at once, naming the address"""
    _skip_if_it_wraps_the_callers_connection(subject)
    nowhere = "postgresql://u:secret@127.0.0.1:1/x"
    if subject.pooled:
        await _a_server_down_behind_pgbouncer_makes_open_wait(subject, nowhere)
    else:
        app = App(connector=CONNECTORS[subject.name](Route(nowhere)))
        with pytest.raises(ConnectionFailed) as caught:
            await asyncio.wait_for(subject.call(app, "open"), 10)  # not after a pool's 30 s
        message = str(caught.value)
        assert "127.0.0.1" in message
        assert "secret" not in message


async def _a_server_down_behind_pgbouncer_makes_open_wait(subject: Subject, nowhere: str) -> None:
    """The pooler is up, the server behind it is not: PgBouncer takes the client's
    login and holds it while it retries the server (``query_wait_timeout``, 120 s by
    default), so open waits; it fails, with ConnectionFailed, once the pooler goes."""
    with PgBouncer(nowhere) as pooler_of_nothing:
        route = Topology(PGBOUNCER, pooler_of_nothing).route(nowhere)
        app = App(connector=CONNECTORS[subject.name](route))
        opening = asyncio.ensure_future(subject.call(app, "open"))
        done, _ = await asyncio.wait({opening}, timeout=1)
        assert not done, opening.exception() or "opened a connector to a server that is down"
    with pytest.raises(ConnectionFailed) as caught:  # the pooler stopped: its clients are closed
        await asyncio.wait_for(opening, 10)
    assert "secret" not in str(caught.value)
    subject.unsupported(
        "a server down behind PgBouncer: open waits (PgBouncer holds the login while it "
        "retries the server, until its `query_wait_timeout`, 120 s by default)"
    )


async def test_using_a_closed_connector_says_to_open_it(subject: Subject, dsn: str) -> None:
    """Used before open (or after close): ConnectorNotOpen, saying what to call"""
    _skip_if_it_wraps_the_callers_connection(subject)
    app = App(connector=CONNECTORS[subject.name](subject.route))
    deferrer = app.configure_task("t")
    attempts = [asyncio.to_thread(deferrer.defer)]  # as a blocking script would
    if subject.is_async:
        attempts.append(deferrer.defer_async())
    for attempt in attempts:
        with pytest.raises(ConnectorNotOpen) as caught:
            await attempt
        message = str(caught.value)
        assert message.startswith(f"{subject.name} is not open: call ")
        assert "'app.open()'" in message
    await subject.call(app, "open")
    await subject.call(app, "close")
    with pytest.raises(ConnectorNotOpen):
        await asyncio.to_thread(deferrer.defer)


async def test_applies_the_schema_twice(subject: Subject, empty_dsn: str) -> None:
    """Applies the schema to an empty database, and again (idempotent)"""
    async with built(subject.name, subject.route_to(empty_dsn)) as connector:
        app = App(connector=connector)
        await subject.call(app, "open")
        try:
            await subject.call(app.schema_manager, "apply_schema")
            await subject.call(app.schema_manager, "apply_schema")
            assert await subject.call(app.job_manager, "status_counts") == []
            deferrer = app.configure_task("t")
            assert isinstance(await subject.call(deferrer, "defer"), int)
        finally:
            await subject.call(app, "close")


# -- blocking and async use -------------------------------------------------------


async def test_blocking_use_outside_an_event_loop(subject: Subject, dsn: str, db: Db) -> None:
    """Blocking use: `with app.open():`, `defer()`, `batch_defer()`"""
    _skip_if_it_wraps_the_callers_connection(subject)
    app = App(connector=CONNECTORS[subject.name](subject.route))
    deferrer = app.configure_task("t")

    def blocking_application() -> tuple[list[int], Status | None]:
        with app.open() as opened:
            assert opened is app
            first = deferrer.defer(n=1)
            rest = deferrer.batch_defer({"n": 2}, {"n": 3})
            return [first, *rest], app.job_manager.job_status(first)

    ids, status = await asyncio.to_thread(blocking_application)  # a thread: no running loop
    assert status is Status.TODO
    assert db("SELECT id, args->>'n' FROM pgqueue_jobs ORDER BY id") == list(
        zip(ids, ["1", "2", "3"])
    )
    with pytest.raises(ConnectorNotOpen):  # the block closed it
        await asyncio.to_thread(deferrer.defer)


async def test_async_use(subject: Subject, dsn: str, db: Db) -> None:
    """Async use: `async with app.open_async():`, `defer_async()`"""
    async with built(subject.name, subject.route) as connector:
        app = App(connector=connector)
        if subject.is_async:
            await _async_use(app, db)
        else:
            blocking = "is a blocking connector: use the methods"
            with pytest.raises(ConfigurationError, match=blocking):
                await app.open_async()
            with pytest.raises(ConfigurationError, match=blocking):
                await subject.app.configure_task("t").defer_async()
            subject.unsupported("blocking only: the `*_async` methods raise ConfigurationError")


async def _async_use(app: App, db: Db) -> None:
    async with app.open_async() as opened:
        assert opened is app
        job_id = await app.configure_task("t").defer_async(n=1)
    assert await app.open_async() is app  # awaitable as well
    assert await app.job_manager.job_status_async(job_id) is Status.TODO
    await app.close_async()
    assert db("SELECT id FROM pgqueue_jobs") == [(job_id,)]


def _skip_if_it_wraps_the_callers_connection(subject: Subject) -> None:
    """Opening and closing are the caller's for a driver (it wraps what the caller
    opened, see pgqueue_ref.db): the test's question does not arise."""
    __tracebackhide__ = True
    if not subject.connector.opens_connections:
        subject.skip_not_applicable(
            "wraps the connection the caller opened: opening and closing are the caller's"
        )


async def test_blocking_call_inside_its_running_loop_raises(subject: Subject, db: Db) -> None:
    """A blocking call inside the loop it was opened in raises SyncCallInAsyncContext, never hangs"""
    deferrer = subject.app.configure_task("t")
    if subject.is_async:
        with pytest.raises(SyncCallInAsyncContext) as caught:
            deferrer.defer()
        assert str(caught.value).endswith("use 'await task.defer_async(...)' there instead.")
        assert db("SELECT count(*) FROM pgqueue_jobs") == [(0,)]
    else:
        deferrer.defer()  # blocks this loop for one round trip, as any blocking I/O would
        assert db("SELECT count(*) FROM pgqueue_jobs") == [(1,)]
        subject.not_applicable("a blocking connector has no loop to wait for: the call just blocks")


# -- the worker -----------------------------------------------------------------


async def test_worker_runs_jobs_with_their_arguments(subject: Subject, db: Db) -> None:
    """Runs a worker: each job runs once, with its JSON arguments unchanged"""
    received: list[dict[str, Any]] = []

    @subject.app.task(name="work")
    async def work(**kwargs: Any) -> None:
        received.append(kwargs)

    await subject.batch_defer("work", {"n": 1}, ARGUMENTS)
    if subject.is_async:
        stats = await subject.app.run_worker_async(wait=False)
        assert stats.succeeded == 2
        assert sorted(received, key=len) == [{"n": 1}, ARGUMENTS]
        assert db("SELECT status, count(*) FROM pgqueue_jobs GROUP BY 1") == [("succeeded", 2)]
    else:
        _refuses_a_worker(subject)


async def test_listen_wakes_the_worker(subject: Subject) -> None:
    """LISTEN/NOTIFY wakes a waiting worker (its polling interval set to 60 s)"""
    if subject.is_async:
        await _notify_wakes_the_worker(subject)
    else:
        _refuses_a_worker(subject)


async def _notify_wakes_the_worker(subject: Subject) -> None:
    done = asyncio.Event()

    @subject.app.task(name="ping")
    async def ping() -> None:
        done.set()

    worker = subject.app.worker(polling_interval=60)
    running = asyncio.create_task(worker.run())
    await asyncio.wait_for(worker.listening.wait(), 5)
    await subject.defer_job("ping")
    await asyncio.wait_for(done.wait(), 5)  # polling is 60 s: only NOTIFY makes it in time
    worker.stop()
    await running


async def test_a_sync_task_defers_from_its_worker_thread(subject: Subject, db: Db) -> None:
    """A sync task defers (blocking) from its worker thread, through the app's loop"""

    @subject.app.task(name="child")
    def child() -> None: ...

    @subject.app.task(name="parent")
    def parent() -> None:
        child.defer()

    await subject.defer_job("parent")
    if subject.is_async:
        stats = await subject.app.run_worker_async(wait=False)
        assert stats.succeeded == 2
        assert db("SELECT task_name, status FROM pgqueue_jobs ORDER BY id") == [
            ("parent", "succeeded"),
            ("child", "succeeded"),
        ]
    else:
        _refuses_a_worker(subject)
