"""``Queries``: what its arguments mean (one value or a list, delays, dedupe keys
freed by running, channels), on one driver.

What every driver and connector does the same way (enqueue one and a batch,
dedupe keys, statistics, install, the blocking twin ``SyncQueries``) is tested
once for all in tests/conformance/test_queue_face.py.
"""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import AsyncIterator, Callable
from typing import Any

import psycopg
import pytest
from conformance.queue_drivers import IDLE_CONSUMER

from pgqueue_ref import PgQueuer, QueueExecutionMode
from pgqueue_ref.db import PsycopgDriver, SyncPsycopgDriver
from pgqueue_ref.exceptions import InvalidChannel
from pgqueue_ref.queries import Queries

Db = Callable[..., list[tuple[Any, ...]]]


@pytest.fixture
async def queries(dsn: str) -> AsyncIterator[Queries]:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        yield Queries(PsycopgDriver(conn))


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


async def test_a_dedupe_key_is_free_again_once_its_job_has_run(queries: Queries) -> None:
    pgq = PgQueuer(queries.driver)
    pgq.entrypoint("sync")(_noop)
    await queries.enqueue("sync", b"", dedupe_key="user-1")
    await pgq.run(mode=QueueExecutionMode.drain)
    assert len(await queries.enqueue("sync", b"", dedupe_key="user-1")) == 1


async def _noop(job: Any) -> None:
    pass


@pytest.mark.parametrize(
    "options",
    [
        {"priority": 7, "execute_after": datetime.timedelta(hours=1), "headers": {"trace": "t-1"}},
        {},  # the NULLs: no delay, no headers
    ],
    ids=["every option", "none"],
)
async def test_one_job_and_a_list_of_one_write_the_same_row(
    queries: Queries, db: Db, options: dict[str, Any]
) -> None:
    # One entrypoint given as a string goes through enqueue_job (plain values), a list
    # through enqueue_jobs (an array per column): both must write the same columns.
    assert queries._enqueue_call("e", b"", 0, None, "k", "raise").query.name == "enqueue_job"
    assert queries._enqueue_call(["e"], [b""], 0, None, "k", "raise").query.name == "enqueue_jobs"
    (one,) = await queries.enqueue("e", b"\x00\x01", dedupe_key="k1", **options)
    (listed,) = await queries.enqueue(["e"], [b"\x00\x01"], dedupe_key=["k2"], **options)
    columns = (
        "face, queue, task_name, args, payload, priority, status, headers, "
        "round(extract(epoch FROM scheduled_at - created_at))"
    )
    rows = db(f"SELECT {columns} FROM pgqueue_jobs WHERE id = ANY(%s) ORDER BY id", [one, listed])
    assert rows[0] == rows[1]
    expected = (7, "todo", {"trace": "t-1"}, 3600) if options else (0, "todo", None, None)
    assert rows[0][4:] == (b"\x00\x01", *expected)
    keys = db(
        "SELECT queueing_lock FROM pgqueue_jobs WHERE id = ANY(%s) ORDER BY id", [one, listed]
    )
    assert keys == [("k1",), ("k2",)]


# -- channels --------------------------------------------------------------------------


async def test_enqueue_notifies_its_channel_when_it_commits(dsn: str, db: Db) -> None:
    db(IDLE_CONSUMER)  # a consumer sleeps on the default channel
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


async def test_enqueue_notifies_the_default_channel_only_while_a_consumer_sleeps(
    dsn: str, db: Db
) -> None:
    # NOTIFY serialises commits (docs/architecture.md, "Wake-ups"): with every consumer
    # busy, producers on the default channel send none. A custom channel's consumers
    # keep no marks, so a Queries on that channel notifies it every time.
    async with (
        await psycopg.AsyncConnection.connect(dsn, autocommit=True) as listener,
        await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn,
    ):
        await listener.execute("LISTEN orders")
        await listener.execute("LISTEN pgqueue_ref")
        await Queries(PsycopgDriver(conn)).enqueue("a", b"")
        await Queries(PsycopgDriver(conn), channel="orders").enqueue("b", b"")
        received = [
            (n.channel, n.payload) async for n in listener.notifies(timeout=0.5, stop_after=10)
        ]
        assert received == [("orders", "queue:default")]
        db(IDLE_CONSUMER)
        await Queries(PsycopgDriver(conn)).enqueue("c", b"")
        received = [
            (n.channel, n.payload) async for n in listener.notifies(timeout=0.5, stop_after=10)
        ]
        assert received == [("pgqueue_ref", "queue:default")]


def test_a_bad_channel_is_refused_at_construction(dsn: str) -> None:
    with (
        psycopg.connect(dsn, autocommit=True) as conn,
        pytest.raises(InvalidChannel, match=r"channel 'orders; DROP' is not a valid"),
    ):
        Queries(SyncPsycopgDriver(conn), channel="orders; DROP")
