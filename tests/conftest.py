"""Fixtures: a fresh database per test, cloned from a template with the schema.

``CREATE DATABASE ... TEMPLATE`` copies files instead of replaying DDL, so a
fresh, schema'd database costs a few tens of milliseconds.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

import pgqueue_ref
from pgqueue_ref.embedded import DSN_ENV, _with_dbname
from pgqueue_ref.pooler import PgBouncer, find_pgbouncer
from pgqueue_ref.sql import SCHEMA

#: One per pytest-xdist worker (``gw0``, ``gw1``...): the workers share the server.
TEMPLATE = f"pgqueue_ref_template{os.environ.get('PYTEST_XDIST_WORKER', '')}"
#: Set (CI sets it) to make a missing pgbouncer a failure instead of a skip.
REQUIRE_PGBOUNCER_ENV = "PGQUEUE_REF_REQUIRE_PGBOUNCER"


@pytest.fixture(scope="session")
def server_dsn() -> str:
    return os.environ[DSN_ENV]


@pytest.fixture(scope="session")
def template(server_dsn: str) -> str:
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(TEMPLATE))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEMPLATE)))
    with psycopg.connect(_with_dbname(server_dsn, TEMPLATE), autocommit=True) as conn:
        conn.execute(SCHEMA)
    return TEMPLATE


@pytest.fixture
def dsn(server_dsn: str, template: str) -> Iterator[str]:
    """A fresh database with the schema applied, dropped after the test."""
    name = f"test_{secrets.token_hex(4)}"
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        )
    yield _with_dbname(server_dsn, name)
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture(scope="session")
def pgbouncer(server_dsn: str) -> Iterator[PgBouncer]:
    """A real PgBouncer, transaction mode, in front of the test server."""
    if find_pgbouncer() is None:
        message = "pgbouncer is not installed (apt-get install pgbouncer)"
        if os.environ.get(REQUIRE_PGBOUNCER_ENV):
            pytest.fail(f"{REQUIRE_PGBOUNCER_ENV} is set, but {message}")
        pytest.skip(message)
    with PgBouncer(server_dsn) as bouncer:
        yield bouncer


@pytest.fixture
def pooled_dsn(dsn: str, pgbouncer: PgBouncer) -> str:
    """The fresh database of ``dsn``, through PgBouncer in transaction mode."""
    return pgbouncer.dsn_for(dsn)


@pytest.fixture
def empty_dsn(server_dsn: str) -> Iterator[str]:
    """A fresh database without the schema."""
    name = f"empty_{secrets.token_hex(4)}"
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield _with_dbname(server_dsn, name)
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture
async def app(dsn: str) -> AsyncIterator[pgqueue_ref.App]:
    """An App on PsycopgConnector, open, on a fresh database."""
    app = pgqueue_ref.App(connector=pgqueue_ref.PsycopgConnector(conninfo=dsn))
    async with app.open_async():
        yield app


@pytest.fixture
def db(dsn: str) -> Callable[..., list[tuple[Any, ...]]]:
    """``db("SELECT ...", *params)``: the rows, read directly, bypassing the library under test."""

    def query(statement: str, *params: object) -> list[tuple[Any, ...]]:
        with psycopg.connect(dsn, autocommit=True) as conn:
            cursor = conn.execute(statement, params)  # type: ignore[call-overload]
            return cursor.fetchall() if cursor.description else []

    return query


@pytest.fixture
def pg(dsn: str) -> dict[str, str]:
    """The fresh database's connection parameters as libpq keywords: host, port, user, dbname."""
    params = conninfo_to_dict(dsn)
    return {key: str(params[key]) for key in ("host", "port", "user", "dbname")}


@pytest.fixture
def libpq_env(pg: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The fresh database in PGHOST, PGPORT, PGUSER and PGDATABASE, as a shell would export them."""
    for key in ("host", "port", "user"):
        monkeypatch.setenv(f"PG{key.upper()}", pg[key])
    monkeypatch.setenv("PGDATABASE", pg["dbname"])
    return pg


# -- the dashboard's tests (tests/test_dashboard.py, tests/browser) -----------------------

#: What the seeded tasks store, with markup in it that the dashboard must show as text.
HOSTILE_ERROR = "<script>window.__pwned = 1</script> & <b>bold</b>"
HOSTILE_ARG = '"><script>window.__pwned = 2</script>'


async def _seed_dashboard(dsn: str) -> dict[str, int]:
    app = pgqueue_ref.App(connector=pgqueue_ref.PsycopgConnector(conninfo=dsn))

    @app.task(name="mail.send", queue="emails")
    async def send(to: str) -> None:
        return None

    @app.task(name="report<i>", queue="reports")
    async def report(title: str) -> None:
        raise ValueError(HOSTILE_ERROR)

    async with app.open_async():
        await send.batch_defer_async({"to": "ann"}, {"to": "bob"}, {"to": "cy"})
        failed = await report.defer_async(title=HOSTILE_ARG)
        await app.run_worker_async(wait=False)  # three succeed, the report fails
        waiting = await send.defer_async(to="dee")
        scheduled = await send.configure(schedule_in={"hours": 1}).defer_async(to="eve")
        running = await report.defer_async(title="long")
    with psycopg.connect(dsn, autocommit=True) as conn:  # a job that a worker holds
        row = conn.execute(
            "WITH w AS (INSERT INTO pgqueue_workers (name) VALUES ('host:4242') RETURNING id) "
            "UPDATE pgqueue_jobs SET status = 'doing', attempts = 1, started_at = now(), "
            "worker_id = (SELECT id FROM w) WHERE id = %s RETURNING worker_id",
            (running,),
        ).fetchone()
    assert row is not None
    return {"failed": failed, "waiting": waiting, "scheduled": scheduled, "running": running,
            "worker": row[0]}  # fmt: skip


@pytest.fixture
def dashboard_jobs(dsn: str) -> dict[str, int]:
    """``dsn``'s database with a mix of jobs: in queue 'emails', three succeeded, one
    waiting and one scheduled in an hour (task 'mail.send'); in queue 'reports', one
    failed with :data:`HOSTILE_ERROR` and :data:`HOSTILE_ARG` and one running on worker
    'host:4242' (task 'report<i>'). Their ids, by those names."""
    import asyncio

    return asyncio.run(_seed_dashboard(dsn))
