"""pgqueue_ref.testing: the partition proxy and the timeline that notebook 14 and the
reliability tests use."""

from __future__ import annotations

import asyncio
import logging
import time

import psycopg
import pytest

import pgqueue_ref
from pgqueue_ref.testing import PartitionProxy, Timeline, upstream_of


def test_the_timeline_orders_events_and_times_them_from_a_zero() -> None:
    timeline = Timeline()
    zero = timeline.note("network", "cuts A off", at=100.0)
    timeline.note("B", "starts the job", at=103.25)
    timeline.note("A", "fenced itself", at=101.5)
    assert timeline.when("A", "fenced") == 101.5
    assert repr(timeline.table(zero)).splitlines() == [
        "when     who      what",
        "-------  -------  --------------",
        "+0.00 s  network  cuts A off",
        "+1.50 s  A        fenced itself",
        "+3.25 s  B        starts the job",
    ]
    with pytest.raises(LookupError, match="no event 'heals' of 'network'"):
        timeline.when("network", "heals")


async def test_wait_for_returns_the_events_time_or_times_out() -> None:
    timeline = Timeline()
    asyncio.get_running_loop().call_later(0.05, timeline.note, "A", "starts the job")
    assert await timeline.wait_for("A", "starts") == timeline.when("A", "starts the job")
    with pytest.raises(TimeoutError, match="no event 'ends' of 'A' within 0.1 s"):
        await timeline.wait_for("A", "ends", timeout=0.1)


def test_watching_notes_what_the_workers_log_about_fencing_and_only_that() -> None:
    app = pgqueue_ref.App(connector=pgqueue_ref.PsycopgConnector(conninfo=""))
    a, b = app.worker(name="A"), app.worker(name="AB")
    log = logging.getLogger("pgqueue_ref.worker")
    timeline = Timeline()
    with timeline.watching({"A": a, "B": b}):
        assert log.propagate is False  # the records stop at the timeline, not on stderr
        log.error("worker %s (id %s) fenced itself: no heartbeat got through", "A", 1)
        log.warning("worker %s (id %s): a heartbeat got through; claiming again", "AB", 2)
        log.warning("heartbeat failed: nothing a timeline shows")
    log.error("worker %s (id %s) fenced itself: after the block", "A", 1)
    assert log.propagate is True
    assert [(e.who, e.what) for e in timeline.events] == [
        ("A", "fenced itself: stops its jobs, claims nothing"),
        ("B", "a heartbeat got through: claims again"),
    ]


def test_dsn_for_keeps_the_form_of_the_dsn() -> None:
    proxy = PartitionProxy("db.example", 5432)
    proxy.port = 6000
    assert proxy.dsn_for("postgresql://u:p@db.example:5432/d?sslmode=disable") == (
        "postgresql://u:p@127.0.0.1:6000/d?sslmode=disable"
    )
    assert psycopg.conninfo.conninfo_to_dict(
        proxy.dsn_for("host=db.example port=5432 dbname=d")
    ) == {"host": "127.0.0.1", "port": "6000", "dbname": "d"}
    assert upstream_of("host=db.example port=5433 dbname=d") == ("db.example", 5433)


async def test_a_partition_hangs_queries_and_a_heal_lets_them_through(dsn: str) -> None:
    async with PartitionProxy(*upstream_of(dsn)) as proxy:
        conn = await psycopg.AsyncConnection.connect(proxy.dsn_for(dsn), autocommit=True)
        async with conn:
            assert await (await conn.execute("SELECT 1")).fetchone() == (1,)
            proxy.partition()
            query = asyncio.create_task(conn.execute("SELECT 2"))
            await asyncio.sleep(0.5)
            assert not query.done()  # hangs: no error, no answer
            proxy.heal()
            started = time.monotonic()
            assert await (await asyncio.wait_for(query, 10)).fetchone() == (2,)
            assert time.monotonic() - started < 5
