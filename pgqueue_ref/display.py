"""What the notebooks show: small tables, and the statements an operation sends.

Two helpers for people reading a notebook:

* :func:`table` shows rows (dicts, as every connector returns them) as an
  HTML table in Jupyter and as aligned text anywhere else. Both forms depend
  on the rows alone, so nbval can compare them with the stored outputs.
  pandas would draw the same tables, but the notebooks' tables are a few rows
  long, and pandas would be the largest dependency of the ``notebooks`` extra
  for nothing else.
* :func:`recording` lists the named queries (``sql/queries.sql``) that a
  connector sends while the block runs, with their parameters::

      with recording(app.connector) as sent:
          await add.batch_defer_async({"a": 1, "b": 2}, {"a": 3, "b": 4})
      sent  # one statement, defer_jobs, with one array per column

:func:`recording_each` does the same for several connectors at once, and shows
which connector sent what, one row each.

It wraps the connector's I/O methods (``_execute``, ``_fetch_all``,
``_listen``: the connector contract) on that one instance, and puts them back
when the block ends; nothing else changes.
"""

from __future__ import annotations

import contextlib
import html
import inspect
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._table import _cell, format_table
from .connectors import BaseConnector
from .sql import QUERIES, SCHEMA

__all__ = [
    "Statement",
    "Statements",
    "StatementsBy",
    "Table",
    "recording",
    "recording_each",
    "table",
]


class Table:
    """Rows shown as a table: HTML in Jupyter, aligned text in ``repr()``."""

    def __init__(
        self, rows: Iterable[Mapping[str, Any]], columns: Sequence[str] | None = None
    ) -> None:
        self.rows = [dict(row) for row in rows]
        if columns:
            self.columns = list(columns)
        else:
            self.columns = list(self.rows[0]) if self.rows else []
        known = set(self.columns) if not self.rows else set().union(*self.rows)
        unknown = [column for column in self.columns if column not in known]
        if unknown:
            raise ValueError(
                f"no column {', '.join(map(repr, unknown))} in these rows; "
                f"they have: {', '.join(sorted(known))}"
            )

    def __len__(self) -> int:
        return len(self.rows)

    def _values(self) -> list[list[Any]]:
        return [[_plain(row.get(column)) for column in self.columns] for row in self.rows]

    def __repr__(self) -> str:
        if not self.rows:
            return "(no rows)"
        return format_table(self.columns, self._values())

    def _repr_html_(self) -> str:
        if not self.rows:
            return "<p><em>(no rows)</em></p>"
        head = "".join(f"<th>{html.escape(column)}</th>" for column in self.columns)
        body = "".join(
            "<tr>" + "".join(_html_cell(value) for value in values) + "</tr>"
            for values in self._values()
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def table(rows: Iterable[Mapping[str, Any]], *columns: str) -> Table:
    """``table(rows, "id", "status")``: the rows, only those columns (default: all)."""
    return Table(rows, columns)


def _plain(value: Any) -> Any:
    """Numbers stay numbers (right-aligned); everything else becomes short text."""
    if isinstance(value, bool):
        return str(value)
    if value is None or isinstance(value, (int, float, str)):
        return value
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(", ", ": "), default=str)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return repr(bytes(value))
    return str(value)


def _html_cell(value: Any) -> str:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    style = ' style="text-align: right"' if number else ""
    return f"<td{style}>{html.escape(_cell(value))}</td>"


# --------------------------------------------------------------------------
# Which statements did that send?
# --------------------------------------------------------------------------

#: The name of each statement the library sends, from its SQL text.
_NAMES: dict[str, str] = {query.sql: name for name, query in QUERIES.items()} | {SCHEMA: "schema"}


@dataclass(frozen=True, slots=True, repr=False)
class Statement:
    """One statement sent: its name in ``queries.sql`` (or ``schema``, ``LISTEN``), its
    parameters, and its SQL. Shown as a table of its parameters, one per row."""

    name: str
    params: dict[str, Any]
    sql: str

    def table(self) -> Table:
        return Table(
            ({"parameter": name, "value": repr(value)} for name, value in self.params.items()),
            ["parameter", "value"],
        )

    def __repr__(self) -> str:
        return f"{self.name}\n{self.table()!r}"

    def _repr_html_(self) -> str:
        return f"<p><code>{html.escape(self.name)}</code></p>{self.table()._repr_html_()}"


class Statements(list[Statement]):
    """The statements a :func:`recording` block sent, in order; shown as a table."""

    def table(self) -> Table:
        return Table(
            {"#": n, "statement": s.name, "parameters": _params_text(s.params)}
            for n, s in enumerate(self, 1)
        )

    def __repr__(self) -> str:
        return repr(self.table())

    def _repr_html_(self) -> str:
        return self.table()._repr_html_()


def _params_text(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{name}={value!r}" for name, value in params.items())


@contextlib.contextmanager
def recording(connector: BaseConnector) -> Iterator[Statements]:
    """Record every statement ``connector`` sends inside the block (sync or async calls)."""
    sent = Statements()

    def note(query: str, params: Mapping[str, Any], connection: Any) -> None:
        sent.append(Statement(_NAMES.get(query, "(other)"), dict(params), query))

    def listening(channel: str, *callbacks: Any) -> None:
        sent.append(Statement("LISTEN", {"channel": channel}, f"LISTEN {channel}"))

    notes: dict[str, Callable[..., None]] = {
        "_execute": note,
        "_fetch_all": note,
        "_listen": listening,
    }
    wrappers = {
        name: _wrap(getattr(connector, name), notes[name])
        for name in notes
        if hasattr(connector, name)  # a SyncConnector has no _listen
    }
    if any(name in vars(connector) for name in wrappers):
        raise RuntimeError(f"this {type(connector).__name__} is already being recorded")
    vars(connector).update(wrappers)  # instance attributes hide the class's methods
    try:
        yield sent
    finally:
        for name in wrappers:
            del vars(connector)[name]


def _wrap(method: Callable[..., Any], note: Callable[..., None]) -> Callable[..., Any]:
    """``method``, calling ``note`` with the same arguments first."""
    if inspect.iscoroutinefunction(method):

        async def wrapper_async(*args: Any) -> Any:
            note(*args)
            return await method(*args)

        return wrapper_async

    def wrapper(*args: Any) -> Any:
        note(*args)
        return method(*args)

    return wrapper


class StatementsBy(dict[str, Statements]):
    """What each connector of a :func:`recording_each` block sent: connector class
    name -> its statements; shown as a table, one row per connector."""

    def table(self) -> Table:
        return Table(
            {"connector": name, "sent": ", ".join(s.name for s in sent) or "(nothing)"}
            for name, sent in self.items()
        )

    def __repr__(self) -> str:
        return repr(self.table())

    def _repr_html_(self) -> str:
        return self.table()._repr_html_()


@contextlib.contextmanager
def recording_each(*connectors: BaseConnector) -> Iterator[StatementsBy]:
    """:func:`recording` on each connector at once, keyed by the connector's class name."""
    names = [type(connector).__name__ for connector in connectors]
    if len(set(names)) != len(names):
        raise ValueError(f"two connectors of one class cannot be told apart here: {names}")
    with contextlib.ExitStack() as stack:
        yield StatementsBy(
            (name, stack.enter_context(recording(connector)))
            for name, connector in zip(names, connectors)
        )
