"""Schedules of the Queue face (PgQueuer's ``@pgq.schedule``), run by ``pgq.run()``.

::

    @pgq.schedule("cleanup", "*/5 * * * *")
    async def cleanup(schedule: Schedule) -> None:    # or (schedule, context)
        ...

    await pgq.run()    # continuous: fires each period once across every consumer

A schedule is a row of ``pgqueue_schedules``, one per entrypoint and cron
expression, made by the first consumer that starts with it. Each consumer
runs a :class:`Scheduler` beside its fetcher (continuous mode only) and, when
a period is due, claims it: ``claim_schedule`` moves the row's ``last_run``
forward to that period, which one consumer only can do; that consumer calls
the callback, in its own process, as PgQueuer does (a schedule is not a job:
it has no retries and no row in ``pgqueue_jobs``). Missed periods follow
:func:`pgqueue_ref.periodic.due_periods`, as on the App face.
"""

from __future__ import annotations

import asyncio
import datetime
import inspect
import logging
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from .connectors import Row
from .exceptions import ConnectorException
from .manager import JobManager
from .periodic import MAX_DELAY, Cron, PeriodLoop

__all__ = ["Schedule", "ScheduleContext", "ScheduleEntry", "Scheduler", "schedule_entry"]

logger = logging.getLogger(__name__)

#: Seconds between tries to register the schedules while the database fails:
#: the first wait, and the longest (each wait doubles the last).
REGISTER_RETRY_FIRST = 0.5
REGISTER_RETRY_MAX = 30.0
#: Seconds between two heartbeats of a schedule whose callback runs.
SCHEDULE_HEARTBEAT_INTERVAL = 5.0

ScheduleCallback = Callable[..., Any]


@dataclass(frozen=True, slots=True)
class Schedule:
    """What a schedule's callback receives: its row, with PgQueuer 1.6's fields.

    ``last_run`` is the start of the period firing now (PgQueuer: when the last
    run ended), ``next_run`` the start of the one after, ``status`` ``'picked'``
    while the callback runs, ``heartbeat`` when this consumer claimed it.
    """

    id: int
    expression: str
    heartbeat: datetime.datetime
    created: datetime.datetime
    updated: datetime.datetime
    next_run: datetime.datetime
    last_run: datetime.datetime | None
    status: str
    entrypoint: str

    @classmethod
    def from_row(cls, row: Row) -> Schedule:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})


@dataclass(frozen=True, slots=True)
class ScheduleContext:
    """Given to callbacks that take a second argument (PgQueuer's ``ScheduleContext``):
    the ``resources`` mapping handed to PgQueuer, shared, never copied."""

    resources: MutableMapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ScheduleEntry:
    """One ``@pgq.schedule`` registration."""

    entrypoint: str
    cron: Cron
    func: ScheduleCallback
    wants_context: bool


def schedule_entry(entrypoint: str, expression: str, func: ScheduleCallback) -> ScheduleEntry:
    """Check a registration: a cron croniter reads (InvalidCronExpression otherwise),
    and a callback that takes the Schedule."""
    cron = Cron(expression)
    parameters = inspect.signature(func).parameters.values()
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    varargs = any(p.kind is p.VAR_POSITIONAL for p in parameters)
    if not positional and not varargs:
        raise TypeError(
            f"schedule {entrypoint!r} takes no argument, but it is called with its Schedule: "
            "write 'async def f(schedule): ...' (or 'def f(schedule, context): ...')"
        )
    return ScheduleEntry(entrypoint, cron, func, varargs or len(positional) >= 2)


def _utc(timestamp: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC)


class Scheduler(PeriodLoop):
    """The Queue face's loop: claims each due period of each schedule, and runs the
    callback of the ones it won."""

    def __init__(
        self,
        manager: JobManager,
        entries: Mapping[tuple[str, str], ScheduleEntry],
        resources: MutableMapping[str, Any],
        max_delay: float = MAX_DELAY,
        heartbeat_interval: float = SCHEDULE_HEARTBEAT_INTERVAL,
    ) -> None:
        if not heartbeat_interval > 0:
            raise ValueError(f"heartbeat_interval={heartbeat_interval!r}: expected seconds above 0")
        self.heartbeat_interval = heartbeat_interval
        self.manager = manager
        self.entries = dict(entries)
        self.resources = resources
        super().__init__({key: entry.cron for key, entry in self.entries.items()}, max_delay)

    async def run_forever(self) -> None:
        if not self.entries:
            return
        await self._register()
        await super().run_forever()

    async def _heartbeat(self, schedule_id: int) -> None:
        """While a callback runs: the row's heartbeat, every ``heartbeat_interval``."""
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            try:
                await self.manager.heartbeat_schedule_async(schedule_id)
            except ConnectorException as error:  # the next beat may go through
                logger.warning("schedule heartbeat not written: %s", error)

    async def _register(self) -> None:
        """Write the schedules' rows; while the database fails, try again (0.5 s, then
        doubling up to 30 s): a consumer that started while its database was
        unreachable, or before its schema was applied, still fires its schedules
        once the database answers."""
        delay = REGISTER_RETRY_FIRST
        while True:
            now = datetime.datetime.now(datetime.UTC).timestamp()
            rows = [
                (e.entrypoint, e.cron.expression, _utc(e.cron.next(now)))
                for e in self.entries.values()
            ]
            try:
                await self.manager.register_schedules_async(rows)
                return
            except ConnectorException as error:
                logger.warning("schedules not registered, retrying in %.1f s: %s", delay, error)
            await asyncio.sleep(delay)
            delay = min(delay * 2, REGISTER_RETRY_MAX)

    async def fire(self, key: tuple[str, str], period: int) -> None:
        entry = self.entries[key]
        expression = entry.cron.expression
        row = await self.manager.claim_schedule_async(
            entry.entrypoint, expression, _utc(period), _utc(entry.cron.next(period))
        )
        if row is None:
            return  # another consumer fired this period
        schedule = Schedule.from_row(row)
        beating = asyncio.create_task(self._heartbeat(schedule.id))
        try:
            args = (
                (schedule, ScheduleContext(self.resources)) if entry.wants_context else (schedule,)
            )
            if inspect.iscoroutinefunction(entry.func):
                await entry.func(*args)
            else:
                await asyncio.to_thread(entry.func, *args)
        except Exception:  # a failing callback never stops the consumer
            logger.exception("schedule %r (%s) failed", entry.entrypoint, expression)
        finally:
            beating.cancel()
            await asyncio.gather(beating, return_exceptions=True)
            # Also when cancelled (the consumer stopping): the row goes back to 'queued'.
            await asyncio.shield(self.manager.release_schedule_async(schedule.id))
