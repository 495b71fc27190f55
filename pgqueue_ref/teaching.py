"""What the notebooks' lessons lean on, so that their cells show the lesson only.

Each helper here was once a function in a notebook's setup cell. They are small
and plain on purpose; a reader who wants to see how one works reads it here.

* **What another session sees.** :func:`notifications` (what reaches a
  listening connection), :func:`session_state` (what the server says a session
  is doing), :func:`waiting_jobs` (the queue's waiting jobs, written as calls).
* **How a connector talks to the server.** :func:`how_parameters_travel` asks
  the server what text it received, so the notebooks never guess a driver's
  parameter style from its name; :func:`profile` puts it beside the facts a
  connector states about itself. (:func:`pgqueue_ref.display.recording` lists
  the named statements it sends.)
* **Jobs over time.** :func:`job_states` counts jobs per task and state,
  :func:`watch_states` samples those counts while a worker runs, and
  :func:`plot_states` draws the samples (matplotlib, imported when called).
* **The support table.** :func:`support_table` shows ``docs/connectors.md``'s
  table (generated from the conformance suite) compactly, connector names
  upright, so that its twelve verdict columns fit beside the behaviours.
* **Where a piece lives.** :func:`where` names the file (and the name in it)
  of a function, class, method or named query, for the lesson that maps a
  minimal queue onto this one.
* **Timing.** :class:`Stopwatch`, for the few lessons where a duration is the
  point: ``with Stopwatch() as watch: ...``, then ``watch.seconds``.

Scratch databases are :func:`pgqueue_ref.embedded.scratch_database`, and
tables are :func:`pgqueue_ref.display.table`; both are used as they are.
"""

from __future__ import annotations

import asyncio
import html
import inspect
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from ._table import format_table
from .connectors import AsyncConnector, BaseConnector
from .display import Table
from .sql import Query

__all__ = [
    "JOB_STATES",
    "STATE_COLOURS",
    "STATE_ORDER",
    "Stopwatch",
    "SupportTable",
    "how_parameters_travel",
    "job_states",
    "notifications",
    "plot_states",
    "profile",
    "session_state",
    "support_table",
    "waiting_jobs",
    "watch_states",
    "where",
]


# --------------------------------------------------------------------------
# What another session sees
# --------------------------------------------------------------------------


async def notifications(conn: Any, timeout: float = 0.5) -> list[str]:
    """Payloads of the notifications that reach ``conn`` (a psycopg
    ``AsyncConnection`` that ran ``LISTEN``) within ``timeout`` seconds."""
    return [notify.payload async for notify in conn.notifies(timeout=timeout)]


async def session_state(observer: Any, conn: Any) -> str | None:
    """What the server says ``conn``'s session is doing (``pg_stat_activity.state``:
    ``idle``, ``idle in transaction``, ``active``...), read through ``observer``.

    Both are psycopg connections; ``observer`` is an ``AsyncConnection``.
    """
    cursor = await observer.execute(
        "SELECT state FROM pg_stat_activity WHERE pid = %s", [conn.info.backend_pid]
    )
    row = await cursor.fetchone()
    if row is None:
        raise LookupError(f"no session with pid {conn.info.backend_pid}: is it closed?")
    return row[0]  # type: ignore[no-any-return]


async def waiting_jobs(connector: AsyncConnector) -> list[str]:
    """The App face's waiting jobs, in id order, each written as the call it stands
    for: ``process_order(order_id=1)``."""
    rows = await connector.fetch_all_async(
        "SELECT task_name, args FROM pgqueue_jobs "
        "WHERE face = 'app' AND status = 'todo' ORDER BY id"
    )
    return [
        f"{row['task_name']}({', '.join(f'{k}={v!r}' for k, v in row['args'].items())})"
        for row in rows
    ]


# --------------------------------------------------------------------------
# How a connector talks to the server
# --------------------------------------------------------------------------

#: Asks the server for the text of the very statement it is running. ``probe``
#: is a parameter: the answer shows what became of it on the way.
_OWN_QUERY = (
    "SELECT query FROM pg_stat_activity "
    "WHERE pid = pg_backend_pid() AND %(probe)s::text IS NOT NULL"
)
_PROBE = "probe-6a1f"


async def how_parameters_travel(connector: BaseConnector) -> str:
    """How this connector's Python driver sends a parameter, as the server saw it.

    Runs one statement with one parameter through ``connector`` (awaited on an
    async one, a plain call on a blocking one) and reads the statement's text
    back from ``pg_stat_activity``: ``"$1, value apart"`` when the driver sends
    placeholders and the values separately (server-side binding), ``"inlined by
    the client"`` when the value arrives quoted inside the text.
    """
    params = {"probe": _PROBE}
    if isinstance(connector, AsyncConnector):
        rows = await connector.fetch_all_async(_OWN_QUERY, params)
    else:
        rows = connector.fetch_all(_OWN_QUERY, params)
    text = rows[0]["query"]
    if "$1" in text:
        return "$1, value apart"
    if f"'{_PROBE}'" in text:
        return "inlined by the client"
    raise AssertionError(f"the server received neither $1 nor the quoted value: {text!r}")


def _holds(connector: BaseConnector) -> str:
    """What sits under a connector: its pool, engine or connection, as module.Class."""
    for attr in ("pool", "engine", "connection"):
        if hasattr(connector, attr):
            held = getattr(connector, attr)
            return f"{type(held).__module__.split('.')[0]}.{type(held).__name__}"
    return "(nothing yet)"


async def profile(name: str, connector: BaseConnector) -> dict[str, Any]:
    """One row of facts about an open connector or driver: what it states about
    itself (its class, its attributes) and how the server saw its parameters."""
    is_async = isinstance(connector, AsyncConnector)
    return {
        "connector": name,
        "kind": "async" if is_async else "blocking",
        "runs a worker": is_async,
        "opens connections": connector.opens_connections,
        "holds": _holds(connector),
        "parameters": await how_parameters_travel(connector),
        "your connection": connector.external_connection_type
        or ("is yours" if hasattr(connector, "connection") else "no"),
    }


# --------------------------------------------------------------------------
# Jobs over time
# --------------------------------------------------------------------------

#: Jobs per task and state; a waiting job is ``scheduled`` if it was deferred
#: for later, ``retry later`` if it failed and waits out its retry delay.
JOB_STATES = """
SELECT task_name,
       CASE WHEN status = 'todo' AND scheduled_at > now() AND attempts = 0 THEN 'scheduled'
            WHEN status = 'todo' AND scheduled_at > now() THEN 'retry later'
            ELSE status END AS state,
       count(*) AS jobs
FROM pgqueue_jobs GROUP BY 1, 2 ORDER BY 1, 2
"""
#: The states of :data:`JOB_STATES`, waiting ones first, finished ones last.
STATE_ORDER = ("scheduled", "retry later", "todo", "doing", "succeeded", "failed", "cancelled")
_UNFINISHED = STATE_ORDER[:4]
STATE_COLOURS: Mapping[str, str] = {
    "scheduled": "lightskyblue",
    "retry later": "orange",
    "todo": "gold",
    "doing": "red",
    "succeeded": "mediumseagreen",
    "failed": "dimgray",
    "cancelled": "silver",
}

#: One sample of :func:`watch_states`: seconds since the start, jobs per state.
Sample = tuple[float, dict[str, int]]


async def job_states(connector: AsyncConnector) -> Table:
    """:data:`JOB_STATES` now, as a table."""
    return Table(await connector.fetch_all_async(JOB_STATES))


async def watch_states(
    connector: AsyncConnector, every: float = 0.05, limit: float = 10.0
) -> list[Sample]:
    """Sample the jobs per state every ``every`` seconds until no job waits or runs,
    or for ``limit`` seconds at most (a worker has to run meanwhile, in a task)."""
    samples: list[Sample] = []
    start = time.monotonic()
    while time.monotonic() - start < limit:
        counts = dict.fromkeys(STATE_ORDER, 0)
        for row in await connector.fetch_all_async(JOB_STATES):
            counts[row["state"]] += row["jobs"]
        samples.append((time.monotonic() - start, counts))
        if not any(counts[state] for state in _UNFINISHED):
            break
        await asyncio.sleep(every)
    return samples


def plot_states(samples: Sequence[Sample], title: str = "Job states over time") -> Any:
    """A stacked plot of :func:`watch_states`' samples (finished states at the
    bottom); returns the matplotlib figure. Needs the ``notebooks`` extra."""
    import matplotlib.pyplot as plt

    seconds, stacked = [t for t, _ in samples], STATE_ORDER[::-1]
    fig, ax = plt.subplots(figsize=(9, 3.5))
    ax.stackplot(
        seconds,
        *([counts[state] for _, counts in samples] for state in stacked),
        labels=stacked,
        colors=[STATE_COLOURS[state] for state in stacked],
        step="post",
    )
    ax.set(xlabel="seconds since the worker started", ylabel="jobs", title=title)
    ax.legend(loc="center left", bbox_to_anchor=(1, 0.5), reverse=True)
    return fig


# --------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------


class Stopwatch:
    """``with Stopwatch() as watch: ...``; then ``watch.seconds`` is how long the
    block took (``time.perf_counter``). Reading it inside the block gives the time
    so far."""

    def __init__(self) -> None:
        self._start: float | None = None
        self._end: float | None = None

    def __enter__(self) -> Self:
        self._start, self._end = time.perf_counter(), None
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._end = time.perf_counter()

    @property
    def seconds(self) -> float:
        if self._start is None:
            raise RuntimeError("this Stopwatch has not been started: use it in a with block")
        return (self._end if self._end is not None else time.perf_counter()) - self._start

    def __repr__(self) -> str:
        if self._start is None:
            return "Stopwatch(not started)"
        return f"Stopwatch({self.seconds:.3f} s{'' if self._end is not None else ', running'})"


# --------------------------------------------------------------------------
# The support table
# --------------------------------------------------------------------------

_UPRIGHT = "writing-mode: vertical-rl; transform: rotate(180deg); white-space: nowrap"
_CODE = re.compile(r"`([^`]+)`")


def _inline(markdown: str) -> str:
    """Markdown's inline code as HTML, everything else escaped."""
    parts = _CODE.split(markdown)
    return "".join(
        f"<code>{html.escape(part)}</code>" if odd else html.escape(part)
        for odd, part in ((i % 2 == 1, part) for i, part in enumerate(parts))
    )


class SupportTable:
    """The verdict table of ``docs/connectors.md`` and its notes, read from the file.

    In Jupyter: an HTML table whose column heads stand upright. As text: the
    same table with numbered columns, the key to the numbers above it.
    """

    def __init__(self, markdown: str) -> None:
        lines = markdown.splitlines()
        try:
            start = next(i for i, line in enumerate(lines) if line.startswith("| behaviour |"))
        except StopIteration:
            raise ValueError("no support table here: no line starts with '| behaviour |'") from None
        table = []
        for line in lines[start:]:
            if not line.startswith("|"):
                break
            table.append([cell.strip() for cell in line.strip().strip("|").split(" | ")])
        self.columns = [_CODE.sub(r"\1", head) for head in table[0]]
        self.rows = table[2:]  # table[1] is the | --- | line
        self.notes = [line for line in lines[start + len(table) :] if re.match(r"\d+\. ", line)]

    def __repr__(self) -> str:
        numbered = ["behaviour", *(str(n) for n in range(1, len(self.columns)))]
        key = ", ".join(f"{n} {name}" for n, name in enumerate(self.columns[1:], 1))
        body = format_table(numbered, [[_CODE.sub(r"\1", row[0]), *row[1:]] for row in self.rows])
        return "\n".join([f"columns: {key}", "", body, "", *self.notes])

    def _repr_html_(self) -> str:
        heads = "".join(
            f'<th style="{_UPRIGHT if n else "vertical-align: bottom"}">{html.escape(name)}</th>'
            for n, name in enumerate(self.columns)
        )
        body = "".join(
            "<tr>"
            + "".join(
                f'<td style="text-align: {"center" if n else "left"}">{_inline(cell)}</td>'
                for n, cell in enumerate(row)
            )
            + "</tr>"
            for row in self.rows
        )
        notes = "".join(f"<li>{_inline(note.split('. ', 1)[1])}</li>" for note in self.notes)
        return (
            f'<table style="font-size: 0.85em"><thead><tr>{heads}</tr></thead>'
            f"<tbody>{body}</tbody></table><p>Notes:</p><ol>{notes}</ol>"
        )


def support_table(path: str | Path) -> SupportTable:
    """``docs/connectors.md``'s support table, read from ``path`` (for a notebook in
    ``notebooks/``: ``"../docs/connectors.md"``)."""
    return SupportTable(Path(path).read_text(encoding="utf-8"))


# --------------------------------------------------------------------------
# Where a piece lives
# --------------------------------------------------------------------------

_PACKAGE = Path(__file__).resolve().parent


def where(piece: Any) -> str:
    """``"pgqueue_ref/worker.py: Worker._heartbeat_forever"`` for a function, class
    or method of pgqueue_ref; ``"pgqueue_ref/sql/queries.sql: fetch_jobs"`` for a
    named query (``pgqueue_ref.sql.QUERIES``). No line numbers: they move."""
    if isinstance(piece, Query):
        return f"pgqueue_ref/sql/queries.sql: {piece.name}"
    source = inspect.getsourcefile(inspect.unwrap(piece))
    if source is None or not Path(source).resolve().is_relative_to(_PACKAGE):
        raise ValueError(f"{piece!r} is not part of pgqueue_ref")
    relative = Path(source).resolve().relative_to(_PACKAGE.parent).as_posix()
    return f"{relative}: {piece.__qualname__}"
