"""``docs/connectors.md`` is what the conformance suite says (see :mod:`.support_table`).

This module runs after every other test of the session (the conformance
``conftest.py`` moves it last), so it sees every result recorded so far.
"""

from __future__ import annotations

import re

from pgqueue_ref.pooler import find_pgbouncer

from . import support_table
from .conftest import CONNECTORS


def test_the_committed_table_is_what_the_suite_says() -> None:
    rows = support_table.rows(support_table.conformance_modules())
    assert rows, "no conformance tests found: was the conformance suite collected?"
    expected = {
        (row.test, connector, topology)
        for row in rows
        for connector in CONNECTORS
        for topology in support_table.TOPOLOGIES
    }
    # Without pgbouncer (a skip, unless CI requires it) the PgBouncer column is unknown.
    ran_everything = find_pgbouncer() is not None and expected <= support_table.RESULTS.keys()
    if ran_everything:
        text = support_table.render(rows, list(CONNECTORS), support_table.RESULTS)
        failed = [key for key in expected if support_table.RESULTS[key].outcome == "FAILED"]
        if support_table.update_requested():
            assert not failed, f"not writing the support table from a run with failures: {failed}"
            support_table.DOC.write_text(text, encoding="utf-8")
        assert support_table.DOC.read_text(encoding="utf-8") == text, (
            f"{support_table.DOC} is not what this run of the conformance suite gives: run "
            "'python tools/support_table.py' and commit the result"
        )
    # Also (and on a partial run, only) the structure: every connector, every test.
    committed = support_table.DOC.read_text(encoding="utf-8")
    header = next(line for line in committed.splitlines() if line.startswith("| behaviour"))
    assert re.findall(r"`(\w+)`", header) == list(CONNECTORS)
    assert header.endswith(" | through PgBouncer |")
    named = re.findall(r"^- .*: `(test_\w+)`$", committed, flags=re.MULTILINE)
    assert named == [row.test for row in rows]
    table = [line for line in committed.splitlines() if line.startswith("| ")][2:]
    assert len(table) == len(rows)
    # Short marks only, so that the table fits a laptop-width page: a mark, maybe its note.
    mark = "(✔|✘|n/a)[⁰¹²³⁴⁵⁶⁷⁸⁹]*"
    for line in table:
        *cells, through = line.strip("|").split(" | ")[1:]
        assert len(cells) == len(CONNECTORS)
        assert all(re.fullmatch(mark, cell.strip()) for cell in cells), line
        assert re.fullmatch(f"=|{mark}( {mark})*", through.strip()), line


def test_a_note_number_is_a_superscript() -> None:
    assert support_table.superscript(1) == "¹"
    assert support_table.superscript(15) == "¹⁵"
    assert support_table.superscript(20) == "²⁰"
