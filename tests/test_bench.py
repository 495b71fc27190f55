"""The benchmark: its checks can fail, its plan is fair, and a small run goes end to end."""

from __future__ import annotations

import importlib.util
import io
import json
import os
from pathlib import Path

import pytest

from pgqueue_ref.bench import POOLED, SUBJECTS, Sizes, run_bench, select_subjects
from pgqueue_ref.bench import _plan as plan
from pgqueue_ref.bench import pooled as pooled_module
from pgqueue_ref.bench.child import RunCounter
from pgqueue_ref.bench.registry import find
from pgqueue_ref.bench.report import Results
from pgqueue_ref.bench.runner import Check, MemoryCurve
from pgqueue_ref.pooler import PgBouncer, PgBouncerError

TINY = Sizes(
    one_by_one=20,
    batch=200,
    drain=300,
    latency_samples=5,
    latency_gap=0.0,
    memory=400,
    producer_jobs=40,
    producers=(1, 4),
    scaling_jobs=300,
    processes=(1, 2),
)
FIVE = ["enqueue_one", "enqueue_batch", "drain", "latency", "memory"]
MINIMAL = "minimal SQL loop (asyncpg)"


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
    subjects = select_subjects(["pgqueue_ref PsycopgConnector", MINIMAL])
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
        subjects=["pgqueue_ref PsycopgConnector", MINIMAL],
        operations=FIVE,
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
        (MINIMAL, 1000.0),
        ("minimal SQL loop on pgqueue_ref's table (asyncpg)", 950.0),
    ):
        results.add(name, "enqueue_one", 10, rate)
    results.add("pgqueue_ref PsycopgConnector", "latency_p50", 10, 3.5)
    results.add(MINIMAL, "latency_p50", 10, 3.0)
    _, rows = results.ratio_rows()
    assert rows == [
        ["pgqueue_ref PsycopgConnector", "0.90×", "—", "—", "0.95×"] + ["—"] * 5 + ["+0.50"]
    ]
    assert results.limit_rows()[1] == [
        ["minimal SQL loop on pgqueue_ref's table (asyncpg)", "0.95×", "—", "—"]
    ]


def test_producers_and_scaling_run_small_and_check_every_job(tmp_path: Path) -> None:
    """Concurrent producers (no worker, a busy worker) and drains by 1 and 2 processes."""
    out = io.StringIO()
    results = run_bench(
        sizes=TINY,
        repeat=1,
        subjects=["pgqueue_ref AsyncpgConnector", MINIMAL],
        operations=["producers", "scaling"],
        output=tmp_path / "bench.json",
        out=out,
    )
    assert results.failures == {}, out.getvalue()
    assert len(results.producers) == 6 * 2 * 2  # kinds x counts x (no worker, busy)
    assert {(name, k) for name, k in results.scaling} == {
        (s, k) for s in ("pgqueue_ref AsyncpgConnector", MINIMAL) for k in (1, 2)
    }
    assert len(results.checks) == 4 and all(check.ok for check in results.checks)
    headers, rows = results.producer_ratio_rows()
    assert headers == ["ratio", "worker", "P = 1", "P = 4"] and len(rows) == 14
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert len(saved["producers"]) == 24 and len(saved["scaling"]) == 4
    assert "drain by 2 processes" in out.getvalue()


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


# -- through PgBouncer (--pgbouncer) ------------------------------------------------------


def test_each_subject_of_pgqueue_ref_and_only_those_has_a_pooled_twin() -> None:
    assert set(POOLED) == {name for name, s in SUBJECTS.items() if s.family == "pgqueue_ref"}
    for name, twin in POOLED.items():
        assert twin.name == name + " via PgBouncer" and twin.direct == name
        assert twin.can_run_worker == SUBJECTS[name].can_run_worker
    twin = POOLED["pgqueue_ref AsyncpgConnector"]
    assert twin.settings == "concurrency 16; statement_cache_size=0; listen_dsn direct"


def test_pooled_selection_puts_each_twin_beside_its_subject() -> None:
    chosen = select_subjects(["pgqueue_ref PsycopgConnector", MINIMAL], pooled=True)
    assert [s.name for s in chosen] == [
        "pgqueue_ref PsycopgConnector",
        "pgqueue_ref PsycopgConnector via PgBouncer",
        "minimal SQL loop (asyncpg)",
    ]
    with pytest.raises(ValueError, match="--pgbouncer: none of .* runs through a pooler"):
        select_subjects(["minimal"], pooled=True)


def test_the_pooled_table_divides_each_twin_by_its_direct_run() -> None:
    results = Results(select_subjects(["pgqueue_ref PsycopgConnector"], pooled=True), repeat=1)
    direct, twin = "pgqueue_ref PsycopgConnector", "pgqueue_ref PsycopgConnector via PgBouncer"
    # Round by round (each twin right after its subject): the machine slowed down in
    # round 2, for both alike. The paired ratios are 0.5, 0.5, 0.9: median 0.5.
    for name, rates in ((direct, (1000.0, 200.0, 1000.0)), (twin, (500.0, 100.0, 900.0))):
        for rate in rates:
            results.add(name, "enqueue_one", 10, rate)
    for name, p50 in ((direct, 2.0), (twin, 3.0)):
        results.add(name, "latency_p50", 10, p50)
    _, rows = results.pooled_rows()
    assert rows == [[direct, "0.50×", "—", "—", "1.50×", "—", "+1.00"]]
    assert "through PgBouncer (transaction mode) / direct: medians of" in results.text()


def test_a_missing_pgbouncer_is_said_before_anything_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pooled_module, "find_pgbouncer", lambda: None)
    out = io.StringIO()
    with pytest.raises(PgBouncerError, match="apt-get install pgbouncer"):
        run_bench(sizes=TINY, subjects=["pgqueue_ref PsycopgConnector"], pgbouncer=True, out=out)
    assert "starting PostgreSQL" not in out.getvalue()


def test_a_pooled_subject_outside_a_pooled_run_says_how_to_get_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(pooled_module.POOLER_ENV, raising=False)
    with pytest.raises(PgBouncerError, match="bench --pgbouncer"):
        pooled_module.pooled_dsn("postgresql://postgres@127.0.0.1:5432/db")


def test_a_small_pooled_run_measures_every_twin_through_pgbouncer(
    pgbouncer: PgBouncer,  # only for its verdict on a missing pgbouncer: skip, or fail in CI
) -> None:
    out = io.StringIO()
    results = run_bench(
        sizes=TINY,
        repeat=1,
        subjects=["pgqueue_ref PsycopgConnector", "pgqueue_ref AsyncpgConnector", MINIMAL],
        operations=["enqueue_one", "enqueue_batch", "drain", "latency"],
        pgbouncer=True,
        out=out,
    )
    assert results.failures == {}, out.getvalue()
    twins = [
        "pgqueue_ref PsycopgConnector via PgBouncer",
        "pgqueue_ref AsyncpgConnector via PgBouncer",
    ]
    for twin in twins:
        for operation in ("enqueue_one", "enqueue_batch", "drain", "latency_p50", "latency_p95"):
            assert (twin, operation) in results.measurements, (twin, operation)
    # drain and latency of five subjects (the minimal loop has no twin): every job once
    assert len(results.checks) == 10 and all(check.ok for check in results.checks)
    # A deaf LISTEN would fall back to polling (every 1 s, so some 500 ms at the median):
    # a real wake-up through listen_dsn is far below it.
    for twin in twins:
        assert results.median(find(twin), "latency_p50") < 250, out.getvalue()
    _, rows = results.pooled_rows()
    assert [row[0] for row in rows] == [
        "pgqueue_ref PsycopgConnector",
        "pgqueue_ref AsyncpgConnector",
    ]
    assert all(cell.endswith("×") for row in rows for cell in row[1:6]), rows
    assert "PgBouncer transaction mode on port" in out.getvalue()
    assert results.meta["pgbouncer"].startswith("PgBouncer")
    assert pooled_module.POOLER_ENV not in os.environ  # announced for the run only
