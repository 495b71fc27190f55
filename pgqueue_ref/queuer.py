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
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, get_args

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

__all__ = ["Context", "Entrypoint", "EntrypointSpec", "OnFailure", "PgQueuer"]

Entrypoint = Callable[..., Any]

#: What a consumer does with a job whose entrypoint raised (PgQueuer's ``OnFailure``).
OnFailure: TypeAlias = Literal["delete", "hold"]


@dataclass(frozen=True, slots=True)
class EntrypointSpec:
    """One registered entrypoint and its options (PgQueuer's
    ``EntrypointExecutorParameters``)."""

    func: Entrypoint
    accepts_context: bool
    #: At most this many of its jobs run at once across every consumer; 0: no limit.
    concurrency_limit: int = 0
    on_failure: OnFailure = "delete"


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


def _check_positive_int(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name}={value!r}: expected an int")
    if value < 1:
        raise ValueError(f"{name}={value!r}: expected at least 1")


def _seconds(name: str, value: object, *, zero: bool = False) -> float:
    """A timedelta parameter of run(), in seconds; more than 0 unless ``zero``."""
    if not isinstance(value, datetime.timedelta):
        raise TypeError(f"{name}={value!r}: expected a datetime.timedelta")
    seconds = value.total_seconds()
    if seconds < 0 or (seconds == 0 and not zero):
        raise ValueError(f"{name}={value!r}: expected more than 0 seconds")
    return seconds


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
        self._entrypoints: dict[str, EntrypointSpec] = {}
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

    def entrypoint(
        self,
        name: str,
        *,
        concurrency_limit: int = 0,
        accepts_context: bool | None = None,
        on_failure: OnFailure = "delete",
        executor_factory: Callable[..., Any] | None = None,
    ) -> Callable[[Entrypoint], Entrypoint]:
        """Register ``func`` to run the jobs enqueued for ``name``: ``@pgq.entrypoint("fetch")``.

        PgQueuer 1.6's options, validated as PgQueuer validates them (its errors and
        messages): ``concurrency_limit=N`` runs at most N of its jobs at once across
        every consumer, enforced by the claim's SQL (0: no limit; every consumer of
        the entrypoint must give the same N); ``accepts_context`` says whether
        ``func`` takes a :class:`Context` second (None: from its signature);
        ``on_failure="hold"`` keeps a failed job, status ``failed`` with its error,
        for :meth:`Queries.requeue_jobs <pgqueue_ref.queries.Queries.requeue_jobs>`
        even when the consumer runs with ``delete_jobs``; ``"delete"`` (PgQueuer's
        default) lets that retention delete it (see docs/queue-face.md). A custom
        ``executor_factory`` is refused: the shared worker engine runs every job.
        """
        if not isinstance(name, str) or not name:
            raise TypeError(f"entrypoint name {name!r}: expected a non-empty string")
        if name in self._entrypoints:
            raise RuntimeError(f"{name} already in registry, name must be unique.")
        if not isinstance(concurrency_limit, int):
            raise ValueError("Concurrency limit must be int.")  # noqa: TRY004 - PgQueuer's error
        if concurrency_limit < 0:
            raise ValueError("Concurrency limit must be greater or eq. to zero.")
        if accepts_context is not None and not isinstance(accepts_context, bool):
            raise ValueError("accepts_context must be boolean or None")
        if on_failure not in get_args(OnFailure):
            raise ValueError(f"on_failure must be one of {get_args(OnFailure)}.")
        if executor_factory is not None:
            raise NotImplementedError(
                f"entrypoint {name!r}: executor_factory is not supported here: every job runs "
                "on the shared worker engine (async entrypoints on its event loop, sync ones in "
                "its thread pool). Leave it out; for per-job setup, wrap the function instead."
            )

        def register(func: Entrypoint) -> Entrypoint:
            context = _wants_context(name, func) if accepts_context is None else accepts_context
            self._entrypoints[name] = EntrypointSpec(func, context, concurrency_limit, on_failure)
            return func

        return register

    def entrypoint_spec(self, name: str) -> EntrypointSpec:
        """The options ``name`` was registered with."""
        return self._entrypoints[name]

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
        spec = self._entrypoints[job.task_name]
        args = (job, Context(self.resources)) if spec.accepts_context else (job,)
        return Runnable(
            spec.func,
            args,
            is_async=inspect.iscoroutinefunction(spec.func),
            hold=spec.on_failure == "hold",
        )

    # -- running ----------------------------------------------------------------

    async def run(
        self,
        dequeue_timeout: datetime.timedelta | None = None,
        batch_size: int = 10,
        mode: QueueExecutionMode = QueueExecutionMode.continuous,
        max_concurrent_tasks: int | None = None,
        shutdown_on_listener_failure: bool = False,
        heartbeat_timeout: datetime.timedelta = datetime.timedelta(seconds=30),
        log_aggregation_interval: datetime.timedelta | None = None,
        **worker_options: Any,
    ) -> WorkerStats:
        """Consume jobs of the registered entrypoints: PgQueuer 1.6's parameters, in its order.

        ``mode``: ``continuous`` runs until :meth:`stop` (or cancellation); ``drain``
        returns once no job is ready. ``batch_size``: the most jobs one claim takes
        (one round trip); the next batch is claimed while the current one runs.
        ``max_concurrent_tasks``: the most jobs this consumer runs at once, at least
        ``2 * batch_size`` as PgQueuer requires (None or 0: PgQueuer's "no cap";
        here ``2 * batch_size``, two batches in hand); sync entrypoints run in a
        thread pool of that size. ``dequeue_timeout``: how long an idle consumer
        waits for a NOTIFY before it looks anyway (None: 1 s; PgQueuer's 30 s
        assumes it computes when deferred jobs come due, which this engine does
        not). ``heartbeat_timeout``: a consumer silent that long is presumed dead
        and its jobs run elsewhere (the worker's ``stalled_after``; heartbeats every
        ``heartbeat_timeout / 6``, 5 s at most). ``shutdown_on_listener_failure``:
        stop, raising ConnectionFailed, when the LISTEN is lost or hears nothing,
        instead of polling on. ``log_aggregation_interval``: there is no statistics
        log here to aggregate, so only None or ``timedelta(0)`` (PgQueuer's "off").
        ``@pgq.schedule`` callbacks fire in continuous mode only. Other keywords go
        to :class:`~pgqueue_ref.worker.Worker`.
        """
        if not isinstance(mode, QueueExecutionMode):
            raise TypeError(f"mode={mode!r}: use QueueExecutionMode.continuous or .drain")
        _check_positive_int("batch_size", batch_size)
        max_concurrent_tasks = max_concurrent_tasks or None  # PgQueuer: 0 means no cap
        if max_concurrent_tasks is not None:
            _check_positive_int("max_concurrent_tasks", max_concurrent_tasks)
            if max_concurrent_tasks < 2 * batch_size:
                raise RuntimeError("max_concurrent_tasks must be at least twice the batch size.")
        if not isinstance(shutdown_on_listener_failure, bool):
            raise TypeError(
                f"shutdown_on_listener_failure={shutdown_on_listener_failure!r}: expected a bool"
            )
        stalled_after = _seconds("heartbeat_timeout", heartbeat_timeout)
        if log_aggregation_interval is not None and _seconds(
            "log_aggregation_interval", log_aggregation_interval, zero=True
        ):
            raise ValueError(
                f"log_aggregation_interval={log_aggregation_interval!r}: there is no statistics "
                "log here to aggregate (finished jobs stay in pgqueue_jobs with their status): "
                "leave it out, or pass timedelta(0)"
            )
        continuous = mode is QueueExecutionMode.continuous
        if continuous and isinstance(self.connection, Driver):
            self.connection.check_room_for_listen()  # fail now, not in the background
        if dequeue_timeout is not None:
            worker_options["polling_interval"] = _seconds("dequeue_timeout", dequeue_timeout)
        worker_options.setdefault("stalled_after", stalled_after)
        worker_options.setdefault("heartbeat_interval", min(5.0, stalled_after / 6))
        # The next batch is claimed while the current one runs (or is still being claimed).
        worker_options.setdefault("claims_in_flight", 2)
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
            task_limits={n: spec.concurrency_limit for n, spec in self._entrypoints.items()},
            concurrency=max_concurrent_tasks or 2 * batch_size,
            prefetch=batch_size,
            wait=continuous,
            channel=self.channel,
            stop_when_deaf=shutdown_on_listener_failure,
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
