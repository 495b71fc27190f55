"""``docs/compatibility.md`` is what comparing pgqueue_ref with procrastinate 3.10 and
PgQueuer 1.6, as installed, gives (see :mod:`compat_table`)."""

from __future__ import annotations

import compat_table


def test_every_anchor_name_is_theirs_and_every_verdict_has_its_note() -> None:
    computed = compat_table.verdicts()  # a name not public in the anchor raises here
    assert sum(len(rows) for _, rows in computed) > 150
    assert compat_table.problems(computed) == []


def test_the_committed_page_is_what_the_comparison_gives() -> None:
    text = compat_table.render(compat_table.verdicts())
    assert compat_table.DOC.read_text(encoding="utf-8") == text, (
        f"{compat_table.DOC} is out of date: run 'python tools/compatibility_table.py' "
        "and commit the result"
    )


def test_the_comparison_catches_a_missing_parameter_and_a_coroutine() -> None:
    """The comparison can fail: a parameter we lack, or async where theirs is sync."""

    def theirs(job_id: int, abort: bool = False) -> None: ...

    def ours_lacking(job_id: int) -> None: ...

    async def ours_async(job_id: int, abort: bool = False) -> None: ...

    assert compat_table.compare(theirs, ours_lacking) == "no `abort=`"
    assert compat_table.compare(theirs, ours_async) == "coroutine where theirs is call"
    assert compat_table.compare(theirs, theirs) == ""
