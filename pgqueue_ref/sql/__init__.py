"""The SQL pgqueue_ref sends, loaded from the ``.sql`` files beside this module.

``queries.sql`` holds every statement under a ``-- name: <name>`` header;
``schema.sql`` is the schema, applied as one string. Both are plain files so
that a reader sees the exact SQL, and every driver runs the same text.

Parameters are written in psycopg's named style, ``%(name)s``. asyncpg only
understands numbered placeholders, ``$1``; :func:`to_numbered` converts one
to the other, and the asyncpg modules call it. That is the whole difference
in parameter style between the drivers::

    >>> to_numbered("SELECT %(a)s::int + %(b)s::int, %(a)s::int")
    ('SELECT $1::int + $2::int, $1::int', ('a', 'b'))
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from importlib import resources

__all__ = ["CHANNEL", "QUERIES", "SCHEMA", "Query", "to_numbered"]

#: The channel job inserts notify while a worker is idle: ``pg_notify('pgqueue_ref', '<face>:<queue>')``
#: in queries.sql, which workers LISTEN on. Here, beside the SQL that names it, so that
#: a producer needs nothing of the worker engine.
CHANNEL = "pgqueue_ref"

_PLACEHOLDER = re.compile(r"%\((\w+)\)s")


@dataclass(frozen=True)
class Query:
    """One named statement: its SQL and the comment that says why it is so."""

    name: str
    sql: str
    doc: str

    def __str__(self) -> str:
        return self.sql


def parse_queries(text: str) -> dict[str, Query]:
    """Split a ``.sql`` file on its ``-- name: <name>`` headers.

    The comment lines right after a header become the query's ``doc``; they
    are not sent to the server. Text before the first header is the file's
    own preamble and is ignored.
    """
    queries: dict[str, Query] = {}
    for block in re.split(r"^-- name: ", text, flags=re.MULTILINE)[1:]:
        header, _, body = block.partition("\n")
        name = header.strip()
        doc_lines, sql_lines = [], []
        for line in body.splitlines():
            if line.startswith("--"):
                doc_lines.append(line.removeprefix("--").strip())
            elif line.strip():
                sql_lines.append(line.rstrip())
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice")
        queries[name] = Query(name, "\n".join(sql_lines).rstrip(";"), " ".join(doc_lines))
    return queries


@functools.cache
def to_numbered(sql: str) -> tuple[str, tuple[str, ...]]:
    """Rewrite ``%(name)s`` placeholders as ``$1, $2, ...`` for asyncpg.

    Returns the new SQL and the parameter names in ``$n`` order. A name used
    twice gets the same number both times. ``%%`` (psycopg's escaped percent)
    becomes ``%``.
    """
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    return _PLACEHOLDER.sub(number, sql).replace("%%", "%"), tuple(names)


def _read(filename: str) -> str:
    return resources.files(__package__).joinpath(filename).read_text(encoding="utf-8")


QUERIES: dict[str, Query] = parse_queries(_read("queries.sql"))
SCHEMA: str = _read("schema.sql")
