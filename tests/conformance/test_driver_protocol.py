"""PgQueuer's driver protocol on every Queue-face driver, tested once for all.

PgQueuer's drivers are public objects with ``fetch``, ``execute``, ``notify``,
``add_listener``/``remove_listener`` and ``async with`` (``pgqueuer.db.Driver``;
its ``SyncDriver`` has only ``fetch``), and code written for PgQueuer calls them,
or wraps them in a driver of its own. The App face's connectors are not
PgQueuer drivers: the question does not arise for them. A driver written from
scratch against the protocol is in ``tests/test_driver_protocol.py``. The first
line of each docstring is its row in ``docs/connectors.md``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from pgqueue_ref import PgQueuer, QueueExecutionMode
from pgqueue_ref.connectors.custom import ProtocolDriver
from pgqueue_ref.db import Driver, SyncPsycopgDriver
from pgqueue_ref.jobs import Job
from pgqueue_ref.queries import Queries

from .conftest import Subject

APP_FACE = "an App-face connector, not a PgQueuer driver"


def _driver(subject: Subject) -> Driver:
    """The subject as an async PgQueuer driver, or skip with the reason it is not one."""
    if isinstance(subject.connector, SyncPsycopgDriver):
        subject.skip_not_applicable("PgQueuer's SyncDriver has only fetch (tested above)")
    if not isinstance(subject.connector, Driver):
        subject.skip_not_applicable(APP_FACE)
    return subject.connector


async def test_driver_fetch_takes_numbered_placeholders(subject: Subject) -> None:
    """Driver protocol: `fetch(query, *args)` with `$1, $2`, rows as dicts (`SyncDriver` too)"""
    query = "SELECT $1::int + $2::int AS sum, $3::text AS word, '100%' AS percent"
    if isinstance(subject.connector, SyncPsycopgDriver):
        fetch = subject.connector.fetch
        rows = await asyncio.to_thread(fetch, query, 1, 2, "two")
    elif isinstance(subject.connector, Driver):
        rows = await subject.connector.fetch(query, 1, 2, "two")
    else:
        subject.skip_not_applicable(APP_FACE)
    assert rows == [{"sum": 3, "word": "two", "percent": "100%"}]


async def test_driver_execute_runs_a_statement(subject: Subject) -> None:
    """Driver protocol: `execute(query, *args)` runs a statement; `notify(channel, payload)`"""
    driver = _driver(subject)
    assert await driver.execute("CREATE TABLE protocol_test (n int)") == ""
    await driver.execute("INSERT INTO protocol_test VALUES ($1::int), ($2::int)", 4, 5)
    assert await driver.fetch("SELECT sum(n)::int AS total FROM protocol_test") == [{"total": 9}]
    await driver.notify("nobody_listens", "hello")  # a NOTIFY with no listener is not an error


async def test_driver_add_listener_hears_notify(subject: Subject) -> None:
    """Driver protocol: `add_listener` hears each NOTIFY; `remove_listener` and `async with` end it"""
    driver = _driver(subject)
    heard: list[str] = []
    arrived = asyncio.Event()
    loop = asyncio.get_running_loop()

    def callback(payload: str) -> None:
        heard.append(payload)
        loop.call_soon_threadsafe(arrived.set)

    async with driver as entered:
        assert entered is driver and not driver.shutdown.is_set()
        await driver.add_listener("protocol_channel", callback)  # returns once LISTEN is in place
        await driver.notify("protocol_channel", "first")
        await asyncio.wait_for(arrived.wait(), timeout=10)
        assert heard == ["first"]
        await driver.remove_listener("protocol_channel", callback)
        arrived.clear()
        await driver.notify("protocol_channel", "unheard")
        await asyncio.sleep(0.3)
        assert heard == ["first"]
        await driver.add_listener("protocol_channel", callback)
    assert driver.shutdown.is_set()  # and leaving the block removed the listener
    await driver.notify("protocol_channel", "after the block")
    await asyncio.sleep(0.3)
    assert heard == ["first"]


class Delegating:
    """A driver as a PgQueuer user writes one, knowing only the protocol: here it
    forwards to another driver (the subject), counting what it was asked to run."""

    def __init__(self, inner: Driver) -> None:
        self.inner = inner
        self.calls: list[str] = []

    async def fetch(self, query: str, *args: object) -> list[dict[str, Any]]:
        self.calls.append("fetch")
        return await self.inner.fetch(query, *args)

    async def execute(self, query: str, *args: object) -> str:
        self.calls.append("execute")
        return await self.inner.execute(query, *args)

    async def add_listener(self, channel: str, callback: Callable[[str], None]) -> None:
        self.calls.append("add_listener")
        await self.inner.add_listener(channel, callback)

    async def remove_listener(self, channel: str, callback: Callable[[str], None]) -> None:
        await self.inner.remove_listener(channel, callback)


async def test_a_driver_written_against_the_protocol_runs_a_consumer(subject: Subject) -> None:
    """Driver protocol: a driver written only against it (over this one) runs `PgQueuer.run`"""
    custom = Delegating(_driver(subject))
    ids = await Queries(custom).enqueue(["fetch"] * 4, [b"1", b"2", b"3", b"4"], [0] * 4)
    pgq = PgQueuer(custom)
    assert isinstance(pgq.connection, ProtocolDriver)
    seen: list[int] = []

    @pgq.entrypoint("fetch")
    async def fetch(job: Job) -> None:
        seen.append(job.id)

    stats = await pgq.run(mode=QueueExecutionMode.drain)
    assert sorted(seen) == ids and stats.succeeded == 4
    assert "fetch" in custom.calls  # the claim and the outcomes went through the protocol
    statuses = await custom.fetch("SELECT DISTINCT status FROM pgqueue_jobs")
    assert statuses == [{"status": "succeeded"}]
