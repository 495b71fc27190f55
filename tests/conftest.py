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

TEMPLATE = "pgqueue_ref_template"
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
