"""Driver errors become ours in one place; here against real drivers' errors."""

from __future__ import annotations

import psycopg
import pytest

from pgqueue_ref import exceptions
from pgqueue_ref.exceptions import (
    SQLSTATE_CLASSES,
    AlreadyEnqueued,
    ConnectionFailed,
    ConnectorException,
    translate,
)


def test_tree_in_docstring_lists_every_exception() -> None:
    doc = exceptions.__doc__ or ""
    for name in exceptions.__all__:
        obj = getattr(exceptions, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert name in doc, name


def test_queueing_lock_violation_is_already_enqueued(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        insert = "INSERT INTO pgqueue_jobs (task_name, queueing_lock) VALUES ('t', 'only-one')"
        conn.execute(insert)
        with pytest.raises(psycopg.errors.UniqueViolation) as caught:
            conn.execute(insert)
    error = translate(caught.value)
    assert type(error) is AlreadyEnqueued
    assert error.sqlstate == "23505"
    assert str(error).startswith("a job with this queueing lock is already waiting")


def test_other_errors_keep_their_sqlstate(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn, pytest.raises(psycopg.Error) as caught:
        conn.execute("SELECT 1/0")
    error = translate(caught.value)
    assert type(error) is ConnectorException
    assert error.sqlstate == "22012"


def test_refused_connection_is_connection_failed() -> None:
    with pytest.raises(psycopg.OperationalError) as caught:
        psycopg.connect("postgresql://nobody@127.0.0.1:1/none", connect_timeout=2)
    assert type(translate(caught.value)) is ConnectionFailed


@pytest.mark.parametrize(
    ("sqlstate", "expected"),
    [
        ("3D000", ConnectionFailed),  # a full code in the table
        ("28P01", ConnectionFailed),  # not in the table: found by its class, "28"
        ("08006", ConnectionFailed),
        ("23505", ConnectorException),  # a unique violation of another index
        ("42P01", ConnectorException),  # in neither
    ],
)
def test_sqlstate_lookup_is_what_the_table_comment_says(
    sqlstate: str, expected: type[ConnectorException]
) -> None:
    assert "28P01" not in SQLSTATE_CLASSES and "23505" not in SQLSTATE_CLASSES

    class DriverError(Exception):
        pass

    error = DriverError("boom")
    error.sqlstate = sqlstate  # type: ignore[attr-defined]
    translated = translate(error)
    assert type(translated) is expected
    assert isinstance(translated, ConnectorException)
    assert translated.sqlstate == sqlstate
