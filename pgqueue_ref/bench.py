"""``python -m pgqueue_ref bench``: throughput measured side by side, in one run.

A benchmark, not a test. For each *subject* (a connector or driver, later
other queues too), on a fresh database of one server with stock settings:

* enqueue one by one: N jobs, one ``defer`` each;
* batch enqueue: N jobs in one ``batch_defer``;
* drain: N no-op jobs waiting, then one worker runs them all (``wait=False``).

Each measurement is repeated; the table shows the median with min–max. The
drain checks that every job ran exactly once and none is left. Figures on a
shared machine are noisy: compare subjects measured in the same run, as ratios.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TextIO

from . import embedded
from ._table import format_table
from .app import App
from .psycopg_connector import PsycopgConnector

__all__ = ["Measurement", "Subject", "run_bench"]

Measure = Callable[[str, int], Awaitable[float]]  # (dsn, jobs) -> seconds


@dataclass(frozen=True)
class Subject:
    """Something to measure: one coroutine per operation, each returning seconds."""

    name: str
    enqueue_one: Measure
    enqueue_batch: Measure
    drain: Measure


@dataclass
class Measurement:
    subject: str
    operation: str
    jobs: int
    seconds: list[float] = field(default_factory=list)

    @property
    def rates(self) -> list[float]:
        return [self.jobs / s for s in self.seconds]

    @property
    def median(self) -> float:
        return statistics.median(self.rates)


# -- pgqueue_ref's App face ---------------------------------------------------


def _noop_app(dsn: str) -> App:
    app = App(connector=PsycopgConnector(conninfo=dsn, min_size=4, max_size=4))

    @app.task(name="noop")
    async def noop(n: int) -> None:
        return None

    return app


async def _app_enqueue_one(dsn: str, jobs: int) -> float:
    app = _noop_app(dsn)
    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        task = app.tasks["noop"]
        started = time.perf_counter()
        for n in range(jobs):
            await task.defer_async(n=n)
        return time.perf_counter() - started


async def _app_enqueue_batch(dsn: str, jobs: int) -> float:
    app = _noop_app(dsn)
    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        started = time.perf_counter()
        await app.tasks["noop"].batch_defer_async(*({"n": n} for n in range(jobs)))
        return time.perf_counter() - started


async def _app_drain(dsn: str, jobs: int) -> float:
    app = _noop_app(dsn)
    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        await app.tasks["noop"].batch_defer_async(*({"n": n} for n in range(jobs)))
        started = time.perf_counter()
        stats = await app.run_worker_async(wait=False, concurrency=16, prefetch=500)
        elapsed = time.perf_counter() - started
        counts = {(r["status"]): r["count"] for r in await app.job_manager.status_counts_async()}
    if stats.succeeded != jobs or counts != {"succeeded": jobs}:
        raise AssertionError(
            f"drain ran {stats} and left {counts}: expected {jobs} jobs run exactly once"
        )
    return elapsed


SUBJECTS = [
    Subject("pgqueue_ref PsycopgConnector", _app_enqueue_one, _app_enqueue_batch, _app_drain)
]


# -- running ------------------------------------------------------------------


async def _measure_all(
    subjects: list[Subject], sizes: dict[str, int], repeat: int, out: TextIO
) -> list[Measurement]:
    results: list[Measurement] = []
    total = len(subjects) * len(sizes) * repeat
    done = 0
    for subject in subjects:
        for operation, jobs in sizes.items():
            measurement = Measurement(subject.name, operation, jobs)
            for _ in range(repeat):
                dsn = embedded.scratch_database("bench")  # a fresh database per measurement
                seconds = await getattr(subject, operation)(dsn, jobs)
                measurement.seconds.append(seconds)
                done += 1
                print(
                    f"\r[{done}/{total}] {subject.name}: {operation} {jobs / seconds:,.0f} jobs/s   ",
                    end="",
                    file=out,
                    flush=True,
                )
            results.append(measurement)
    print(file=out)
    return results


def report(results: list[Measurement]) -> str:
    rows = []
    for m in results:
        rates = m.rates
        rows.append(
            [
                m.subject,
                m.operation,
                m.jobs,
                round(m.median),
                f"{min(rates):,.0f}–{max(rates):,.0f}",
            ]
        )
    return format_table(["subject", "operation", "jobs", "median jobs/s", "min–max"], rows)


def run_bench(
    *,
    jobs: int = 5000,
    one_by_one_jobs: int = 1000,
    repeat: int = 3,
    output: Path | None = None,
    out: TextIO = sys.stdout,
) -> list[Measurement]:
    sizes = {"enqueue_one": one_by_one_jobs, "enqueue_batch": jobs, "drain": jobs}
    print("starting PostgreSQL (stock settings; or PGQUEUE_REF_DSN) ...", file=out, flush=True)
    embedded.default_dsn()
    try:
        results = asyncio.run(_measure_all(SUBJECTS, sizes, repeat, out))
    finally:
        embedded.stop_default_server()
    print(report(results), file=out)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps([asdict(m) | {"median": m.median} for m in results], indent=2))
        print(f"wrote {output}", file=out)
    return results
