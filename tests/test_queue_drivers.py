"""The Queue face's drivers: their own quirks.

What every driver does the same way (enqueue, dedupe keys, statistics,
draining, enqueueing inside the caller's transaction on the one-connection
drivers) is tested once for all in tests/conformance/test_queue_face.py;
that asyncpg needs no autocommit flag shows there too, as AsyncpgDriver's
enqueues are seen from other connections at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import psycopg
import psycopg_pool
import pytest

from pgqueue_ref import PgQueuer, QueueExecutionMode
from pgqueue_ref.db import (
    AsyncpgDriver,
    PsycopgDriver,
    PsycopgPoolDriver,
    SyncPsycopgDriver,
)
from pgqueue_ref.exceptions import (
    AutocommitRequired,
    ConfigurationError,
    SyncConnectorConfigurationError,
)
from pgqueue_ref.jobs import Face
from pgqueue_ref.manager import JobManager
from pgqueue_ref.queries import Queries
from pgqueue_ref.worker import Worker

ASYNC_AUTOCOMMIT_MESSAGE = (
    "the psycopg connection must be in autocommit mode (autocommit=True), and this one is not: "
    "its statements would wait in a transaction that nobody commits, so consumers would never "
    "see the jobs. Fix: connect with 'await psycopg.AsyncConnection.connect(dsn, "
    "autocommit=True)', or call 'await conn.set_autocommit(True)' before handing it over."
)


@pytest.fixture
async def aconn(dsn: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        yield conn


@pytest.fixture
async def apg(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(dsn)
    yield connection
    await connection.close()


# -- autocommit ---------------------------------------------------------------


async def test_psycopg_driver_refuses_a_connection_without_autocommit(dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        with pytest.raises(AutocommitRequired) as caught:
            PsycopgDriver(conn)
        assert str(caught.value) == ASYNC_AUTOCOMMIT_MESSAGE
        with pytest.raises(AutocommitRequired, match=r"autocommit=True"):
            PgQueuer.from_psycopg_connection(conn)


async def test_autocommit_switched_off_later_is_refused_before_anything_is_sent(
    aconn: psycopg.AsyncConnection[Any], db: Any
) -> None:
    queries = Queries(PsycopgDriver(aconn))
    pgq = PgQueuer.from_psycopg_connection(aconn)
    await aconn.set_autocommit(False)
    with pytest.raises(AutocommitRequired) as caught:
        await queries.enqueue("fetch", b"x")
    assert str(caught.value).startswith(
        "the driver's psycopg connection is no longer in autocommit mode: it was switched off "
        "after the driver was built"
    )
    assert "reconnect with 'await psycopg.AsyncConnection.connect(dsn, autocommit=True)'" in str(
        caught.value
    )
    # Nothing was sent: no transaction left open, no job anywhere.
    assert aconn.info.transaction_status is psycopg.pq.TransactionStatus.IDLE
    assert db("SELECT count(*) FROM pgqueue_jobs") == [(0,)]
    # A consumer built the PgQueuer way meets the same refusal, not a silent stall.
    with pytest.raises(AutocommitRequired, match="no longer in autocommit mode"):
        await pgq.run(mode=QueueExecutionMode.drain)
    # Back on, the same driver works, and a transaction of one's own keeps autocommit on.
    await aconn.set_autocommit(True)
    async with aconn.transaction():
        assert len(await queries.enqueue("fetch", b"x")) == 1
    assert db("SELECT count(*) FROM pgqueue_jobs") == [(1,)]


def test_sync_driver_refuses_autocommit_switched_off_later(dsn: str, db: Any) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        queries = Queries(SyncPsycopgDriver(conn))
        conn.autocommit = False
        with pytest.raises(AutocommitRequired, match="set 'conn.autocommit = True'"):
            queries.enqueue("fetch", b"x")
        assert conn.info.transaction_status is psycopg.pq.TransactionStatus.IDLE
    assert db("SELECT count(*) FROM pgqueue_jobs") == [(0,)]


def test_sync_psycopg_driver_refuses_a_connection_without_autocommit(dsn: str) -> None:
    with psycopg.connect(dsn) as conn, pytest.raises(AutocommitRequired) as caught:
        SyncPsycopgDriver(conn)
    assert str(caught.value).endswith(
        "Fix: connect with 'psycopg.connect(dsn, autocommit=True)', or set "
        "'conn.autocommit = True' before handing it over."
    )


async def test_drivers_name_the_driver_for_the_other_kind_of_connection(
    dsn: str, aconn: psycopg.AsyncConnection[Any], apg: asyncpg.Connection
) -> None:
    with (
        psycopg.connect(dsn, autocommit=True) as sync_conn,
        pytest.raises(TypeError, match="use SyncPsycopgDriver"),
    ):
        PsycopgDriver(sync_conn)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="use PsycopgDriver"):
        SyncPsycopgDriver(aconn)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="For a pool, use AsyncpgPoolDriver"):
        AsyncpgDriver(aconn)


# -- the sync driver enqueues only ---------------------------------------------


def test_sync_driver_refuses_any_consumer_use(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        driver = SyncPsycopgDriver(conn)
        expected = (
            "SyncPsycopgDriver can only defer jobs: a worker needs an async driver (it waits on "
            "LISTEN and runs jobs concurrently). Enqueue with it, and consume with "
            "PgQueuer.from_psycopg_connection(await psycopg.AsyncConnection.connect(dsn, "
            "autocommit=True)) or another async driver."
        )
        with pytest.raises(SyncConnectorConfigurationError) as caught:
            PgQueuer(driver)
        assert str(caught.value) == expected
        with pytest.raises(SyncConnectorConfigurationError):
            Worker(manager=JobManager(driver), face=Face.QUEUE, handler=PgQueuerStub())


class PgQueuerStub:
    def prepare(self, job: Any) -> Any:
        raise AssertionError("never reached")


# -- pools: LISTEN holds a connection of its own ---------------------------------


@contextlib.asynccontextmanager
async def pgqueuer_on_a_pool_of_one(dsn: str, driver: str) -> AsyncIterator[PgQueuer]:
    if driver == "AsyncpgPoolDriver":
        async with asyncpg.create_pool(dsn, min_size=1, max_size=1) as pool:
            yield PgQueuer.from_asyncpg_pool(pool)
    else:
        async with psycopg_pool.AsyncConnectionPool(dsn, min_size=1, max_size=1) as ppool:
            yield PgQueuer.from_psycopg_pool(ppool)


@pytest.mark.parametrize("driver", ["AsyncpgPoolDriver", "PsycopgPoolDriver"])
async def test_pool_too_small_for_listen(dsn: str, driver: str) -> None:
    async with pgqueuer_on_a_pool_of_one(dsn, driver) as pgq:
        message = (
            rf"{driver}'s pool has max_size=1, but a worker's LISTEN holds one connection for "
            r"as long as it runs and queries need another: use max_size >= 2\."
        )
        with pytest.raises(ConfigurationError, match=message):
            await pgq.run()  # at once, not in the background
        with pytest.raises(ConfigurationError, match=message):
            await pgq.connection.listen_async("pgqueue_ref", lambda payload: None)
        # Draining does not LISTEN: one connection is enough for it.
        ran: list[int] = []

        @pgq.entrypoint("e")
        async def e(job: Any) -> None:
            ran.append(job.id)

        await pgq.queries.enqueue("e", b"")
        await pgq.run(mode=QueueExecutionMode.drain)
        assert len(ran) == 1


async def test_psycopg_pool_listen_gives_its_connection_back_as_it_found_it(dsn: str) -> None:
    # Pooled connections without autocommit (psycopg_pool's default).
    async with psycopg_pool.AsyncConnectionPool(dsn, min_size=2, max_size=2) as pool:
        driver = PsycopgPoolDriver(pool)
        got: list[str] = []
        ready = asyncio.Event()
        listening = asyncio.create_task(driver.listen_async("chan", got.append, ready.set))
        await asyncio.wait_for(ready.wait(), 5)
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as other:
            await other.execute("NOTIFY chan, 'hello'")
        for _ in range(50):
            if got:
                break
            await asyncio.sleep(0.1)
        assert got == ["hello"]
        listening.cancel()
        with pytest.raises(asyncio.CancelledError):
            await listening
        async with pool.connection() as a, pool.connection() as b:
            for conn in (a, b):
                assert conn.autocommit is False
                cursor = await conn.execute("SELECT count(*) FROM pg_listening_channels()")
                assert await cursor.fetchone() == (0,)


# -- one connection: serialised, and LISTEN that does not starve queries ----------


async def test_asyncpg_driver_serialises_concurrent_queries(apg: asyncpg.Connection) -> None:
    driver = AsyncpgDriver(apg)
    # Unserialised, asyncpg fails the second: "another operation is in progress".
    rows = await asyncio.gather(
        *(
            driver.fetch_all_async("SELECT %(n)s::int AS n, pg_sleep(0.01)", {"n": n})
            for n in range(20)
        )
    )
    assert [r[0]["n"] for r in rows] == list(range(20))


async def test_psycopg_driver_listen_does_not_hold_the_connection(
    aconn: psycopg.AsyncConnection[Any], dsn: str
) -> None:
    driver = PsycopgDriver(aconn)
    got: list[str] = []
    ready = asyncio.Event()
    listening = asyncio.create_task(driver.listen_async("chan", got.append, ready.set))
    await asyncio.wait_for(ready.wait(), 5)
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as other:
        # Queries on the listening connection run at once. PgQueuer's driver sits in
        # notifies(timeout=1.0) holding the connection: each would wait up to a second.
        async def queries_and_notifications() -> None:
            for n in range(20):
                assert await driver.fetch_all_async("SELECT %(n)s::int AS n", {"n": n}) == [
                    {"n": n}
                ]
                await other.execute("SELECT pg_notify('chan', %s)", [f"during-{n}"])

        started = time.monotonic()
        await asyncio.wait_for(queries_and_notifications(), 10)  # not stuck behind LISTEN
        assert time.monotonic() - started < 5  # 20 round trips; ~20 s if each waited 1 s
        # Idle: a notification wakes the listener by itself, no query needed.
        await asyncio.sleep(0.2)
        await other.execute("NOTIFY chan, 'idle'")
        for _ in range(50):
            if "idle" in got:
                break
            await asyncio.sleep(0.1)
    assert got == [f"during-{n}" for n in range(20)] + ["idle"]
    listening.cancel()
    with pytest.raises(asyncio.CancelledError):
        await listening
    cursor = await aconn.execute("SELECT count(*) FROM pg_listening_channels()")
    assert await cursor.fetchone() == (0,)  # UNLISTENed on the way out


async def test_psycopg_driver_listen_leaves_your_own_notify_handlers_working(
    aconn: psycopg.AsyncConnection[Any], dsn: str
) -> None:
    driver = PsycopgDriver(aconn)
    mine: list[str] = []
    aconn.add_notify_handler(lambda n: mine.append(f"{n.channel}:{n.payload}"))
    await aconn.execute("LISTEN other")
    ready = asyncio.Event()
    listening = asyncio.create_task(driver.listen_async("chan", lambda p: None, ready.set))
    await asyncio.wait_for(ready.wait(), 5)
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as other:
        await other.execute("NOTIFY other, 'yours'")
    for _ in range(50):
        if mine:
            break
        await asyncio.sleep(0.1)
    assert mine == ["other:yours"]
    listening.cancel()
    with pytest.raises(asyncio.CancelledError):
        await listening
