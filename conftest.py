"""One PostgreSQL server for the whole pytest run, notebooks included.

pytest fixtures do not reach notebook kernels, but the environment does: the
server's DSN goes into PGQUEUE_REF_DSN before any test or kernel starts, and
every notebook's setup cell makes its own fresh database on it
(``pgqueue_ref.embedded.scratch_database()``). Set PGQUEUE_REF_DSN yourself
to test against a server of your own instead.
"""

from __future__ import annotations

import os

import pytest

from pgqueue_ref.embedded import DSN_ENV, EmbeddedPostgres

_server: EmbeddedPostgres | None = None


def pytest_sessionstart(session: pytest.Session) -> None:
    global _server
    if os.environ.get(DSN_ENV):
        return
    _server = EmbeddedPostgres(fast=True)  # starts it; fsync off: a throwaway server
    os.environ[DSN_ENV] = _server.dsn_url


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    global _server
    if _server is not None:
        _server.stop()
        os.environ.pop(DSN_ENV, None)
        _server = None
