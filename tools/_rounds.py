"""What tools/claim_ceiling.py and tools/drain_ceiling.py share: a table freshly filled
with no-op jobs, our claim's parameters, the checks that every job was taken exactly
once, subjects measured in turn round after round on one server, and a Markdown table
of their medians."""

from __future__ import annotations

import statistics
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping
from typing import Any

import asyncpg

from pgqueue_ref.sql import QUERIES, to_numbered

#: One subject: given the server's DSN and a number of jobs, its rate in jobs/s.
Measure = Callable[[str, int], Awaitable[float]]

FETCH, FETCH_NAMES = to_numbered(str(QUERIES["fetch_jobs"]))
_FILL = (
    "INSERT INTO pgqueue_jobs (face, task_name, args) "
    "SELECT $1, 'noop', jsonb_build_object('n', n) FROM generate_series(1, $2) AS n"
)


async def fresh_jobs(dsn: str, face: str, jobs: int) -> None:
    """An empty queue (no job, no worker), then ``jobs`` no-op jobs of ``face``, their
    arguments ``{"n": 1..jobs}``, vacuumed and analysed."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("TRUNCATE pgqueue_jobs, pgqueue_workers CASCADE")
        await conn.execute(_FILL, face, jobs)
        await conn.execute("VACUUM ANALYZE pgqueue_jobs")
    finally:
        await conn.close()


def claim_args(
    worker_id: int, *, face: str, limit: int, task_names: list[str] | None = None
) -> list[Any]:
    """``fetch_jobs``' parameters in ``$n`` order: up to ``limit`` jobs of any queue."""
    values = {
        "face": face,
        "queues": None,
        "task_names": task_names,
        "limit": limit,
        "worker_id": worker_id,
    }
    return [values[name] for name in FETCH_NAMES]


def check(condition: bool, failure: str) -> None:
    """A measurement's own check; unlike ``assert`` it holds under ``python -O`` too."""
    if not condition:
        raise RuntimeError(failure)


def exactly_once(taken: Iterable[Hashable], jobs: int) -> None:
    """Each of ``jobs`` jobs taken (run, or claimed) once: no job missed, none twice."""
    times = Counter(taken)
    twice = sum(1 for n in times.values() if n > 1)
    check(len(times) == jobs and not twice, f"{len(times)} of {jobs} jobs taken, {twice} twice")


async def none_left(dsn: str) -> None:
    """No job waiting, and none claimed without an outcome."""
    conn = await asyncpg.connect(dsn)
    try:
        left = await conn.fetchval(
            "SELECT count(*) FROM pgqueue_jobs WHERE status IN ('todo', 'doing')"
        )
    finally:
        await conn.close()
    check(left == 0, f"{left} jobs left waiting or claimed")


async def round_robin(
    subjects: Mapping[str, Measure], dsn: str, jobs: int, repeat: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Every subject once, then again, ``repeat`` times: a drift in the machine's load
    touches them alike. Returns the rates (jobs/s), and this process's CPU per job (µs,
    ``time.process_time``: the client's, with the job-running worker for drains run in
    process). Progress on stderr, one line a round."""
    rates: dict[str, list[float]] = {name: [] for name in subjects}
    cpu: dict[str, list[float]] = {name: [] for name in subjects}
    for round_ in range(repeat):
        for name, measure in subjects.items():
            started = time.process_time()
            rates[name].append(await measure(dsn, jobs))
            cpu[name].append((time.process_time() - started) / jobs * 1e6)
        print(f"round {round_ + 1} of {repeat} done", file=sys.stderr)
    return rates, cpu


def print_rates(
    rates: Mapping[str, list[float]],
    base: str,
    over: str,
    cpu: Mapping[str, list[float]] | None = None,
) -> None:
    """The medians in jobs/s, each over ``base``'s, as a Markdown table; with ``cpu``, a
    column of client CPU per job."""
    reference = statistics.median(rates[base])
    extra = " client CPU per job (µs) |" if cpu is not None else ""
    print(f"| subject | jobs/s | over {over} |{extra}")
    print("| --- | ---: | ---: |" + (" ---: |" if cpu is not None else ""))
    for name, measured in rates.items():
        median = statistics.median(measured)
        cells = f" {statistics.median(cpu[name]):.1f} |" if cpu is not None else ""
        print(f"| {name} | {median:,.0f} | {median / reference:.2f}x |{cells}")
