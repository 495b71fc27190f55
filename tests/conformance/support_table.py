"""``docs/connectors.md``, the table of what each connector supports, made from
the conformance suite's own results so that it cannot drift from the code.

How it stays honest:

* The conformance ``conftest.py`` records the outcome of every (test,
  connector, topology) as it runs (:func:`record`): "yes" when the test passed;
  "no" or "n/a" when it passed *after* checking that the connector refuses
  clearly (``subject.unsupported(reason)``) or what it does instead
  (``subject.not_applicable(reason)``); "no" or "n/a", marked skipped, when
  the test skipped itself with its reason because there was nothing to check
  (``subject.skip_unsupported(reason)``, ``subject.skip_not_applicable(reason)``);
  "FAILED" otherwise, a skip that gave no verdict included. No cell says more
  than its test asserted.
* ``test_support_table.py`` runs last. When the session ran every pair, it
  renders the table from those results (:func:`render`) and fails unless
  ``docs/connectors.md`` is exactly that text; with ``PGQUEUE_REF_UPDATE_SUPPORT_TABLE=1``
  in the environment (``python tools/support_table.py``) it writes the file
  instead, and only from a run where nothing failed. When only some pairs
  ran (``-k``, one file, no pgbouncer installed), it still checks that the
  committed table names every connector and every conformance test.

Rows are the conformance tests, module by module and in file order within
each, labelled by the first line of their docstring (each row's test is named
in a list below the table); columns are the connectors of ``CONNECTORS``,
direct to the server, then one column for the ``pgbouncer`` topology: ``=``
when every connector gave the same verdict through PgBouncer, else each
verdict that differs, its note naming the connectors that gave it. Cells are
short marks (✔, ✘, n/a) with a superscript note number, so that the eleven
columns fit a laptop-width page.
"""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = [
    "AS_DIRECT",
    "DIRECT",
    "DOC",
    "MARKS",
    "NO",
    "NOT_APPLICABLE",
    "PGBOUNCER",
    "RESULTS",
    "TOPOLOGIES",
    "UPDATE_ENV",
    "Cell",
    "Row",
    "is_table_check",
    "record",
    "render",
    "rows",
    "superscript",
]

DOC = Path(__file__).resolve().parents[2] / "docs" / "connectors.md"
UPDATE_ENV = "PGQUEUE_REF_UPDATE_SUPPORT_TABLE"
YES, NO, NOT_APPLICABLE, FAILED = "yes", "no", "n/a", "FAILED"
#: How the subject reaches the server: straight, or through PgBouncer in transaction mode.
DIRECT, PGBOUNCER = "direct", "pgbouncer"
TOPOLOGIES = (DIRECT, PGBOUNCER)
_TABLE_CHECK_MODULE = "test_support_table.py"


@dataclass(frozen=True)
class Cell:
    outcome: str  # YES, NO, NOT_APPLICABLE or FAILED
    reason: str = ""
    skipped: bool = False  # the test skipped itself: nothing was checked here


@dataclass(frozen=True)
class Row:
    test: str  # the test function's name
    label: str  # the first line of its docstring


#: (test function name, connector name, topology) -> outcome, for this pytest session.
RESULTS: dict[tuple[str, str, str], Cell] = {}


def is_table_check(item: pytest.Item) -> bool:
    return item.path.name == _TABLE_CHECK_MODULE


def record(item: pytest.Item, report: pytest.TestReport) -> None:
    """Note the outcome of one conformance test on one connector in one topology."""
    callspec = getattr(item, "callspec", None)
    if callspec is None or "subject" not in callspec.params:
        return
    test = getattr(item, "originalname", item.name)
    key = (test, callspec.params["subject"], callspec.params["topology"])
    verdicts = [(k, str(v)) for k, v in item.user_properties if k in (NO, NOT_APPLICABLE)]
    if report.failed:  # in any phase
        RESULTS[key] = Cell(FAILED, report.outcome)
    elif report.skipped:  # in setup (a fixture) or in the test
        # A skip is an answer only with a verdict (subject.skip_*): any other skip,
        # a missing driver or server feature say, leaves the question open.
        outcome, reason = verdicts[-1] if verdicts else (FAILED, "skipped without a verdict")
        RESULTS[key] = Cell(outcome, reason, skipped=bool(verdicts))
    elif report.when == "call":
        RESULTS[key] = Cell(*verdicts[-1]) if verdicts else Cell(YES)


def rows(modules: Iterable[object]) -> list[Row]:
    """Every test of these modules that runs on the ``subject`` fixture: module by
    module, in file order within each."""
    table = []
    for module in modules:
        found = []
        for name, func in vars(module).items():
            if (
                name.startswith("test_")
                and inspect.isfunction(func)
                and "subject" in inspect.signature(func).parameters
            ):
                doc = inspect.getdoc(func) or name
                found.append((func.__code__.co_firstlineno, Row(name, doc.splitlines()[0])))
        table += [row for _, row in sorted(found, key=lambda pair: pair[0])]
    return table


def conformance_modules() -> list[object]:
    """Every conformance test module (imported if this run did not collect it)."""
    here = Path(__file__).resolve().parent
    return [
        importlib.import_module(f"{__package__}.{path.stem}")
        for path in sorted(here.glob("test_*.py"))
        if path.name != _TABLE_CHECK_MODULE
    ]


#: The short marks of the table, one per outcome.
MARKS = {YES: "✔", NO: "✘", NOT_APPLICABLE: "n/a", FAILED: "FAILED"}
#: Said in a PgBouncer cell when every connector gave the same verdict as direct.
AS_DIRECT = "="
_SUPERSCRIPTS = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


def superscript(number: int) -> str:
    """``12`` -> ``¹²``: a note's number, as the table marks it."""
    return str(number).translate(_SUPERSCRIPTS)


def render(
    table_rows: Sequence[Row],
    connectors: Sequence[str],
    results: Mapping[tuple[str, str, str], Cell],
) -> str:
    """The markdown of ``docs/connectors.md``.

    Short marks keep the table as narrow as its eleven columns allow (the docs
    site turns the connector names upright, see ``docs/_static/support-table.css``):
    the reasons go into numbered notes below it, a superscript in the cell points
    to its note, and each row's test is named in a list after the notes.
    """
    notes: list[str] = []

    def noted(note: str) -> str:
        if note not in notes:
            notes.append(note)
        return superscript(notes.index(note) + 1)

    def verdict(found: Cell) -> str:
        return f"{found.outcome}{', skipped' if found.skipped else ''}: {found.reason}"

    def cell(row: Row, connector: str) -> str:
        found = results[(row.test, connector, DIRECT)]
        mark = MARKS[found.outcome]
        if not found.reason or found.outcome == FAILED:
            return mark
        return mark + noted(verdict(found))

    def through_pgbouncer(row: Row) -> str:
        """The cell: ``=``, or each verdict that differs there, its note naming its connectors."""
        differ: dict[Cell, list[str]] = {}  # verdict -> connectors, in column order
        for connector in connectors:
            found = results[(row.test, connector, PGBOUNCER)]
            if found != results[(row.test, connector, DIRECT)]:
                differ.setdefault(found, []).append(f"`{connector}`")
        if not differ:
            return AS_DIRECT
        marks = []
        for found, names in differ.items():
            said = verdict(found) if found.reason else found.outcome
            marks.append(
                MARKS[found.outcome] + noted(f"{said} (through PgBouncer: {', '.join(names)})")
            )
        return " ".join(marks)

    lines = [
        "# What each connector supports",
        "",
        "<!-- Generated from the conformance suite's results by `python tools/support_table.py`;",
        "     tests/conformance/test_support_table.py fails when this file is not what a fresh",
        "     run of the suite gives. Do not edit by hand. -->",
        "",
        "Each row is one test of `tests/conformance/`, run on every connector: **✔** means",
        "the test passed; **✘** means the connector cannot do it and the test checked that it",
        "says so clearly (the note gives the error); **n/a** means the question does not arise.",
        "A small number after a mark is its note, below the table. A note marked *skipped* is",
        "a case with nothing to check (no call that could refuse, no question to ask): the",
        "test skipped there, with the note as its reason.",
        "",
        "The connector columns are the suite run direct to the server. The last column is",
        "the whole suite run again with every connector and driver behind a real PgBouncer",
        "in transaction mode (`pgqueue_ref.pooler.PgBouncer`, no prepared-statement tracking):",
        "each one built the same way, but its statements through the pooler, with the one",
        "setting its driver needs there (`prepare_threshold=None` for psycopg 3,",
        "`statement_cache_size=0` for asyncpg; psycopg2 needs none) and, on the async ones,",
        "`listen_dsn=` the server itself for LISTEN, as",
        "[the how-to](connectors-howto.md#behind-a-transaction-pooler-pgbouncer-supavisor-rds-proxy)",
        "says. Each of those tests first checks that PgBouncer carried the connector's",
        f"statement. **{AS_DIRECT}** means every connector gave the same verdict there as in",
        "its own column; otherwise the cell gives each verdict that differs, and its note",
        "names the connectors that gave it.",
        "",
        '<div class="support-table">',
        "",
        "| behaviour | "
        + " | ".join(f"`{name}`" for name in connectors)
        + " | through PgBouncer |",
        "| --- |" + " :-: |" * (len(connectors) + 1),
    ]
    # The direct cells first, so that the notes only the PgBouncer column needs come last.
    direct = [" | ".join(cell(row, connector) for connector in connectors) for row in table_rows]
    for row, cells in zip(table_rows, direct):
        lines.append(f"| {row.label} | {cells} | {through_pgbouncer(row)} |")
    lines += ["", "</div>"]
    if notes:
        lines += ["", "Notes:", ""]
        lines += [f"{number}. {note}" for number, note in enumerate(notes, 1)]
    lines += ["", "The test behind each row, in the order of the rows:", ""]
    lines += [f"- {row.label}: `{row.test}`" for row in table_rows]
    return "\n".join(lines) + "\n"


def update_requested() -> bool:
    return os.environ.get(UPDATE_ENV, "") not in ("", "0")
