"""``Queries``: PgQueuer's enqueue and statistics, async and blocking, on the shared table."""

from __future__ import annotations

import contextlib
import datetime
import inspect
from collections.abc import AsyncIterator, Callable
from typing import Any

import psycopg
import pytest

from pgqueue_ref import PgQueuer, QueueExecutionMode
from pgqueue_ref.db import PsycopgDriver, SyncPsycopgDriver
from pgqueue_ref.exceptions import AlreadyEnqueued, DuplicateJobError, InvalidChannel
from pgqueue_ref.queries import Queries, QueueStatistics, SyncQueries

Db = Callable[..., list[tuple[Any, ...]]]


@pytest.fixture
async def queries(dsn: str) -> AsyncIterator[Queries]:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        yield Queries(PsycopgDriver(conn))


async def test_enqueue_one_job_returns_its_id(queries: Queries, db: Db) -> None:
    ids = await queries.enqueue("fetch", b"payload", priority=3)
    assert db(
        "SELECT id, face, queue, task_name, payload, priority, status, scheduled_at FROM pgqueue_jobs"
    ) == [(ids[0], "queue", "default", "fetch", b"payload", 3, "todo", None)]


async def test_enqueue_a_batch_in_one_statement(queries: Queries, db: Db) -> None:
    ids = await queries.enqueue(["a", "b", "c"], [b"1", None, b"3"], [0, 5, 0])
    assert db("SELECT id, task_name, payload, priority FROM pgqueue_jobs ORDER BY id") == [
        (ids[0], "a", b"1", 0),
        (ids[1], "b", None, 5),
        (ids[2], "c", b"3", 0),
    ]
    assert db("SELECT count(DISTINCT xmin::text) FROM pgqueue_jobs") == [(1,)]  # one transaction


async def test_a_single_value_applies_to_every_job_of_a_batch(queries: Queries, db: Db) -> None:
    await queries.enqueue(["a", "b"], b"same", 7)
    assert db("SELECT payload, priority FROM pgqueue_jobs") == [(b"same", 7), (b"same", 7)]


async def test_enqueue_arguments_are_checked_with_a_message(queries: Queries) -> None:
    with pytest.raises(ValueError, match="got 2 entrypoints but 3 values for payload"):
        await queries.enqueue(["a", "b"], [b"1", b"2", b"3"], [0, 0])
    with pytest.raises(TypeError, match="one entrypoint but a list for payload"):
        await queries.enqueue("a", [b"1"])
    with pytest.raises(TypeError, match=r"payload of type str: the Queue face stores bytes"):
        await queries.enqueue("a", "text")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="execute_after=30: expected a datetime.timedelta"):
        await queries.enqueue("a", b"", execute_after=30)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="on_conflict='ignore': expected 'raise' or 'skip'"):
        await queries.enqueue("a", b"", on_conflict="ignore")  # type: ignore[call-overload]


async def test_execute_after_delays_the_job(queries: Queries, db: Db) -> None:
    pgq = PgQueuer(queries.driver)
    ran: list[bytes | None] = []

    @pgq.entrypoint("later")
    async def later(job: Any) -> None:
        ran.append(job.payload)

    await queries.enqueue("later", b"in an hour", execute_after=datetime.timedelta(hours=1))
    await queries.enqueue("later", b"now")
    await pgq.run(mode=QueueExecutionMode.drain)
    assert ran == [b"now"]
    assert db(
        "SELECT scheduled_at > now() + interval '59 minutes' FROM pgqueue_jobs WHERE status = 'todo'"
    ) == [(True,)]


# -- dedupe keys ------------------------------------------------------------------


async def test_a_taken_dedupe_key_raises_duplicate_job_error(queries: Queries, db: Db) -> None:
    await queries.enqueue("sync", b"", dedupe_key="user-1")
    with pytest.raises(DuplicateJobError) as caught:
        await queries.enqueue(["sync", "sync"], [b"", b""], [0, 0], dedupe_key=["user-2", "user-1"])
    assert isinstance(caught.value, AlreadyEnqueued)  # the App face's name for it
    assert str(caught.value) == (
        "dedupe_key 'user-2', 'user-1': a waiting job already holds one of them (or an earlier "
        "job of the same batch does), so nothing was enqueued. Pass on_conflict='skip' to "
        "enqueue the others and get None for the duplicates."
    )
    assert caught.value.dedupe_key == ["user-2", "user-1"]
    assert db("SELECT queueing_lock FROM pgqueue_jobs") == [("user-1",)]


async def test_on_conflict_skip_leaves_duplicates_out(queries: Queries, db: Db) -> None:
    (first,) = await queries.enqueue("sync", b"", dedupe_key="user-1")
    ids = await queries.enqueue(
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


async def test_a_dedupe_key_is_free_again_once_its_job_has_run(queries: Queries) -> None:
    pgq = PgQueuer(queries.driver)
    pgq.entrypoint("sync")(_noop)
    await queries.enqueue("sync", b"", dedupe_key="user-1")
    await pgq.run(mode=QueueExecutionMode.drain)
    assert len(await queries.enqueue("sync", b"", dedupe_key="user-1")) == 1


async def _noop(job: Any) -> None:
    pass


# -- statistics and schema ------------------------------------------------------------


async def test_queue_size_and_status_counts(queries: Queries, app: Any) -> None:
    await queries.enqueue(["a", "a", "b"], [b""] * 3, [0, 0, 1])
    await app.configure_task("a").defer_async()  # an App-face job: not counted here
    assert await queries.queue_size() == [
        QueueStatistics(entrypoint="a", priority=0, status="todo", count=2),
        QueueStatistics(entrypoint="b", priority=1, status="todo", count=1),
    ]
    pgq = PgQueuer(queries.driver)
    pgq.entrypoint("b")(_noop)
    await pgq.run(mode=QueueExecutionMode.drain)
    assert await queries.status_counts() == {"succeeded": 1, "todo": 2}


async def test_install_is_idempotent(empty_dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(empty_dsn, autocommit=True) as conn:
        queries = Queries(PsycopgDriver(conn))
        await queries.install()
        await queries.install()
        assert len(await queries.enqueue("fetch", b"")) == 1


# -- the blocking twin --------------------------------------------------------------


def test_queries_on_a_sync_driver_are_plain_calls(empty_dsn: str) -> None:
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        queries = Queries(SyncPsycopgDriver(conn))
        assert type(queries) is SyncQueries
        queries.install()
        ids = queries.enqueue("fetch", b"payload")
        assert not inspect.isawaitable(ids)
        assert ids == [1]
        assert queries.enqueue("fetch", b"", dedupe_key="k", on_conflict="skip") == [2]
        assert queries.enqueue("fetch", b"", dedupe_key="k", on_conflict="skip") == [None]
        with pytest.raises(DuplicateJobError):
            queries.enqueue("fetch", b"", dedupe_key="k")
        assert queries.queue_size() == [QueueStatistics("fetch", 0, "todo", 2)]
        assert queries.status_counts() == {"todo": 2}


# -- channels --------------------------------------------------------------------------


async def test_enqueue_notifies_its_channel_when_it_commits(dsn: str) -> None:
    async with (
        await psycopg.AsyncConnection.connect(dsn, autocommit=True) as listener,
        await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn,
    ):
        await listener.execute("LISTEN orders")
        await listener.execute("LISTEN pgqueue_ref")
        on_orders = Queries(PsycopgDriver(conn), channel="orders")
        await on_orders.enqueue(["a", "b"], [b"", b""], [0, 0])
        await Queries(PsycopgDriver(conn)).enqueue("c", b"")  # the default channel
        with contextlib.suppress(ZeroDivisionError):
            async with conn.transaction():
                await on_orders.enqueue("d", b"")
                raise ZeroDivisionError  # rolled back: no notification at all
        received = [
            (n.channel, n.payload) async for n in listener.notifies(timeout=0.5, stop_after=10)
        ]
    # One per statement, not per job: the engine's channel, then the Queries' own.
    assert received == [
        ("pgqueue_ref", "queue:default"),
        ("orders", "queue:default"),
        ("pgqueue_ref", "queue:default"),
    ]


def test_a_bad_channel_is_refused_at_construction(dsn: str) -> None:
    with (
        psycopg.connect(dsn, autocommit=True) as conn,
        pytest.raises(InvalidChannel, match=r"channel 'orders; DROP' is not a valid"),
    ):
        Queries(SyncPsycopgDriver(conn), channel="orders; DROP")
