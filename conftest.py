"""One PostgreSQL server for the whole pytest run, notebooks included.

pytest fixtures do not reach notebook kernels, but the environment does: the
server's DSN goes into PGQUEUE_REF_DSN before any test or kernel starts, and
every notebook's setup cell makes its own fresh database on it
(``pgqueue_ref.embedded.scratch_database()``). Set PGQUEUE_REF_DSN yourself
to test against a server of your own instead.
"""

from __future__ import annotations

import os

import psycopg
import pytest

from pgqueue_ref.embedded import DSN_ENV, EmbeddedPostgres

_server: EmbeddedPostgres | None = None


def pytest_sessionstart(session: pytest.Session) -> None:
    global _server
    if os.environ.get(DSN_ENV):
        return
    _server = EmbeddedPostgres(fast=True)  # starts it; fsync off: a throwaway server
    os.environ[DSN_ENV] = _server.dsn_url


def pytest_report_header(config: pytest.Config) -> str:
    """Which PostgreSQL the run tests, at the top of its output (and so of CI's log)."""
    with psycopg.connect(os.environ[DSN_ENV]) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    where = f"embedded, from {_server.bindir}" if _server else f"{DSN_ENV} from the environment"
    return f"PostgreSQL {row[0] if row else '?'} ({where})"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    global _server
    if _server is not None:
        _server.stop()
        os.environ.pop(DSN_ENV, None)
        _server = None
