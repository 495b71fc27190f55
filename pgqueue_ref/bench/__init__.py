"""``python -m pgqueue_ref bench``: pgqueue_ref beside procrastinate, PgQueuer and the limit.

A benchmark, not a test. Every *subject* (each connector and driver of
pgqueue_ref that is installed, procrastinate and PgQueuer when the ``bench``
extra is, and a minimal SQL loop as the limit) is measured in one run, on
fresh databases of one PostgreSQL server with stock settings, by the same code
(:mod:`.runner`): enqueue one by one, batch enqueue, drain by one worker
process, defer→start latency, and the worker's memory over a long drain.
Each measurement is repeated; the table shows medians with min–max, and the
ratios between subjects measured side by side, the only honest comparison on
a shared machine. Every worker run checks that each job ran exactly once and
none was left.

The package: :mod:`.subject` (what a subject is), :mod:`.registry` (one line
per subject), :mod:`.app_api` and :mod:`.queue_api` (procrastinate's and
PgQueuer's APIs, which pgqueue_ref's two faces reproduce, so one piece of code
measures both), :mod:`.minimal` (the limit), :mod:`.child` (the worker
process), :mod:`.runner` (the measurements), :mod:`.report` (table, JSON, plot),
:mod:`.pooled` (``--pgbouncer``: pgqueue_ref's subjects through a transaction
pooler, beside their direct runs).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import functools
import importlib.metadata
import os
import platform
import subprocess
import sys
import traceback
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TextIO

import psycopg

from .. import embedded
from ..pooler import find_pgbouncer
from . import runner
from .minimal import MINIMAL
from .pooled import require_pgbouncer, running_pgbouncer
from .producers import measure_producers
from .registry import POOLED, SUBJECTS
from .report import Results, plot_scaling
from .runner import Sizes
from .subject import Subject

__all__ = ["OPERATIONS", "POOLED", "SUBJECTS", "Results", "Sizes", "run_bench", "select_subjects"]

OPERATIONS = ("enqueue_one", "enqueue_batch", "drain", "latency", "memory", "producers", "scaling")

#: The subjects whose drain is measured with 1, 2, 4... worker processes (``scaling``).
SCALING = ("pgqueue_ref AsyncpgConnector", "pgqueue_ref PsycopgConnector", MINIMAL)


def select_subjects(patterns: Sequence[str] | None, *, pooled: bool = False) -> list[Subject]:
    """The installed subjects whose name contains one of ``patterns`` (all if None).

    ``pooled``: each one that has a twin behind a transaction pooler is followed by
    that twin (:mod:`.pooled`), so that the two sit side by side in the tables."""
    if not patterns:
        chosen = list(SUBJECTS.values())
    else:
        chosen = [
            s for s in SUBJECTS.values() if any(p.lower() in s.name.lower() for p in patterns)
        ]
    if not chosen:
        raise ValueError(
            f"no installed subject matches {list(patterns or [])}; installed: {', '.join(SUBJECTS)}"
        )
    if not pooled:
        return chosen
    if not any(s.name in POOLED for s in chosen):
        raise ValueError(
            f"--pgbouncer: none of {[s.name for s in chosen]} runs through a pooler; "
            f"those that do: {', '.join(POOLED)}"
        )
    return [t for s in chosen for t in ([s, POOLED[s.name]] if s.name in POOLED else [s])]


def _plan(
    subjects: Sequence[Subject], operations: Sequence[str], repeat: int
) -> list[tuple[Subject, str]]:
    """Every (subject, operation) to run, round-robin: one repetition of everything, then the
    next. On a shared machine the load drifts; interleaving gives every subject the same drift."""
    plan = []
    for _ in range(repeat):
        for operation in ("enqueue_one", "enqueue_batch", "drain", "latency"):
            if operation in operations:
                plan += [
                    (s, operation)
                    for s in subjects
                    if s.can_run_worker or operation.startswith("enqueue")
                ]
    if "memory" in operations:  # one long run each, for pgqueue_ref's own workers, direct
        plan += [
            (s, "memory")
            for s in subjects
            if s.can_run_worker and s.family == "pgqueue_ref" and s.direct is None
        ]
    return plan


async def _measure(
    subjects: list[Subject], operations: Sequence[str], sizes: Sizes, repeat: int, out: TextIO
) -> Results:
    results = Results(subjects, repeat)
    plan: list[tuple[str, str, Callable[[], Awaitable[str]]]] = [
        (subject.name, operation, functools.partial(_one, results, subject, operation, sizes))
        for subject, operation in _plan(subjects, operations, repeat)
    ]
    plan += _rounds(results, subjects, operations, sizes, repeat)
    for done, (name, operation, step) in enumerate(plan, start=1):
        if name in results.failures:
            continue
        prefix = f"\r[{done}/{len(plan)}] {name}: "
        print((prefix + f"{operation} ...").ljust(100), end="", file=out, flush=True)
        try:
            text = await step()
        except Exception as error:  # noqa: BLE001 - one subject failing must not hide the others
            results.failures[name] = f"{operation}: {error}"
            print(f"\n{name} failed during {operation}:", file=out)
            traceback.print_exception(error, file=out)
            continue
        print((prefix + text).ljust(100), end="", file=out, flush=True)
    print(file=out)
    return results


def _rounds(
    results: Results, subjects: list[Subject], operations: Sequence[str], sizes: Sizes, repeat: int
) -> list[tuple[str, str, Callable[[], Awaitable[str]]]]:
    """The steps of ``producers`` and ``scaling``, round-robin like the others."""
    steps: list[tuple[str, str, Callable[[], Awaitable[str]]]] = []
    scaling = [s for s in subjects if s.name in SCALING]
    for _ in range(repeat):
        if "producers" in operations:
            steps += [
                (
                    "producers",
                    f"{p} producers, worker {worker}",
                    functools.partial(
                        measure_producers, results.producers, p, worker, sizes.producer_jobs
                    ),
                )
                for worker in ("none", "busy")
                for p in sizes.producers
            ]
        if "scaling" in operations:
            steps += [
                (s.name, f"drain by {k} processes", functools.partial(_scale, results, s, k, sizes))
                for s in scaling
                for k in sizes.processes
            ]
    return steps


async def _scale(results: Results, subject: Subject, processes: int, sizes: Sizes) -> str:
    rate, check = await runner.drain_processes(subject, sizes.scaling_jobs, processes)
    results.scaling.setdefault((subject.name, processes), []).append(rate)
    results.checks.append(check)
    return f"drain by {processes} processes {rate:,.0f} jobs/s"


async def _one(results: Results, subject: Subject, operation: str, sizes: Sizes) -> str:
    name = subject.name
    if operation == "enqueue_one":
        rate = await runner.enqueue_one(subject, sizes.one_by_one)
        results.add(name, operation, sizes.one_by_one, rate)
        return f"enqueue 1 by 1 {rate:,.0f} jobs/s"
    if operation == "enqueue_batch":
        rate = await runner.enqueue_batch(subject, sizes.batch)
        results.add(name, operation, sizes.batch, rate)
        return f"batch enqueue {rate:,.0f} jobs/s"
    if operation == "drain":
        rate, check = await runner.drain(subject, sizes.drain)
        results.add(name, operation, sizes.drain, rate)
        results.checks.append(check)
        return f"drain {rate:,.0f} jobs/s"
    if operation == "latency":
        p50, p95, check = await runner.latency(
            subject, sizes.latency_samples, sizes.latency_gap, sizes.latency_budget
        )
        results.add(name, "latency_p50", sizes.latency_samples, p50)
        results.add(name, "latency_p95", sizes.latency_samples, p95)
        results.checks.append(check)
        return f"latency p50 {p50:.2f} ms, p95 {p95:.2f} ms"
    curve, check = await runner.memory(subject, sizes.memory)
    results.memory.append(curve)
    results.checks.append(check)
    return f"memory {curve.start / 2**20:.1f} → {curve.end / 2**20:.1f} MB"


def _versions() -> dict[str, str]:
    found = {}
    for package in ("pgqueue_ref", "psycopg", "asyncpg", "aiopg", "procrastinate", "pgqueuer"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def _pgbouncer_version() -> str:
    program = find_pgbouncer()
    if program is None:
        return "?"
    found = subprocess.run([program, "--version"], capture_output=True, text=True, check=False)
    first = (found.stdout or found.stderr).strip().splitlines()
    return first[0] if first else "?"


def _server_version(dsn: str) -> str:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return f"PostgreSQL {row[0] if row else '?'}"


def run_bench(
    *,
    sizes: Sizes | None = None,
    repeat: int = 3,
    subjects: Sequence[str] | None = None,
    operations: Sequence[str] = OPERATIONS,
    output: Path | None = None,
    plot: Path | None = None,
    command: str = "",
    pgbouncer: bool = False,
    out: TextIO = sys.stdout,
) -> Results:
    """Measure, print, and write the results.

    ``pgbouncer``: also measure each chosen subject of pgqueue_ref through a PgBouncer in
    transaction mode in front of the same server, beside its direct run (:mod:`.pooled`);
    raises :class:`~pgqueue_ref.pooler.PgBouncerError` at once if pgbouncer is missing.
    """
    sizes = sizes or Sizes()
    chosen = select_subjects(subjects, pooled=pgbouncer)
    missing = [op for op in operations if op not in OPERATIONS]
    if missing:
        raise ValueError(f"unknown operations {missing}: choose among {', '.join(OPERATIONS)}")
    if pgbouncer:
        require_pgbouncer()  # before anything starts
    print("subjects: " + ", ".join(s.name for s in chosen), file=out)
    print("starting PostgreSQL (stock settings; or PGQUEUE_REF_DSN) ...", file=out, flush=True)
    try:
        dsn = embedded.default_dsn()
        with contextlib.ExitStack() as stack:
            if pgbouncer:
                bouncer = stack.enter_context(running_pgbouncer(dsn))
                print(
                    f"PgBouncer {bouncer.pool_mode} mode on port {bouncer.port}, "
                    f"in front of the server",
                    file=out,
                    flush=True,
                )
            results = asyncio.run(_measure(chosen, operations, sizes, repeat, out))
        results.meta = {
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "server": _server_version(dsn),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "versions": _versions(),
            "sizes": sizes.__dict__,
            "repeat": repeat,
            "command": command,
            "pgbouncer": _pgbouncer_version() if pgbouncer else None,
        }
    finally:
        embedded.stop_default_server()
    print(results.text(), file=out)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(results.to_json())
        output.with_suffix(".md").write_text(results.markdown())
        print(f"wrote {output} and {output.with_suffix('.md')}", file=out)
    if plot is not None:
        try:
            results.plot(plot)
            print(f"wrote {plot}", file=out)
            if results.producers or results.scaling:
                beside = plot.with_name(plot.stem + "-scaling" + plot.suffix)
                plot_scaling(results, beside)
                print(f"wrote {beside}", file=out)
        except ImportError:
            print("matplotlib is not installed: no plot (pip install matplotlib)", file=out)
    return results
