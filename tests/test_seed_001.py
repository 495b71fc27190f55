"""Seed 001, "Instantiate your connector": each example of the page as written
(``procrastinate`` renamed ``pgqueue_ref``), with the test server's connection
values in place of the page's placeholders, then what the page says it does.

What the page says of every connector (async ones run in sync and async code,
sync ones only defer) is tested on all of them in tests/conformance.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from typing import Any

import pytest

from pgqueue_ref.exceptions import SyncConnectorConfigurationError

Db = Callable[..., list[tuple[Any, ...]]]


def test_five_connectors_two_async_three_that_only_defer() -> None:
    import pgqueue_ref
    from pgqueue_ref.connectors import require_async
    from pgqueue_ref.contrib.sqlalchemy import SQLAlchemyPsycopg2Connector

    for connector in (pgqueue_ref.PsycopgConnector(), pgqueue_ref.AiopgConnector()):
        assert require_async(connector, worker=True) is connector
    for sync_connector in (
        pgqueue_ref.SyncPsycopgConnector(),
        pgqueue_ref.Psycopg2Connector(),
        SQLAlchemyPsycopg2Connector(),
    ):
        with pytest.raises(SyncConnectorConfigurationError, match="can only defer jobs"):
            require_async(sync_connector, worker=True)


async def test_environment(libpq_env: dict[str, str], db: Db) -> None:
    # $ export PGHOST=... PGPORT=... (libpq_env), and then:
    import pgqueue_ref

    app = pgqueue_ref.App(connector=pgqueue_ref.PsycopgConnector())

    async with app.open_async():
        await app.configure_task("t").defer_async()
    assert db("SELECT count(*) FROM pgqueue_jobs") == [(1,)]


MYAPP = """
import pgqueue_ref
app = pgqueue_ref.App(connector=pgqueue_ref.PsycopgConnector())
with app.open():
    print(app.configure_task("t").defer())
"""


def test_environment_just_for_the_process(pg: dict[str, str], db: Db) -> None:
    # $ export PGHOST=my.database.com   # Either export the variables in your shell
    # $ PGPORT=5433 python -m myapp     # Or define the variables just for your process
    exported = {
        **os.environ,
        "PGHOST": pg["host"],
        "PGUSER": pg["user"],
        "PGDATABASE": pg["dbname"],
    }
    ran = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(MYAPP)],
        env={**exported, "PGPORT": pg["port"]},
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 0, ran.stderr
    assert db("SELECT id FROM pgqueue_jobs") == [(int(ran.stdout),)]


async def test_data_source_name(pg: dict[str, str], db: Db) -> None:
    import pgqueue_ref

    app = pgqueue_ref.App(
        connector=pgqueue_ref.PsycopgConnector(
            conninfo=f"postgres://{pg['user']}:password@{pg['host']}:{pg['port']}/{pg['dbname']}"
        )
    )
    async with app.open_async():
        await app.configure_task("t").defer_async()
    assert db("SELECT count(*) FROM pgqueue_jobs") == [(1,)]


async def test_connection_arguments(pg: dict[str, str], db: Db) -> None:
    import pgqueue_ref

    connector = pgqueue_ref.PsycopgConnector(
        kwargs={
            "dbname": pg["dbname"],
            "user": pg["user"],  # the page writes "user"="user": a syntax error in Python
            "password": "password",
            "host": pg["host"],
            "port": pg["port"],  # not on the page: the test server is not on 5432
        }
    )
    async with pgqueue_ref.App(connector=connector).open_async() as app:
        await app.configure_task("t").defer_async()
    assert db("SELECT count(*) FROM pgqueue_jobs") == [(1,)]


async def test_other_arguments_go_to_the_async_pool(dsn: str) -> None:
    import pgqueue_ref

    connector = pgqueue_ref.PsycopgConnector(conninfo=dsn, min_size=2, max_size=4, max_idle=60)
    async with pgqueue_ref.App(connector=connector).open_async():
        pool = connector.pool  # a psycopg_pool.AsyncConnectionPool
        assert (pool.min_size, pool.max_size, pool.max_idle) == (2, 4, 60)


def test_other_arguments_go_to_the_sync_pool(dsn: str) -> None:
    import pgqueue_ref

    connector = pgqueue_ref.SyncPsycopgConnector(conninfo=dsn, min_size=2, max_size=4, max_idle=60)
    with pgqueue_ref.App(connector=connector).open():
        pool = connector.pool  # a psycopg_pool.ConnectionPool
        assert (pool.min_size, pool.max_size, pool.max_idle) == (2, 4, 60)
