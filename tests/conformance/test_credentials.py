"""Credentials: a wrong password is refused clearly, and never repeated."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

import pgqueue_ref
from pgqueue_ref.exceptions import ConnectionFailed

from .conftest import Subject, built
from .queue_drivers import Route

# -- a wrong password ----------------------------------------------------------------

ROLE, PASSWORD, WRONG = "pgqueue_secret_user", "the-right-Passw0rd", "wrong-Passw0rd-1234"


@pytest.fixture(scope="module")
def password_role(server_dsn: str) -> Iterator[None]:
    """A role that must log in with a password (the embedded server trusts everyone else)."""
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        hba_file = conn.execute("SHOW hba_file").fetchone()[0]  # type: ignore[index]
        if not os.access(hba_file, os.W_OK):
            pytest.skip(
                f"cannot edit {hba_file}: this test needs the embedded server (unset PGQUEUE_REF_DSN)"
            )
        conn.execute(f"DROP ROLE IF EXISTS {ROLE}")
        conn.execute(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}'")
        hba = Path(hba_file)
        original = hba.read_text()
        # The first matching line wins: this role, and only it, must give its password.
        hba.write_text(f"host all {ROLE} 127.0.0.1/32 scram-sha-256\n{original}")
        conn.execute("SELECT pg_reload_conf()")
    try:
        yield
    finally:
        hba.write_text(original)
        with psycopg.connect(server_dsn, autocommit=True) as conn:
            conn.execute("SELECT pg_reload_conf()")


async def test_wrong_password_names_host_and_port_and_never_the_password(
    subject: Subject, dsn: str, password_role: None, caplog: pytest.LogCaptureFixture
) -> None:
    """A wrong password: ConnectionFailed naming host and port, the password nowhere"""
    if not subject.connector.opens_connections:
        subject.skip_not_applicable("the caller connects: its driver reports a wrong password")
    if subject.pooled:
        subject.skip_not_applicable(
            "the test's PgBouncer trusts its clients (`auth_type = trust`): it checks no "
            "password, and logs in to the server as the users of its own `auth_file`"
        )
    params = conninfo_to_dict(dsn)
    host, port = params["host"], params["port"]
    wrong = f"postgresql://{ROLE}:{WRONG}@{host}:{port}/{params['dbname']}"
    caplog.set_level(logging.DEBUG)
    async with built(subject.name, Route(wrong)) as connector:
        app = pgqueue_ref.App(connector=connector)
        with pytest.raises(ConnectionFailed) as caught:
            if isinstance(connector, pgqueue_ref.AsyncConnector):
                await asyncio.wait_for(app.open_async(), 20)
            else:
                await asyncio.wait_for(asyncio.to_thread(app.open), 20)
    message = str(caught.value)
    assert f'"{host}", port {port}' in message or f"{host}:{port}" in message, message
    assert "password authentication failed" in message
    everything = message + repr(caught.value.__cause__) + caplog.text
    assert WRONG not in everything and PASSWORD not in everything


async def test_the_right_password_works(dsn: str, password_role: None) -> None:
    params = conninfo_to_dict(dsn)
    right = f"postgresql://{ROLE}:{PASSWORD}@{params['host']}:{params['port']}/{params['dbname']}"
    app = pgqueue_ref.App(connector=pgqueue_ref.PsycopgConnector(conninfo=right))
    async with app.open_async():  # the rule above really checks passwords: this one passes
        pass
