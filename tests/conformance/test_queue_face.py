"""The Queue face (PgQueuer's API) on every driver and connector, tested once for all.

``Queries(x)`` takes any of them: on an async one its methods are coroutines,
on a blocking one (``SyncQueries``) plain calls, run here in a thread as a
blocking application would call them. ``PgQueuer`` consumes, so it takes only
an async one and refuses a blocking one with a named error. The first line
of each docstring is its row in ``docs/connectors.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import psycopg
import pytest

from pgqueue_ref import App, PgQueuer, QueueExecutionMode
from pgqueue_ref.exceptions import (
    AlreadyEnqueued,
    DuplicateJobError,
    SyncConnectorConfigurationError,
)
from pgqueue_ref.queries import Queries, QueueStatistics, SyncQueries
from pgqueue_ref.queuer import Context

from .conftest import WRAPPED_CONNECTIONS, Subject, built
from .queue_drivers import IDLE_CONSUMER

Db = Callable[..., list[tuple[Any, ...]]]


async def call(subject: Subject, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """A Queries method: awaited on an async subject, called in a thread on a blocking one."""
    if subject.is_async:
        return await method(*args, **kwargs)
    return await asyncio.to_thread(method, *args, **kwargs)


# -- Queries: enqueue ------------------------------------------------------------


async def test_queries_is_async_or_plain_calls_as_its_driver(subject: Subject) -> None:
    """Queue face: `Queries(x)` has coroutines on an async driver, plain calls on a blocking one"""
    # Type checkers take Queries(x) for a Queries; on a blocking x it is a SyncQueries.
    queries: Queries | SyncQueries = Queries(subject.connector)
    if subject.is_async:
        assert type(queries) is Queries
        pending = queries.enqueue("fetch", b"")
        assert inspect.isawaitable(pending)
        assert await pending == [1]
    else:
        assert type(queries) is SyncQueries
        ids = await asyncio.to_thread(queries.enqueue, "fetch", b"")
        assert not inspect.isawaitable(ids)  # PgQueuer 1.6 returned a coroutine here
        assert ids == [1]


async def test_enqueue_one_job_returns_its_id(subject: Subject, db: Db) -> None:
    """Queue face: enqueue one job: its id, and one row with its entrypoint, payload and priority"""
    ids = await call(subject, Queries(subject.connector).enqueue, "fetch", b"payload", priority=3)
    assert db(
        "SELECT id, face, queue, task_name, payload, priority, status, scheduled_at FROM pgqueue_jobs"
    ) == [(ids[0], "queue", "default", "fetch", b"payload", 3, "todo", None)]


async def test_enqueue_a_batch_in_one_statement(subject: Subject, db: Db) -> None:
    """Queue face: enqueue a batch in one statement, ids in order, a NULL payload kept"""
    queries = Queries(subject.connector)
    ids = await call(subject, queries.enqueue, ["a", "b", "c"], [b"1", None, b"3"], [0, 5, 0])
    assert db("SELECT id, task_name, payload, priority FROM pgqueue_jobs ORDER BY id") == [
        (ids[0], "a", b"1", 0),
        (ids[1], "b", None, 5),
        (ids[2], "c", b"3", 0),
    ]
    assert db("SELECT count(DISTINCT xmin::text) FROM pgqueue_jobs") == [(1,)]  # one transaction


async def test_a_taken_dedupe_key_raises_duplicate_job_error(subject: Subject, db: Db) -> None:
    """Queue face: a taken dedupe key raises DuplicateJobError, naming it, and enqueues nothing"""
    queries = Queries(subject.connector)
    await call(subject, queries.enqueue, "sync", b"", dedupe_key="user-1")
    with pytest.raises(DuplicateJobError) as caught:
        await call(
            subject,
            queries.enqueue,
            ["sync", "sync"],
            [b"", b""],
            [0, 0],
            dedupe_key=["user-2", "user-1"],
        )
    assert isinstance(caught.value, AlreadyEnqueued)  # the App face's name for it
    assert caught.value.sqlstate == "23505"
    assert str(caught.value) == (
        "dedupe_key 'user-2', 'user-1': a waiting job already holds one of them (or an earlier "
        "job of the same batch does), so nothing was enqueued. Pass on_conflict='skip' to "
        "enqueue the others and get None for the duplicates."
    )
    assert caught.value.dedupe_key == ["user-2", "user-1"]
    assert db("SELECT queueing_lock FROM pgqueue_jobs") == [("user-1",)]


async def test_on_conflict_skip_leaves_duplicates_out(subject: Subject, db: Db) -> None:
    """Queue face: `on_conflict="skip"` enqueues the others, None for each duplicate"""
    queries = Queries(subject.connector)
    (first,) = await call(subject, queries.enqueue, "sync", b"", dedupe_key="user-1")
    ids = await call(
        subject,
        queries.enqueue,
        ["sync"] * 5,
        [b"a", b"b", b"c", b"d", b"e"],
        [0] * 5,
        dedupe_key=["user-1", "user-2", None, "user-2", None],
        on_conflict="skip",
    )
    assert ids[0] is None and ids[3] is None  # taken by a waiting job / earlier in the batch
    assert db("SELECT id, payload FROM pgqueue_jobs WHERE id <> %s ORDER BY id", first) == [
        (ids[1], b"b"),
        (ids[2], b"c"),
        (ids[4], b"e"),
    ]


async def test_enqueue_joins_the_callers_transaction(subject: Subject, db: Db, dsn: str) -> None:
    """Queue face: enqueue inside the caller's transaction: its commit keeps the job, its rollback discards it"""
    if subject.name not in WRAPPED_CONNECTIONS:
        subject.skip_unsupported(
            "opens connections of its own: `Queries` takes no caller's connection (the App "
            "face's `configure(connection=...)` does, on the connectors that take one)"
            if subject.connector.opens_connections
            else "a pool: each statement runs on whichever connection is free, outside the "
            "caller's transaction (AsyncpgDriver or PsycopgDriver on that connection joins it)"
        )
    caller = WRAPPED_CONNECTIONS[subject.name](subject.connector)
    queries = Queries(subject.connector)
    db("CREATE TABLE orders (id integer PRIMARY KEY)")
    db(IDLE_CONSUMER)  # enqueues notify only while a consumer sleeps
    async with _listening(dsn) as received:
        with contextlib.suppress(Rollback):
            async with caller.transaction():
                await caller.execute("INSERT INTO orders (id) VALUES (1)")
                await call(subject, queries.enqueue, ["ship", "bill"], [b"1", b"2"], [0, 0])
                assert db("SELECT count(*) FROM pgqueue_jobs") == [(0,)]  # not committed yet
                raise Rollback
        assert await received(0.3) == []  # rolled back: no NOTIFY either
        assert db("SELECT (SELECT count(*) FROM pgqueue_jobs), (SELECT count(*) FROM orders)") == [
            (0, 0)
        ]
        async with caller.transaction():
            await caller.execute("INSERT INTO orders (id) VALUES (2)")
            (job_id,) = await call(subject, queries.enqueue, "ship", b"order 2")
            assert db("SELECT count(*) FROM pgqueue_jobs") == [(0,)]
            assert await received(0.3) == []  # NOTIFY waits for the commit
        assert await received(2) == ["queue:default"]
    assert db("SELECT j.id, j.payload, o.id FROM pgqueue_jobs j, orders o") == [
        (job_id, b"order 2", 2)
    ]


class Rollback(Exception):
    """Raised inside the caller's transaction block to roll it back."""


@contextlib.asynccontextmanager
async def _listening(dsn: str) -> AsyncIterator[Callable[[float], Any]]:
    """``received(wait)``: the payloads NOTIFY sent on the default channel within ``wait`` s."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as listener:
        await listener.execute("LISTEN pgqueue_ref")

        async def received(wait: float) -> list[str]:
            return [n.payload async for n in listener.notifies(timeout=wait)]

        yield received


# -- Queries: statistics and schema ---------------------------------------------


async def test_queue_size_and_status_counts(subject: Subject) -> None:
    """Queue face: `queue_size()` and `status_counts()` count Queue-face jobs only"""
    queries = Queries(subject.connector)
    await call(subject, queries.enqueue, ["a", "a", "b"], [b""] * 3, [0, 0, 1])
    await subject.defer_job("a")  # an App-face job of the same name: not counted here
    assert await call(subject, queries.queue_size) == [
        QueueStatistics(entrypoint="a", priority=0, status="todo", count=2),
        QueueStatistics(entrypoint="b", priority=1, status="todo", count=1),
    ]
    assert await call(subject, queries.status_counts) == {"todo": 3}


async def test_install_applies_the_schema_twice(subject: Subject, empty_dsn: str) -> None:
    """Queue face: `install()` applies the schema to an empty database, and again (idempotent)"""
    async with built(subject.name, subject.route_to(empty_dsn)) as connector:
        app = App(connector=connector)  # opens a connector; a driver is open already
        await subject.call(app, "open")
        try:
            queries = Queries(connector)
            await call(subject, queries.install)
            await call(subject, queries.install)
            assert await call(subject, queries.enqueue, "fetch", b"") == [1]
        finally:
            await subject.call(app, "close")


# -- PgQueuer: consuming ----------------------------------------------------------


async def test_pgqueuer_drain_runs_each_job_once(subject: Subject, db: Db) -> None:
    """Queue face: `PgQueuer.run(mode=drain)` runs each job of its entrypoints once, then returns"""
    queries = Queries(subject.connector)
    ids = await call(
        subject, queries.enqueue, ["fetch", "store", "store", "other"], [b"a", b"b", None, b""], 0
    )
    await subject.defer_job("fetch")  # an App-face job of the same name: never the Queue face's
    if subject.is_async:
        await _drains(subject, ids, db)
    else:
        with pytest.raises(SyncConnectorConfigurationError) as caught:
            PgQueuer(subject.connector)
        assert str(caught.value).startswith(
            f"{subject.name} can only defer jobs: a worker needs an async "
        )
        assert db("SELECT DISTINCT status FROM pgqueue_jobs") == [("todo",)]  # nothing ran
        subject.unsupported("enqueue only: `PgQueuer(...)` raises SyncConnectorConfigurationError")


async def _drains(subject: Subject, ids: list[int], db: Db) -> None:
    cache: dict[int, bytes | None] = {}
    pgq = PgQueuer(subject.connector, resources={"cache": cache})
    fetched: list[tuple[int, bytes | None]] = []

    @pgq.entrypoint("fetch")
    async def fetch(job: Any) -> None:
        fetched.append((job.id, job.payload))

    @pgq.entrypoint("store")
    def store(job: Any, context: Context) -> None:  # sync: runs in a worker thread
        assert threading.current_thread() is not threading.main_thread()
        context.resources["cache"][job.id] = job.payload

    stats = await asyncio.wait_for(pgq.run(mode=QueueExecutionMode.drain), 30)
    assert (stats.succeeded, stats.failed) == (3, 0)
    assert fetched == [(ids[0], b"a")]
    assert cache == {ids[1]: b"b", ids[2]: None}  # the very mapping given, never a copy
    # "other" has no entrypoint here and the App-face job is not the Queue face's: both wait.
    assert db("SELECT face, task_name, status FROM pgqueue_jobs ORDER BY id") == [
        ("queue", "fetch", "succeeded"),
        ("queue", "store", "succeeded"),
        ("queue", "store", "succeeded"),
        ("queue", "other", "todo"),
        ("app", "fetch", "todo"),
    ]
    assert await pgq.queries.queue_size() == [QueueStatistics("other", 0, "todo", 1)]
    assert await pgq.queries.status_counts() == {"succeeded": 3, "todo": 1}
