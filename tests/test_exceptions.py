"""Driver errors become ours in one place; here against real drivers' errors."""

from __future__ import annotations

import importlib
import pkgutil
import re
import sys
from collections.abc import Iterator

import psycopg
import pytest

import pgqueue_ref
from pgqueue_ref import exceptions
from pgqueue_ref.exceptions import (
    SQLSTATE_CLASSES,
    AlreadyEnqueued,
    ConnectionFailed,
    ConnectorException,
    PgQueueError,
    translate,
)


def _drawn_tree() -> dict[str, tuple[str | None, str]]:
    """The tree in exceptions' docstring: class name -> (drawn parent, description).

    Each line is a prefix of box-drawing characters, four per level, then the
    name, then the description.
    """
    doc = exceptions.__doc__ or ""
    block = doc.split("The tree::\n\n", 1)[1].split("\n\n", 1)[0]
    drawn: dict[str, tuple[str | None, str]] = {}
    ancestors: list[str] = []
    for line in block.splitlines():
        match = re.fullmatch(r"    (?P<prefix>[│├└─ ]*)(?P<name>\w+)(?P<description>.*)", line)
        assert match, f"not a tree line: {line!r}"
        depth, remainder = divmod(len(match["prefix"]), 4)
        assert remainder == 0 and depth <= len(ancestors), f"misaligned: {line!r}"
        del ancestors[depth:]
        name = match["name"]
        assert name not in drawn, f"{name} is drawn twice"
        drawn[name] = (ancestors[-1] if ancestors else None, match["description"].strip())
        ancestors.append(name)
    return drawn


def _package_exceptions() -> dict[str, type[PgQueueError]]:
    """Every subclass of PgQueueError defined in pgqueue_ref, after importing every module."""
    for module in pkgutil.walk_packages(pgqueue_ref.__path__, "pgqueue_ref."):
        if not module.name.endswith("__main__"):  # it would run the command line
            importlib.import_module(module.name)

    def subclasses(cls: type[PgQueueError]) -> Iterator[type[PgQueueError]]:
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    found: dict[str, type[PgQueueError]] = {"PgQueueError": PgQueueError}
    for cls in subclasses(PgQueueError):
        if cls.__module__.split(".")[0] != "pgqueue_ref":  # e.g. defined by a test
            continue
        assert found.get(cls.__name__, cls) is cls, f"two classes named {cls.__name__}"
        found[cls.__name__] = cls
    return found


def test_tree_in_docstring_is_the_real_hierarchy() -> None:
    drawn = _drawn_tree()
    real = _package_exceptions()
    assert sorted(drawn) == sorted(real), "draw every exception class, and only those"
    for name, (parent, description) in drawn.items():
        cls = real[name]
        ours = [base for base in cls.__bases__ if issubclass(base, PgQueueError)]
        builtins = [base for base in cls.__bases__ if not issubclass(base, PgQueueError)]
        if parent is None:
            assert cls is PgQueueError
            continue
        assert [base.__name__ for base in ours] == [parent], f"{name}'s parent"
        # Built-in bases (ValueError, TypeError...) are named in the description.
        said = re.findall(r"\(also an? (\w+)\)", description)
        assert said == [base.__name__ for base in builtins], f"{name}'s built-in bases"


def test_docstring_says_where_each_exception_lives() -> None:
    doc = " ".join((exceptions.__doc__ or "").split())
    elsewhere = {
        name: cls.__module__
        for name, cls in _package_exceptions().items()
        if cls.__module__ != "pgqueue_ref.exceptions"
    }
    said = dict(re.findall(r"``(\w+)`` in ``(pgqueue_ref[\w.]*)``", doc))
    assert said == elsewhere
    assert f"in this module but {_NUMBERS[len(elsewhere)]}," in doc


_NUMBERS = ["none", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def test_every_exception_class_of_the_package_is_a_pgqueue_error() -> None:
    _package_exceptions()  # imports every module
    outside = [
        f"{cls.__module__}.{cls.__qualname__}"
        for name, module in sorted(sys.modules.items())
        if name == "pgqueue_ref" or name.startswith("pgqueue_ref.")
        for cls in vars(module).values()
        if isinstance(cls, type)
        and issubclass(cls, BaseException)
        and cls.__module__ == name
        and not issubclass(cls, PgQueueError)
    ]
    assert outside == [], "derive them from PgQueueError (and draw them in the tree)"


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
