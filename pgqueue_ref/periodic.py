"""Periodic tasks of the App face (``@app.periodic``), and the cron loop both faces share.

::

    @app.periodic(cron="*/10 * * * * *", periodic_id="ten-seconds")  # sixth field: seconds
    @app.task(name="tick")
    async def tick(timestamp: int) -> None:   # the period's start, epoch seconds
        ...

Every continuous worker (``wait=True``) of an app with periodic tasks runs a
:class:`PeriodicDeferrer` beside its fetcher. It sleeps until the next period
of any periodic task, then defers one job per periodic task due. Any number of
workers may do so at once: each period is deferred **exactly once**, because
the database takes one row per (task, periodic id, period) in
``pgqueue_periodic_defers`` and inserts the job in the same statement only if
that row went in (``defer_periodic_job`` in ``sql/queries.sql``).

Missed periods (:func:`due_periods`, the same on the Queue face):

* a deferrer that starts defers only the **latest** period, and only if it
  began at most ``max_delay`` seconds ago (default 600, procrastinate's
  ``MAX_DELAY``): a worker back after a 10-minute outage defers one job of a
  per-second schedule, not 600;
* a running deferrer that wakes late (a loaded machine) defers every period
  since the last one it handled, back to ``max_delay`` seconds ago at most.

Periods are computed by croniter in UTC from the worker's clock; the
database's row, not the clock, decides who defers.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from croniter import croniter

from .exceptions import AlreadyEnqueued, InvalidCronExpression, InvalidPeriodicTask, PgQueueError
from .tasks import JobDeferrer, TaskDefinition

if TYPE_CHECKING:
    from .app import App

__all__ = [
    "MAX_DELAY",
    "Cron",
    "PeriodLoop",
    "PeriodicDeferrer",
    "PeriodicTask",
    "check_takes_timestamp",
    "due_periods",
]

logger = logging.getLogger(__name__)

#: Seconds: a period that began longer ago than this is never deferred (procrastinate's).
MAX_DELAY = 600.0
#: Seconds the loop oversleeps each tick, so that it never wakes just before one.
MARGIN = 0.05


class Cron:
    """A cron expression, checked once: five fields, or six with seconds last
    (croniter's order: minute hour day-of-month month day-of-week [second])."""

    def __init__(self, expression: str) -> None:
        if not isinstance(expression, str) or not croniter.is_valid(expression):
            raise InvalidCronExpression(
                f"cron expression {expression!r} is not valid: expected 5 fields "
                "(minute hour day-of-month month day-of-week, e.g. '*/5 * * * *') or 6 with "
                "seconds last (e.g. '* * * * * */10' for every 10 seconds)"
            )
        #: Normalised, as PgQueuer stores it: fields joined by single spaces.
        self.expression = " ".join(croniter(expression).expressions)

    def __repr__(self) -> str:
        return f"Cron({self.expression!r})"

    def previous(self, at: float) -> int:
        """The start of the latest period at or before ``at`` (epoch seconds)."""
        return int(croniter(self.expression, math.floor(at) + 1).get_prev(float))

    def next(self, at: float) -> int:
        """The start of the first period strictly after ``at``."""
        return int(croniter(self.expression, math.floor(at)).get_next(float))


def due_periods(cron: Cron, last: int | None, now: float, max_delay: float) -> list[int]:
    """The periods to fire now, oldest first (the missed-period policy).

    ``last`` is the last period this loop handled, None when it just started:
    then only the latest period, else every period after ``last``; in both
    cases none that began more than ``max_delay`` seconds before ``now``.
    """
    oldest = now - max_delay
    if last is None:
        latest = cron.previous(now)
        return [latest] if latest >= oldest else []
    periods: list[int] = []
    period = cron.next(max(last, math.ceil(oldest) - 1))
    while period <= now:
        if period >= oldest:
            periods.append(period)
        period = cron.next(period)
    return periods


class PeriodLoop:
    """Sleep until the next period of any cron, fire what is due, again: both faces'
    periodic loops. A subclass says what firing means (``fire``)."""

    def __init__(self, crons: Mapping[tuple[str, str], Cron], max_delay: float) -> None:
        if max_delay < 0:
            raise ValueError(f"max_delay={max_delay!r}: expected 0 or more seconds")
        self.crons = dict(crons)
        self.max_delay = max_delay
        #: The last period handled per key, (task name, periodic id) or (entrypoint,
        #: expression): fired, or found already fired by another worker.
        self.last: dict[tuple[str, str], int] = {}

    async def fire(self, key: tuple[str, str], period: int) -> None:
        raise NotImplementedError

    async def tick(self, now: float) -> None:
        """Fire every period due at ``now``. A database error leaves the period for the
        next tick (the policy's catch-up, within ``max_delay``)."""
        for key, cron in self.crons.items():
            for period in due_periods(cron, self.last.get(key), now, self.max_delay):
                try:
                    await self.fire(key, period)
                except PgQueueError as error:
                    logger.warning("period %s of %r not fired, retrying: %s", period, key, error)
                    break
                self.last[key] = period

    async def run_forever(self) -> None:
        if not self.crons:
            return
        while True:
            now = time.time()
            await self.tick(now)
            wake = min(cron.next(now) for cron in self.crons.values())
            await asyncio.sleep(max(0.0, wake - time.time()) + MARGIN)


# -- the App face ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PeriodicTask:
    """One ``@app.periodic`` registration: a task, its cron, and its job options."""

    definition: TaskDefinition
    cron: Cron
    periodic_id: str = ""
    #: Arguments given to every job beside ``timestamp``.
    task_kwargs: Mapping[str, Any] = field(default_factory=dict)
    #: Options of ``task.configure(...)``: queue, priority, lock, queueing_lock.
    configure_kwargs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        return (self.definition.name, self.periodic_id)


def check_takes_timestamp(definition: TaskDefinition) -> None:
    """A periodic task's function is called with ``timestamp=<int>``: it must accept it."""
    parameters = inspect.signature(definition.func).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return
    if any(p.name == "timestamp" and p.kind is not p.POSITIONAL_ONLY for p in parameters):
        return
    raise InvalidPeriodicTask(
        f"periodic task {definition.name!r} takes no 'timestamp' parameter, but each of its "
        "jobs is called with timestamp=<the period's start, epoch seconds>: add it, e.g. "
        "'async def tick(timestamp: int): ...'"
    )


class PeriodicDeferrer(PeriodLoop):
    """The App face's loop: defers one job per due period of each periodic task."""

    def __init__(self, app: App, max_delay: float = MAX_DELAY) -> None:
        self.app = app
        self.periodic_tasks = dict(app.periodic_tasks)
        super().__init__({key: task.cron for key, task in self.periodic_tasks.items()}, max_delay)

    async def fire(self, key: tuple[str, str], period: int) -> None:
        await self.defer(self.periodic_tasks[key], period)

    async def defer(self, periodic: PeriodicTask, period: int) -> int | None:
        """Defer ``periodic``'s job for ``period``; its id, or None if another worker had."""
        deferrer = JobDeferrer(self.app, periodic.definition, **periodic.configure_kwargs)
        spec = deferrer.job_spec({**periodic.task_kwargs, "timestamp": period})
        try:
            job_id = await self.app.job_manager.defer_periodic_async(
                spec, periodic.periodic_id, period, self.max_delay
            )
        except AlreadyEnqueued:
            logger.info(
                "periodic task %r, period %s: not deferred, a waiting job holds its "
                "queueing lock %r", periodic.definition.name, period, spec.queueing_lock,
            )  # fmt: skip
            return None
        if job_id is not None:
            logger.info(
                "periodic task %r deferred for %s: job %s", periodic.definition.name, period, job_id
            )
        return job_id
