"""What the dashboard reads, and the figures of ``/metrics``, from Python too.

Every read is a :class:`~pgqueue_ref.manager.Call` on a ``dashboard_*`` named
query of ``sql/queries.sql``, run by the app's
:class:`~pgqueue_ref.manager.JobManager` like any other statement, so it works
on every async connector. Nothing here needs the ``dashboard`` extra:
a notebook can plot the same figures that Prometheus scrapes::

    figures = await read_figures_async(app.job_manager)
    figures.finished_per_second  # {"succeeded": 12.5, "failed": 0.2, ...}
    figures.durations.cumulative()  # [(0.005, 3), (0.01, 7), ..., (inf, 40)]
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..connectors import Row
from ..manager import Call, JobManager
from ..sql import QUERIES

__all__ = [
    "DURATION_BUCKETS",
    "OUTCOMES",
    "STALLED_AFTER",
    "Counts",
    "DurationHistogram",
    "Figures",
    "Overview",
    "read_figures",
    "read_figures_async",
    "read_overview_async",
]

#: How a job can finish: the statuses it never leaves (until a retry).
OUTCOMES = ("succeeded", "failed", "cancelled", "aborted")
#: Every status, in the order a job goes through them.
STATUSES = ("todo", "doing", *OUTCOMES)
#: Upper bounds (seconds) of the job duration histogram: Prometheus' default
#: buckets, and a few longer ones, since jobs often run for minutes.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                    300.0, 900.0)  # fmt: skip
#: A worker silent for longer is dead (the worker's own default ``stalled_after``).
STALLED_AFTER = 30.0


# -- the figures of /metrics ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DurationHistogram:
    """How long finished jobs ran, from claim to finish, in Prometheus' buckets.

    ``counts[i]`` jobs took at most ``bounds[i]`` seconds and more than the
    bound before; the last count, one more than there are bounds, is of the
    jobs longer than every bound (Prometheus' ``+Inf`` bucket).
    """

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    total_seconds: float

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[float, int]]:
        """``[(le, jobs that took at most le seconds)]``, ending with ``(inf, count)``."""
        total, out = 0, []
        for bound, count in zip((*self.bounds, math.inf), self.counts, strict=True):
            total += count
            out.append((bound, total))
        return out


@dataclass(frozen=True, slots=True)
class Figures:
    """The figures of ``/metrics`` at one moment (``at``, by the database's clock)."""

    at: datetime.datetime
    #: Jobs in the table, per (queue, status).
    jobs: dict[tuple[str, str], int]
    #: Jobs finished per second over the last ``window`` seconds, per outcome.
    finished_per_second: dict[str, float]
    window: float
    #: Workers whose heartbeat is younger than ``stalled_after`` seconds.
    live_workers: int
    #: Seconds the oldest due job has waited since it became due; None: no job waits.
    oldest_waiting_age: float | None
    durations: DurationHistogram

    def jobs_rows(self) -> list[dict[str, Any]]:
        """``jobs`` as rows (for ``pgqueue_ref.display.table``)."""
        return [{"queue": q, "status": s, "jobs": n} for (q, s), n in sorted(self.jobs.items())]


def _counts_call() -> Call[list[Row]]:
    return Call(QUERIES["dashboard_counts"], {}, list)


def _figures_calls(
    window: float, stalled_after: float, bounds: Sequence[float]
) -> tuple[Call[list[Row]], Call[list[Row]], Call[list[Row]]]:
    if not window > 0:
        raise ValueError(f"window={window!r}: expected a number of seconds > 0")
    if list(bounds) != sorted(set(bounds)) or not bounds:
        raise ValueError(f"bounds={bounds!r}: expected increasing seconds, at least one")
    single = Call(QUERIES["dashboard_figures"], {"window": window, "stalled_after": stalled_after},
                  list)  # fmt: skip
    durations = Call(QUERIES["dashboard_durations"], {"bounds": list(bounds)}, list)
    return _counts_call(), single, durations


def _figures(
    window: float, bounds: Sequence[float], counts: list[Row], single: list[Row],
    durations: list[Row],
) -> Figures:  # fmt: skip
    jobs: dict[tuple[str, str], int] = {}
    for row in counts:
        key = (row["queue"], row["status"])
        jobs[key] = jobs.get(key, 0) + int(row["count"])
    one = single[0]
    per_bucket = {row["bucket"]: int(row["count"]) for row in durations}
    histogram = DurationHistogram(
        bounds=tuple(bounds),
        counts=tuple(per_bucket.get(i, 0) for i in range(len(bounds) + 1)),
        total_seconds=float(sum(row["seconds"] for row in durations)),
    )
    age = one["oldest_waiting_age"]
    return Figures(
        at=one["at"],
        jobs=jobs,
        finished_per_second={outcome: int(one[outcome]) / window for outcome in OUTCOMES},
        window=window,
        live_workers=int(one["live_workers"]),
        oldest_waiting_age=None if age is None else max(0.0, float(age)),
        durations=histogram,
    )


async def read_figures_async(
    jobs: JobManager,
    *,
    window: float = 60.0,
    stalled_after: float = STALLED_AFTER,
    bounds: Sequence[float] = DURATION_BUCKETS,
) -> Figures:
    """The figures of ``/metrics``, read now (three statements)."""
    calls = _figures_calls(window, stalled_after, bounds)
    rows = [await jobs.run_async(call) for call in calls]
    return _figures(window, bounds, *rows)


def read_figures(
    jobs: JobManager,
    *,
    window: float = 60.0,
    stalled_after: float = STALLED_AFTER,
    bounds: Sequence[float] = DURATION_BUCKETS,
) -> Figures:
    """The blocking twin of :func:`read_figures_async` (a sync connector, a script)."""
    calls = _figures_calls(window, stalled_after, bounds)
    return _figures(window, bounds, *(jobs.run(call) for call in calls))


# -- what the page shows -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Counts:
    """Jobs of one queue or one task: per status, and in all."""

    name: str
    by_status: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.by_status.values())


@dataclass(frozen=True, slots=True)
class Overview:
    """Everything one refresh of the page shows."""

    at: datetime.datetime
    queues: list[Counts]
    tasks: list[Counts]
    throughput: list[Row]  # start, at, succeeded, failed, cancelled, aborted
    bucket_seconds: float
    workers: list[Row]
    running: list[Row]
    failed: list[Row]
    scheduled: list[Row]
    periodic: list[Row]
    schedules: list[Row]  # the Queue face's @pgq.schedule rows
    #: The jobs of the queue or task clicked (both None: the newest jobs).
    queue: str | None
    task: str | None
    jobs: list[Row]

    def totals(self) -> dict[str, int]:
        """Jobs per status, over every queue."""
        return {status: sum(q.by_status.get(status, 0) for q in self.queues) for status in STATUSES}


def _group(rows: list[Row], key: str) -> list[Counts]:
    groups: dict[str, Counts] = {}
    for row in rows:
        counts = groups.setdefault(row[key], Counts(row[key]))
        counts.by_status[row["status"]] = counts.by_status.get(row["status"], 0) + int(row["count"])
    return [groups[name] for name in sorted(groups)]


def _jobs_call(
    queue: str | None = None, task: str | None = None, status: str | None = None, limit: int = 20
) -> Call[list[Row]]:
    params = {"queue": queue, "task_name": task, "status": status, "limit": limit}
    return Call(QUERIES["dashboard_jobs"], params, list)


async def read_overview_async(
    jobs: JobManager,
    *,
    queue: str | None = None,
    task: str | None = None,
    limit: int = 20,
    bucket_seconds: float = 10.0,
    buckets: int = 30,
) -> Overview:
    """One refresh of the page: counts, throughput, workers, failed, running,
    scheduled and periodic jobs, and the jobs of ``queue`` and/or ``task``."""
    counts = await jobs.run_async(_counts_call())
    throughput = await jobs.run_async(
        Call(QUERIES["dashboard_throughput"], {"bucket": bucket_seconds, "buckets": buckets}, list)
    )
    return Overview(
        at=throughput[0]["at"],  # one row per bucket, never none
        queues=_group(counts, "queue"),
        tasks=_group(counts, "task_name"),
        throughput=throughput,
        bucket_seconds=bucket_seconds,
        workers=await jobs.run_async(Call(QUERIES["dashboard_workers"], {}, list)),
        running=await jobs.run_async(_jobs_call(status="doing", limit=limit)),
        failed=await jobs.run_async(_jobs_call(status="failed", limit=limit)),
        scheduled=await jobs.run_async(
            Call(QUERIES["dashboard_scheduled_jobs"], {"limit": limit}, list)
        ),
        periodic=await jobs.run_async(Call(QUERIES["dashboard_periodic"], {}, list)),
        schedules=await jobs.list_schedules_async(),
        queue=queue,
        task=task,
        jobs=await jobs.run_async(_jobs_call(queue=queue, task=task, limit=limit * 2)),
    )
