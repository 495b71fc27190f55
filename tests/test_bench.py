"""The benchmark: its checks can fail, its plan is fair, and a small run goes end to end."""

from __future__ import annotations

import importlib.util
import io
import json
from pathlib import Path

import pytest

from pgqueue_ref.bench import SUBJECTS, Sizes, run_bench, select_subjects
from pgqueue_ref.bench import _plan as plan
from pgqueue_ref.bench.child import RunCounter
from pgqueue_ref.bench.report import Results
from pgqueue_ref.bench.runner import Check, MemoryCurve

TINY = Sizes(one_by_one=20, batch=200, drain=300, latency_samples=5, latency_gap=0.0, memory=400)


def test_a_check_fails_on_a_job_run_twice_a_job_lost_or_a_job_left() -> None:
    assert Check("s", "drain", 3, runs=3, distinct=3, unfinished=0).ok
    assert not Check("s", "drain", 3, runs=4, distinct=3, unfinished=0).ok  # one ran twice
    assert not Check("s", "drain", 3, runs=2, distinct=2, unfinished=0).ok  # one never ran
    assert not Check("s", "drain", 3, runs=3, distinct=3, unfinished=1).ok  # one left behind
    assert str(Check("s", "drain", 3, 4, 3, 0)) == (
        "s, drain: 4 runs of 3 distinct jobs for 3 deferred, 0 left unfinished"
    )


def test_a_drain_counts_runs_and_repeats_without_keeping_them() -> None:
    runs = RunCounter(4)
    for n in (0, 3, 1, 3):
        runs(n)
    assert (runs.runs, runs.repeats, len(runs)) == (4, 1, 4)


def test_the_plan_interleaves_subjects_so_they_share_the_machine_drift() -> None:
    subjects = select_subjects(["pgqueue_ref PsycopgConnector", "minimal"])
    steps = [(s.name[:5], op) for s, op in plan(subjects, ["enqueue_one", "drain"], repeat=2)]
    assert (
        steps
        == [
            ("pgque", "enqueue_one"),
            ("minim", "enqueue_one"),
            ("pgque", "drain"),
            ("minim", "drain"),
        ]
        * 2
    )


def test_memory_curve_start_is_taken_after_a_tenth_of_the_jobs() -> None:
    curve = MemoryCurve("s", 100, 1.0, [(0.0, 10, 0), (0.1, 20, 5), (0.2, 30, 12), (0.9, 31, 100)])
    assert (curve.start, curve.end, curve.peak) == (30, 31, 31)


def test_unknown_subject_names_the_installed_ones() -> None:
    with pytest.raises(ValueError, match="no installed subject matches \\['nope'\\]; installed: "):
        select_subjects(["nope"])


def test_every_connector_of_pgqueue_ref_is_a_subject() -> None:
    import pgqueue_ref

    names = {name for name in pgqueue_ref.__all__ if name.endswith("Connector")} - {
        "BaseConnector",
        "AsyncConnector",
        "SyncConnector",
    }
    assert {f"pgqueue_ref {name}" for name in names} <= set(SUBJECTS)


def test_a_small_run_measures_checks_and_draws(tmp_path: Path) -> None:
    out = io.StringIO()
    results = run_bench(
        sizes=TINY,
        repeat=1,
        subjects=["pgqueue_ref PsycopgConnector", "minimal"],
        output=tmp_path / "bench.json",
        plot=tmp_path / "bench.png",
        out=out,
    )
    assert results.failures == {}, out.getvalue()
    # drain, latency for both, memory for pgqueue_ref's worker: every job once, none left
    assert len(results.checks) == 5 and all(check.ok for check in results.checks)
    operations = {op for _, op in results.measurements}
    assert operations == {"enqueue_one", "enqueue_batch", "drain", "latency_p50", "latency_p95"}
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert {m["subject"] for m in saved["measurements"]} == {
        "pgqueue_ref PsycopgConnector",
        "minimal SQL loop (asyncpg)",
    }
    assert saved["memory"][0]["rss_end"] > 0
    assert (tmp_path / "bench.md").read_text().startswith("| subject | worker |")
    assert (tmp_path / "bench.png").stat().st_size > 10_000
    assert "every job ran exactly once" in out.getvalue()


def test_ratios_compare_each_subject_with_the_references() -> None:
    subjects = select_subjects(["pgqueue_ref PsycopgConnector", "minimal"])
    results = Results(subjects, repeat=1)
    for name, rate in (
        ("pgqueue_ref PsycopgConnector", 900.0),
        ("minimal SQL loop (asyncpg)", 1000.0),
    ):
        results.add(name, "enqueue_one", 10, rate)
    results.add("pgqueue_ref PsycopgConnector", "latency_p50", 10, 3.5)
    results.add("minimal SQL loop (asyncpg)", "latency_p50", 10, 3.0)
    _, rows = results.ratio_rows()
    assert rows == [["pgqueue_ref PsycopgConnector", "0.90×", "—", "—", "—", "—", "+0.50"]]


@pytest.mark.skipif(
    importlib.util.find_spec("procrastinate") is None
    or importlib.util.find_spec("pgqueuer") is None,
    reason='the anchors are not installed (pip install -e ".[bench]")',
)
def test_the_anchors_run_through_the_same_code(tmp_path: Path) -> None:
    out = io.StringIO()
    results = run_bench(
        sizes=TINY,
        repeat=1,
        subjects=["procrastinate", "pgqueuer"],
        operations=["enqueue_one", "enqueue_batch", "drain"],
        out=out,
    )
    assert results.failures == {}, out.getvalue()
    assert len(results.checks) == 3 and all(check.ok for check in results.checks)
