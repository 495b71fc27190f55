"""Behind a real PgBouncer in transaction mode: the deaf LISTEN said, ``listen_dsn=``
bringing the wake-up back, prepared statements named with their setting.

The ``pgbouncer`` fixture starts Debian's PgBouncer in front of the test server
(a skip where it is not installed; CI installs it and sets
``PGQUEUE_REF_REQUIRE_PGBOUNCER``, which makes a missing one a failure).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import psycopg
import psycopg_pool
import pytest

import pgqueue_ref
import pgqueue_ref.pooler
from pgqueue_ref import App
from pgqueue_ref.connectors import AsyncConnector
from pgqueue_ref.db import AsyncpgDriver, AsyncpgPoolDriver, PsycopgDriver, PsycopgPoolDriver
from pgqueue_ref.exceptions import ConnectionFailed, PreparedStatementError
from pgqueue_ref.pooler import PgBouncer, find_pgbouncer, pgbouncer_version
from pgqueue_ref.sql import QUERIES, SCHEMA

# Each subject: an async connector or driver whose statements go through the pooler
# and whose LISTEN goes to `listen_dsn` (None: through the pooler too). Drivers wrap
# what the test opens and closes, so each factory gives a context manager.


@asynccontextmanager
async def made(connector: AsyncConnector) -> AsyncIterator[AsyncConnector]:
    yield connector


@asynccontextmanager
async def closing(
    connector: AsyncConnector, close: Callable[[], Awaitable[Any]]
) -> AsyncIterator[AsyncConnector]:
    try:
        yield connector
    finally:
        await close()


async def asyncpg_driver(pooled: str, listen: str | None) -> AbstractAsyncContextManager[Any]:
    conn = await asyncpg.connect(pooled, statement_cache_size=0)
    return closing(AsyncpgDriver(conn, listen_dsn=listen), conn.close)


async def asyncpg_pool_driver(pooled: str, listen: str | None) -> AbstractAsyncContextManager[Any]:
    pool = await asyncpg.create_pool(pooled, statement_cache_size=0, min_size=1, max_size=4)
    return closing(AsyncpgPoolDriver(pool, listen_dsn=listen), pool.close)


async def psycopg_driver(pooled: str, listen: str | None) -> AbstractAsyncContextManager[Any]:
    conn = await psycopg.AsyncConnection.connect(pooled, autocommit=True, prepare_threshold=None)
    return closing(PsycopgDriver(conn, listen_dsn=listen), conn.close)


async def psycopg_pool_driver(pooled: str, listen: str | None) -> AbstractAsyncContextManager[Any]:
    pool = psycopg_pool.AsyncConnectionPool(
        pooled, kwargs={"autocommit": True, "prepare_threshold": None}, max_size=4, open=False
    )
    await pool.open(wait=True)
    return closing(PsycopgPoolDriver(pool, listen_dsn=listen), pool.close)


async def psycopg_connector(pooled: str, listen: str | None) -> AbstractAsyncContextManager[Any]:
    return made(
        pgqueue_ref.PsycopgConnector(
            conninfo=pooled, kwargs={"prepare_threshold": None}, listen_dsn=listen
        )
    )


async def asyncpg_connector(pooled: str, listen: str | None) -> AbstractAsyncContextManager[Any]:
    return made(pgqueue_ref.AsyncpgConnector(dsn=pooled, statement_cache_size=0, listen_dsn=listen))


async def aiopg_connector(pooled: str, listen: str | None) -> AbstractAsyncContextManager[Any]:
    return made(pgqueue_ref.AiopgConnector(dsn=pooled, listen_dsn=listen))


# name -> async factory(pooled DSN, listen DSN) of a context manager giving the subject,
# each with the one setting its driver needs behind a transaction pooler.
SUBJECTS: dict[str, Callable[[str, str | None], Awaitable[AbstractAsyncContextManager[Any]]]] = {
    "PsycopgConnector": psycopg_connector,
    "AsyncpgConnector": asyncpg_connector,
    "AiopgConnector": aiopg_connector,
    "AsyncpgDriver": asyncpg_driver,
    "AsyncpgPoolDriver": asyncpg_pool_driver,
    "PsycopgDriver": psycopg_driver,
    "PsycopgPoolDriver": psycopg_pool_driver,
}


async def run_jobs_one_by_one(
    connector: AsyncConnector, jobs: int, *, polling_interval: float, until_listening: bool
) -> tuple[pgqueue_ref.Worker, list[float]]:
    """Defer ``jobs`` jobs one at a time to an idle worker; how long each took to start."""
    app = App(connector=connector)
    started: dict[int, float] = {}

    @app.task(name="stamp")
    async def stamp(i: int) -> None:
        started[i] = time.perf_counter()

    async with app.open_async():
        worker = app.worker(polling_interval=polling_interval, listen_check_timeout=1.0)
        running = asyncio.create_task(worker.run())
        try:
            if until_listening:
                await asyncio.wait_for(worker.listening.wait(), 10)
            else:
                await asyncio.sleep(1.5)  # the check's second has passed
            waits = []
            for i in range(jobs):
                deferred = time.perf_counter()
                await stamp.defer_async(i=i)
                async with asyncio.timeout(polling_interval + 5):
                    while i not in started:
                        await asyncio.sleep(0.001)
                waits.append(started[i] - deferred)
        finally:
            worker.stop()
            await running
    return worker, waits


@pytest.mark.parametrize("name", list(SUBJECTS))
async def test_listen_dsn_wakes_an_idle_worker_behind_the_pooler(
    name: str, pooled_dsn: str, dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with await SUBJECTS[name](pooled_dsn, dsn) as connector:
        # Polling every 60 s: a job that starts sooner was woken by a notification.
        worker, waits = await run_jobs_one_by_one(
            connector, 10, polling_interval=60, until_listening=True
        )
    assert worker.stats.succeeded == 10
    assert max(waits) < 1.0, waits
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


@pytest.mark.parametrize("name", ["PsycopgConnector", "AsyncpgConnector", "AiopgConnector"])
async def test_a_deaf_listen_is_said_once_and_jobs_still_run(
    name: str, pooled_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with await SUBJECTS[name](pooled_dsn, None) as connector:
        with caplog.at_level(logging.WARNING, logger="pgqueue_ref"):
            worker, _ = await run_jobs_one_by_one(
                connector, 3, polling_interval=0.3, until_listening=False
            )
    assert not worker.listening.is_set()
    assert worker.stats.succeeded == 3  # found by polling
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "LISTEN on channel 'pgqueue_ref' hears nothing" in warnings[0]
    assert "transaction pooler" in warnings[0] and "listen_dsn=" in warnings[0]


async def test_a_listen_dsn_through_the_same_pooler_is_said_not_hung(
    pooled_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with await SUBJECTS["PsycopgConnector"](pooled_dsn, pooled_dsn) as connector:
        with caplog.at_level(logging.WARNING, logger="pgqueue_ref"):
            worker, _ = await run_jobs_one_by_one(
                connector, 1, polling_interval=0.3, until_listening=False
            )
    assert not worker.listening.is_set()
    assert "hears nothing" in caplog.text


@pytest.mark.parametrize(
    ("make", "setting"),
    [
        (lambda dsn: pgqueue_ref.PsycopgConnector(conninfo=dsn), '"prepare_threshold": None'),
        (lambda dsn: pgqueue_ref.AsyncpgConnector(dsn=dsn), "statement_cache_size=0"),
    ],
    ids=["psycopg", "asyncpg"],
)
async def test_prepared_statements_behind_the_pooler_name_the_setting(
    make: Callable[[str], AsyncConnector], setting: str, pooled_dsn: str
) -> None:
    app = App(connector=make(pooled_dsn))

    @app.task(name="noop")
    async def noop(i: int) -> None: ...

    async with app.open_async():
        # Concurrent defers spread over the pool's connections, and PgBouncer
        # hands each transaction whichever server connection is free.
        with pytest.raises(PreparedStatementError) as caught:
            for _ in range(100):
                await asyncio.gather(*(noop.defer_async(i=i) for i in range(8)))
    message = str(caught.value)
    assert caught.value.sqlstate in ("26000", "42P05")
    assert "transaction pooler" in message and setting in message, message


async def test_a_listen_dsn_that_cannot_connect_stops_the_worker_naming_where(
    pooled_dsn: str,
) -> None:
    connector = pgqueue_ref.AsyncpgConnector(
        dsn=pooled_dsn,
        statement_cache_size=0,
        listen_dsn="postgresql://postgres:sekrit@127.0.0.1:1/nowhere",
    )
    app = App(connector=connector)
    async with app.open_async():
        with pytest.raises(ConnectionFailed) as caught:
            await asyncio.wait_for(app.run_worker_async(), 30)
    assert str(caught.value).startswith("listen_dsn cannot connect: ")
    assert "127.0.0.1:1" in str(caught.value)
    assert "sekrit" not in str(caught.value)


def test_no_statement_relies_on_session_state() -> None:
    """Behind a transaction pooler, each transaction may get another server connection:
    nothing of ours may leave state on one for the next (SET, session advisory locks,
    temporary tables, prepared statements by name). Settings for one transaction
    (``set_config(..., true)``, which is SET LOCAL) end with it, and are fine."""
    texts = [query.sql for query in QUERIES.values()] + [SCHEMA]
    code = [re.sub(r"--[^\n]*", "", text) for text in texts]  # comments may hold a ';'
    first_words = {
        part.split()[0].upper() for text in code for part in text.split(";") if part.strip()
    }
    assert {"INSERT", "SELECT", "UPDATE", "WITH"} <= first_words  # the split found statements
    assert first_words & {"SET", "RESET", "PREPARE", "DEALLOCATE", "LISTEN", "DISCARD"} == set()
    anywhere = re.compile(
        r"\bpg_(try_)?advisory_lock(_shared)?\s*\(|\bCREATE\s+(GLOBAL\s+|LOCAL\s+)?TEMP"
        r"|\bSET\s+SESSION\b",
        re.IGNORECASE,
    )
    assert [m.group(0) for text in texts for m in anywhere.finditer(text)] == []
    settings = re.findall(r"set_config\(([^)]*)\)", " ".join(texts))
    assert settings, "the claim sets synchronous_commit for its own transaction"
    assert all(args.replace(" ", "").endswith(",true") for args in settings), settings


def test_show_pools_names_each_database_a_client_reached(
    pgbouncer: pgqueue_ref.pooler.PgBouncer, pooled_dsn: str, dsn: str
) -> None:
    """What the conformance suite's PgBouncer topology checks: the pooler carried it."""
    dbname = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
    assert dbname not in {pool["database"] for pool in pgbouncer.show("POOLS")}
    with psycopg.connect(pooled_dsn, prepare_threshold=None) as conn:
        conn.execute("SELECT 1")
    (pool,) = [pool for pool in pgbouncer.show("POOLS") if pool["database"] == dbname]
    assert pool["pool_mode"] == "transaction"
    assert pool["sv_idle"] + pool["sv_used"] + pool["sv_active"] >= 1  # a server connection


def test_the_kit_pooler_turns_prepared_statement_tracking_off_where_it_exists(
    pgbouncer: PgBouncer, tmp_path: Path
) -> None:
    assert pgbouncer.version >= (1, 0) and pgbouncer.version == pgbouncer_version(
        find_pgbouncer() or ""
    )
    config = pgbouncer.config_path.read_text()
    tracked = "max_prepared_statements = 0" in config
    assert tracked == (pgbouncer.version >= (1, 21))  # 1.18 refuses settings it does not know
    fake = tmp_path / "pgbouncer"
    fake.write_text("#!/bin/sh\necho 'PgBouncer 1.24.1'\necho 'libevent 2.1.12-stable'\n")
    fake.chmod(0o755)
    assert pgbouncer_version(str(fake)) == (1, 24, 1)
