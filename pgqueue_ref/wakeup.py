"""How long an idle worker takes to start a job: measured, and said in words that stay put.

An idle worker sleeps until a notification wakes it (``LISTEN``; a job insert
sends one while a worker of its queue is idle, see docs/architecture.md,
"Wake-ups"), or until its next poll (``polling_interval``, 1 s by default).
Behind a transaction pooler its LISTEN goes deaf (see :mod:`pgqueue_ref.pooler`)
and only the polls are left. :func:`measure_wake_ups` shows the difference on a
real connector: it runs a worker, defers jobs at a steady pace that has nothing
to do with the worker's polls (so they arrive at every moment of its polling
cycle, as real jobs do), and times each one from the call to ``defer`` to the
start of its task::

    wake_ups = await measure_wake_ups(PsycopgConnector(conninfo=pooled, listen_dsn=direct))
    wake_ups          # WakeUps(PsycopgConnector, listen_dsn=True: listening=True, ...)
    wake_ups.seconds  # the raw numbers, e.g. for a plot

Raw milliseconds change from run to run, and a notebook compares its outputs
with the stored ones, so what it shows is a class (:func:`in_words`): "under
0.1 s" when a notification woke the worker, "0.1 to 1 s" when it waited for
a poll. The WARNINGs the worker logs meanwhile (the deaf-LISTEN one) are
collected in :attr:`WakeUps.warnings` rather than printed at some later moment.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from dataclasses import dataclass
from typing import Any

from .app import App
from .connectors import AsyncConnector

__all__ = ["TASK_NAME", "WakeUps", "in_words", "measure_wake_ups"]

#: The task the measuring worker runs, and the only one it fetches: other jobs
#: waiting in the same database are left alone.
TASK_NAME = "pgqueue_ref.wake_up"


def in_words(seconds: float, polling_interval: float = 1.0) -> str:
    """A wake-up time as one of three classes that do not change from run to run.

    ``"under 0.1 s"`` (below a tenth of ``polling_interval``): a notification woke
    the worker. ``"0.1 to 1 s"``: the job waited for a poll; the bound allows
    half an interval more for the claim itself and a busy machine. ``"over 1 s"``:
    slower than polling explains. (The numbers follow ``polling_interval``.)
    """
    fast = polling_interval / 10
    if seconds < fast:
        return f"under {fast:g} s"
    if seconds <= polling_interval * 1.5:
        return f"{fast:g} to {polling_interval:g} s"
    return f"over {polling_interval:g} s"


@dataclass(frozen=True)
class WakeUps:
    """What :func:`measure_wake_ups` saw. Its ``repr`` holds only stable values."""

    #: The connector's class name.
    connector: str
    #: Whether the connector had a ``listen_dsn`` of its own for its LISTEN.
    listen_dsn: bool
    #: Whether the worker's LISTEN heard its own test notification (``worker.listening``).
    listening: bool
    #: Seconds from each ``defer`` to the start of its job, in the order deferred.
    seconds: list[float]
    #: The messages of the WARNING (and worse) records the worker logged.
    warnings: list[str]
    polling_interval: float

    @property
    def median(self) -> str:
        """The median wake-up, :func:`in_words`."""
        return in_words(statistics.median(self.seconds), self.polling_interval)

    @property
    def slowest(self) -> str:
        """The slowest wake-up, :func:`in_words`."""
        return in_words(max(self.seconds), self.polling_interval)

    def row(self) -> dict[str, Any]:
        """One row for ``pgqueue_ref.display.table``, of the values its ``repr`` shows."""
        return {
            "connector": self.connector,
            "listen_dsn": self.listen_dsn,
            "listening": self.listening,
            "median wake-up": self.median,
            "slowest": self.slowest,
            "warnings": len(self.warnings),
        }

    def __repr__(self) -> str:
        warnings = len(self.warnings)
        return (
            f"WakeUps({self.connector}, listen_dsn={self.listen_dsn}: listening={self.listening}, "
            f"median {self.median}, slowest {self.slowest}, {len(self.seconds)} jobs, "
            f"{warnings} warning{'' if warnings == 1 else 's'})"
        )


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


async def measure_wake_ups(
    connector: AsyncConnector,
    *,
    jobs: int = 8,
    every: float = 0.25,
    polling_interval: float = 1.0,
    listen_check_timeout: float = 2.0,
) -> WakeUps:
    """Run a worker on ``connector`` (an App over it, opened and closed here), wait
    until its LISTEN check has answered (heard, or warned that it is deaf), then
    defer ``jobs`` jobs, one every ``every`` seconds, and time each one's start.

    ``connector`` must be unopened and its database have the schema. The worker
    uses ``polling_interval`` and ``listen_check_timeout`` as given, fetches only
    :data:`TASK_NAME` jobs, and is stopped before this returns.
    """
    app = App(connector=connector)
    started: dict[int, float] = {}

    @app.task(name=TASK_NAME)
    async def wake_up(n: int) -> None:
        started[n] = time.perf_counter()

    collect = _Collect()
    log = logging.getLogger("pgqueue_ref")
    log.addHandler(collect)  # also keeps Python's last-resort handler from printing them
    try:
        async with app.open_async():
            worker = app.worker(
                task_names=[TASK_NAME],
                polling_interval=polling_interval,
                listen_check_timeout=listen_check_timeout,
                name="wake-up-meter",
            )
            running = asyncio.create_task(worker.run())
            try:
                deadline = time.monotonic() + listen_check_timeout + 5
                while not (worker.listening.is_set() or collect.messages):
                    if time.monotonic() > deadline or running.done():
                        break
                    await asyncio.sleep(0.01)
                deferred: dict[int, float] = {}
                for n in range(jobs):
                    deferred[n] = time.perf_counter()
                    await wake_up.defer_async(n=n)
                    await asyncio.sleep(every)
                async with asyncio.timeout(polling_interval * 2 + 10):
                    while len(started) < jobs:
                        await asyncio.sleep(0.001)
                listening = worker.listening.is_set()
            finally:
                worker.stop()
                await running
    finally:
        log.removeHandler(collect)
    return WakeUps(
        connector=type(connector).__name__,
        listen_dsn=connector.listen_dsn is not None,
        listening=listening,
        seconds=[started[n] - deferred[n] for n in range(jobs)],
        warnings=collect.messages,
        polling_interval=polling_interval,
    )
