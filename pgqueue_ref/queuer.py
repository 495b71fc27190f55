"""``PgQueuer``: the Queue face's consumer, over the shared worker engine.

::

    connection = await asyncpg.connect(dsn)
    pgq = PgQueuer.from_asyncpg_connection(connection, resources={"http": client})

    @pgq.entrypoint("fetch")
    async def fetch(job: Job) -> None:                  # job.payload is bytes
        ...

    @pgq.entrypoint("report")
    def report(job: Job, context: Context) -> None:     # sync: runs in a thread
        context.resources["http"]...                     # the mapping given above

    await pgq.run()                                      # until pgq.stop()
    await pgq.run(mode=QueueExecutionMode.drain)         # until nothing is ready

The consumer is :class:`~pgqueue_ref.worker.Worker` with ``face=Face.QUEUE``:
the same engine as the App face's, fetching only Queue-face jobs of the
registered entrypoints. A PgQueuer is the worker's :class:`~pgqueue_ref.worker.JobHandler`: it says
what running a job means (call the entrypoint with the job, and with a
:class:`Context` if the entrypoint takes a second argument).
"""

from __future__ import annotations

import datetime
import inspect
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
import psycopg_pool

from . import connectors
from .connectors import AsyncConnector, BaseConnector, Driver, require_async
from .connectors.custom import as_connector
from .connectors.driver import PgQueuerDriver
from .connectors.psycopg import PsycopgDriver, PsycopgPoolDriver
from .exceptions import TaskNotFound
from .jobs import Face, Job
from .manager import JobManager
from .periodic import MAX_DELAY, Cron
from .queries import Queries
from .schedules import ScheduleEntry, Scheduler, schedule_entry
from .settings import Channel, DBSettings, QueueExecutionMode
from .worker import Runnable, Worker, WorkerStats

if TYPE_CHECKING:
    import asyncpg

__all__ = ["Context", "Entrypoint", "PgQueuer"]

Entrypoint = Callable[..., Any]


@dataclass(frozen=True, slots=True)
class Context:
    """Given to entrypoints that take a second argument (PgQueuer's ``Context``).

    ``resources`` is the mapping handed to PgQueuer itself, not a copy: every
    job sees the same objects, and what one job puts there the next one finds.
    """

    resources: MutableMapping[str, Any]


def _wants_context(name: str, func: Entrypoint) -> bool:
    """``def f(job)`` gets the job; ``def f(job, context)`` gets a Context too."""
    parameters = inspect.signature(func).parameters.values()
    if any(p.kind is p.VAR_POSITIONAL for p in parameters):
        return True
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if not positional:
        raise TypeError(
            f"entrypoint {name!r} takes no argument, but it is called with the job: "
            "write 'async def f(job): ...' (or 'def f(job, context): ...')"
        )
    return len(positional) >= 2


class PgQueuer:
    """Entrypoints, a driver, and the consumer that runs their jobs."""

    def __init__(
        self,
        connection: BaseConnector | PgQueuerDriver,
        channel: Channel | str | None = None,
        resources: MutableMapping[str, Any] | None = None,
    ) -> None:
        #: The driver (any async connector will do; SyncPsycopgDriver is refused now).
        #: A driver of your own, written against PgQueuer's protocol, is wrapped in a
        #: :class:`~pgqueue_ref.connectors.custom.ProtocolDriver`.
        self.connection: AsyncConnector = require_async(as_connector(connection), worker=True)
        self.channel = Channel(channel) if channel is not None else DBSettings().channel
        #: Shared with every job through Context.resources (the same object, never copied).
        self.resources: MutableMapping[str, Any] = {} if resources is None else resources
        self._entrypoints: dict[str, tuple[Entrypoint, bool]] = {}
        self._schedules: dict[tuple[str, str], ScheduleEntry] = {}
        #: Seconds: a schedule's period that began longer ago is never fired
        #: (:func:`pgqueue_ref.periodic.due_periods`; PgQueuer has no such bound).
        self.schedule_max_delay: float = MAX_DELAY
        self._worker: Worker | None = None
        self._stop_requested = False

    # -- PgQueuer's classmethods: the driver is made for you ----------------------
    # listen_dsn= (beyond PgQueuer): a DSN for the consumer's LISTEN connection only,
    # direct to the server when the connection or pool goes through a transaction pooler.

    @classmethod
    def from_asyncpg_connection(
        cls,
        connection: asyncpg.Connection,
        channel: Channel | str | None = None,
        resources: MutableMapping[str, Any] | None = None,
        *,
        listen_dsn: str | None = None,
    ) -> PgQueuer:
        """Needs the ``asyncpg`` extra (imported now, not with pgqueue_ref)."""
        return cls(
            connectors.load("AsyncpgDriver")(connection, listen_dsn=listen_dsn), channel, resources
        )

    @classmethod
    def from_asyncpg_pool(
        cls,
        pool: asyncpg.Pool,
        channel: Channel | str | None = None,
        resources: MutableMapping[str, Any] | None = None,
        *,
        listen_dsn: str | None = None,
    ) -> PgQueuer:
        """Needs the ``asyncpg`` extra (imported now, not with pgqueue_ref)."""
        return cls(
            connectors.load("AsyncpgPoolDriver")(pool, listen_dsn=listen_dsn), channel, resources
        )

    @classmethod
    def from_psycopg_connection(
        cls,
        connection: psycopg.AsyncConnection[Any],
        channel: Channel | str | None = None,
        resources: MutableMapping[str, Any] | None = None,
        *,
        listen_dsn: str | None = None,
    ) -> PgQueuer:
        return cls(PsycopgDriver(connection, listen_dsn=listen_dsn), channel, resources)

    @classmethod
    def from_psycopg_pool(
        cls,
        pool: psycopg_pool.AsyncConnectionPool[Any],
        channel: Channel | str | None = None,
        resources: MutableMapping[str, Any] | None = None,
        *,
        listen_dsn: str | None = None,
    ) -> PgQueuer:
        """Beyond PgQueuer, which has no psycopg pool driver."""
        return cls(PsycopgPoolDriver(pool, listen_dsn=listen_dsn), channel, resources)

    # -- entrypoints ------------------------------------------------------------

    def entrypoint(self, name: str) -> Callable[[Entrypoint], Entrypoint]:
        """Register ``func`` to run the jobs enqueued for ``name``: ``@pgq.entrypoint("fetch")``."""
        if not isinstance(name, str) or not name:
            raise TypeError(f"entrypoint name {name!r}: expected a non-empty string")

        def register(func: Entrypoint) -> Entrypoint:
            self._entrypoints[name] = (func, _wants_context(name, func))
            return func

        return register

    def schedule(self, entrypoint: str, expression: str) -> Callable[[Entrypoint], Entrypoint]:
        """Call ``func(schedule)`` once per period of the cron ``expression``, across every
        consumer: ``@pgq.schedule("cleanup", "*/5 * * * *")``. Run by ``pgq.run()`` in
        continuous mode (see :mod:`pgqueue_ref.schedules`). An invalid expression raises
        InvalidCronExpression now, naming it."""
        if not isinstance(entrypoint, str) or not entrypoint:
            raise TypeError(f"schedule entrypoint {entrypoint!r}: expected a non-empty string")
        Cron(expression)  # before the function is seen: the error names the expression

        def register(func: Entrypoint) -> Entrypoint:
            entry = schedule_entry(entrypoint, expression, func)
            key = (entrypoint, entry.cron.expression)
            if key in self._schedules:
                raise ValueError(
                    f"schedule {entrypoint!r} with {entry.cron.expression!r} is registered "
                    "already: an entrypoint and expression make one schedule"
                )
            self._schedules[key] = entry
            return func

        return register

    @property
    def schedules(self) -> list[tuple[str, str]]:
        """The registered schedules, as (entrypoint, expression)."""
        return sorted(self._schedules)

    @property
    def entrypoints(self) -> list[str]:
        return sorted(self._entrypoints)

    @property
    def queries(self) -> Queries:
        """Queries on this driver and channel (enqueues wake this consumer at once)."""
        return Queries(self.connection, self.channel)

    def prepare(self, job: Job) -> Runnable:
        """The worker's question: what does running this job mean? (JobHandler)"""
        if job.task_name not in self._entrypoints:
            raise TaskNotFound(
                f"job {job.id} is for entrypoint {job.task_name!r}, which this PgQueuer does not "
                f"have (it has: {', '.join(self.entrypoints) or 'none'}); register it with "
                "@pgq.entrypoint(name)"
            )
        func, wants_context = self._entrypoints[job.task_name]
        args = (job, Context(self.resources)) if wants_context else (job,)
        return Runnable(func, args, is_async=inspect.iscoroutinefunction(func))

    # -- running ----------------------------------------------------------------

    async def run(
        self,
        *,
        mode: QueueExecutionMode = QueueExecutionMode.continuous,
        batch_size: int = 10,
        max_concurrent_tasks: int | None = None,
        dequeue_timeout: datetime.timedelta | None = None,
        **worker_options: Any,
    ) -> WorkerStats:
        """Consume jobs of the registered entrypoints.

        ``continuous`` runs until :meth:`stop` (or cancellation); ``drain`` returns
        once no job is ready. ``batch_size`` jobs are claimed per round trip;
        up to ``max_concurrent_tasks`` (default: ``batch_size``) run at once.
        ``dequeue_timeout`` is how long an idle consumer waits for a NOTIFY
        before looking anyway. ``@pgq.schedule`` callbacks fire in continuous
        mode only. Other keywords go to :class:`~pgqueue_ref.worker.Worker`.
        """
        if not isinstance(mode, QueueExecutionMode):
            raise TypeError(f"mode={mode!r}: use QueueExecutionMode.continuous or .drain")
        continuous = mode is QueueExecutionMode.continuous
        if continuous and isinstance(self.connection, Driver):
            self.connection.check_room_for_listen()  # fail now, not in the background
        if dequeue_timeout is not None:
            worker_options["polling_interval"] = dequeue_timeout.total_seconds()
        manager = JobManager(self.connection)
        scheduler = (
            Scheduler(manager, self._schedules, self.resources, self.schedule_max_delay)
            if self._schedules
            else None
        )
        worker = Worker(
            manager=manager,
            periodic=scheduler.run_forever if scheduler is not None else None,
            face=Face.QUEUE,
            handler=self,
            task_names=self.entrypoints,
            concurrency=max_concurrent_tasks or batch_size,
            prefetch=batch_size,
            wait=continuous,
            channel=self.channel,
            **worker_options,
        )
        self._worker = worker
        if self._stop_requested:
            worker.stop()
        try:
            return await worker.run()
        finally:
            self._worker, self._stop_requested = None, False

    def stop(self) -> None:
        """Stop ``run()`` gracefully (running jobs finish). Safe from any thread,
        from an entrypoint, or just before ``run()`` starts."""
        self._stop_requested = True
        if self._worker is not None:
            self._worker.stop()
