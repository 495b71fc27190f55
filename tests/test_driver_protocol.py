"""PgQueuer's driver protocol as the Queue face's extension point (issue 21).

The drivers here are what a PgQueuer user writes: a class with ``fetch``,
``execute``, ``add_listener`` (and ``remove_listener``) over a connection of
their choice, knowing nothing of pgqueue_ref's connector contract. They run
``Queries`` and a consumer (``PgQueuer.run``) on the real database. How each
of *our* drivers speaks the protocol is in the conformance suite
(``tests/conformance/test_driver_protocol.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest

from pgqueue_ref import PgQueuer, QueueExecutionMode
from pgqueue_ref.connectors.custom import ProtocolDriver, as_connector
from pgqueue_ref.connectors.driver import to_named
from pgqueue_ref.db import Driver
from pgqueue_ref.jobs import Job
from pgqueue_ref.queries import Queries


class PlainAsyncpgDriver:
    """A custom driver as written for PgQueuer: no base class, one asyncpg connection."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self.connection = connection
        self.lock = asyncio.Lock()
        self.statements: list[str] = []
        self.listeners: dict[Callable[[str], None], Any] = {}

    async def fetch(self, query: str, *args: object) -> list[dict[str, object]]:
        async with self.lock:
            self.statements.append(query)
            return [dict(row) for row in await self.connection.fetch(query, *args)]

    async def execute(self, query: str, *args: object) -> str:
        async with self.lock:
            self.statements.append(query)
            return str(await self.connection.execute(query, *args))

    async def add_listener(self, channel: str, callback: Callable[[str], None]) -> None:
        def relay(connection: object, pid: object, channel: object, payload: object) -> None:
            callback(str(payload))

        self.listeners[callback] = relay
        async with self.lock:
            await self.connection.add_listener(channel, relay)

    async def remove_listener(self, channel: str, callback: Callable[[str], None]) -> None:
        async with self.lock:
            await self.connection.remove_listener(channel, self.listeners.pop(callback))


class SubclassedDriver(Driver):
    """The other way PgQueuer users write one: subclass the protocol class, never
    calling its ``__init__``, and override ``fetch``, ``execute``, ``add_listener``."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self.plain = PlainAsyncpgDriver(connection)

    async def fetch(self, query: str, *args: object) -> list[dict[str, object]]:
        return await self.plain.fetch(query, *args)

    async def execute(self, query: str, *args: object) -> str:
        return await self.plain.execute(query, *args)

    async def add_listener(self, channel: str, callback: Callable[[str], None]) -> None:
        await self.plain.add_listener(channel, callback)

    async def remove_listener(self, channel: str, callback: Callable[[str], None]) -> None:
        await self.plain.remove_listener(channel, callback)


def test_to_named_is_to_numbered_backwards() -> None:
    assert to_named("SELECT $1::int + $2::int, $1, '100%'", (1, 2)) == (
        "SELECT %(p1)s::int + %(p2)s::int, %(p1)s, '100%%'",
        {"p1": 1, "p2": 2},
    )
    assert to_named("SELECT $$a$$, $tag$b$tag$", ()) == ("SELECT $$a$$, $tag$b$tag$", {})
    with pytest.raises(TypeError, match=r"the query uses \$2 but 1 argument\(s\) were given"):
        to_named("SELECT $1, $2", (1,))


def test_an_object_without_the_protocol_is_refused() -> None:
    with pytest.raises(TypeError, match="has neither our connector methods nor PgQueuer's"):
        as_connector(object())
    with pytest.raises(TypeError, match="got str"):
        PgQueuer("postgresql://nowhere")  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["plain object", "Driver subclass"])
async def test_a_custom_driver_runs_queries_and_a_consumer(dsn: str, kind: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        driver = (
            PlainAsyncpgDriver(connection)
            if kind == "plain object"
            else SubclassedDriver(connection)
        )
        queries = Queries(driver)  # type: ignore[arg-type]  # the plain one is structural
        ids = await queries.enqueue(["fetch"] * 3, [b"1", b"2", b"3"], [0, 0, 0])
        pgq = PgQueuer(driver)  # type: ignore[arg-type]
        if kind == "plain object":
            assert isinstance(pgq.connection, ProtocolDriver)
        else:
            assert pgq.connection is driver
        seen: list[bytes | None] = []

        @pgq.entrypoint("fetch")
        async def fetch(job: Job) -> None:
            seen.append(job.payload)

        stats = await pgq.run(mode=QueueExecutionMode.drain)
        assert sorted(seen) == [b"1", b"2", b"3"]
        assert stats.succeeded == 3
        rows = await connection.fetch(
            "SELECT id, status FROM pgqueue_jobs WHERE id = any($1::bigint[]) ORDER BY id", ids
        )
        assert [(row["id"], row["status"]) for row in rows] == [(i, "succeeded") for i in ids]
        plain = driver if isinstance(driver, PlainAsyncpgDriver) else driver.plain
        # Every statement went through the driver, in PgQueuer's $n style.
        assert any("FOR UPDATE SKIP LOCKED" in sql for sql in plain.statements)
        assert not any("%(" in sql for sql in plain.statements)
    finally:
        await connection.close()


async def test_a_custom_drivers_listener_wakes_the_consumer(dsn: str) -> None:
    """Continuous mode: the consumer LISTENs through add_listener, so an enqueue
    wakes it long before its next poll (an hour away here)."""
    connection = await asyncpg.connect(dsn)
    producer = await asyncpg.connect(dsn)
    try:
        driver = PlainAsyncpgDriver(connection)
        pgq = PgQueuer(driver)  # type: ignore[arg-type]
        done = asyncio.Event()

        @pgq.entrypoint("ping")
        async def ping(job: Job) -> None:
            done.set()

        import datetime

        running = asyncio.create_task(pgq.run(dequeue_timeout=datetime.timedelta(hours=1)))
        for _ in range(500):  # until its LISTEN is in place
            if driver.listeners:
                break
            await asyncio.sleep(0.01)
        assert driver.listeners, "the consumer never called add_listener"
        await asyncio.sleep(0.2)  # past the consumer's first look at the empty queue
        await Queries(PlainAsyncpgDriver(producer)).enqueue("ping", None)  # type: ignore[arg-type]
        await asyncio.wait_for(done.wait(), timeout=10)
        pgq.stop()
        await asyncio.wait_for(running, timeout=10)
        assert not driver.listeners  # remove_listener was called on the way out
    finally:
        await connection.close()
        await producer.close()


@pytest.mark.parametrize("kind", ["asyncpg", "psycopg"])
async def test_pgqueuers_own_drivers_run_our_consumer(dsn: str, kind: str) -> None:
    """PgQueuer 1.6's drivers are written against the protocol too: ours runs on them."""
    pgqueuer_db = pytest.importorskip("pgqueuer.db")  # the [bench] extra, in CI
    import psycopg

    if kind == "asyncpg":
        connection: Any = await asyncpg.connect(dsn)
        theirs = pgqueuer_db.AsyncpgDriver(connection)
    else:
        connection = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
        theirs = pgqueuer_db.PsycopgDriver(connection)
    try:
        async with theirs:
            ids = await Queries(theirs).enqueue(["fetch", "fetch"], [b"1", b"2"], [0, 0])
            pgq = PgQueuer(theirs)
            seen: list[int] = []

            @pgq.entrypoint("fetch")
            async def fetch(job: Job) -> None:
                seen.append(job.id)

            stats = await asyncio.wait_for(pgq.run(mode=QueueExecutionMode.drain), 30)
            assert sorted(seen) == ids and stats.succeeded == 2
    finally:
        await connection.close()
