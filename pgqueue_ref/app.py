"""The App face: procrastinate's API over pgqueue_ref's engine.

::

    app = App(connector=PsycopgConnector(conninfo=dsn))

    @app.task(name="add", queue="math", retry=3)
    async def add(a, b):
        return a + b

    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        await add.defer_async(a=1, b=2)
        await app.run_worker_async(wait=False)  # drain the queue, then return
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, overload

from .builtin_tasks import BUILTIN_TASKS
from .connectors import BaseConnector, require_async
from .exceptions import (
    InvalidPeriodicTask,
    InvalidQueueName,
    SyncCallInAsyncContext,
    TaskNotFound,
)
from .jobs import Face, Job
from .manager import JobManager, SchemaManager
from .names import identifier
from .periodic import Cron, PeriodicDeferrer, PeriodicTask, check_takes_timestamp
from .retry import RetryStrategy, retry_strategy
from .tasks import JobContext, JobDeferrer, Task, TaskDefinition
from .worker import JobHandler, Runnable, Worker, WorkerStats

__all__ = ["PROCRASTINATE_WORKER_OPTIONS", "App", "worker_options"]

logger = logging.getLogger(__name__)

#: procrastinate 3.10's worker options -> ours, for ``run_worker_async``, ``worker``
#: and ``worker_defaults``. None: accepted, and without effect here (see the docs).
PROCRASTINATE_WORKER_OPTIONS: dict[str, str | None] = {
    "listen_notify": "listen",
    "fetch_job_polling_interval": "polling_interval",
    "shutdown_graceful_timeout": "shutdown_timeout",
    "update_heartbeat_interval": "heartbeat_interval",
    "stalled_worker_timeout": "stalled_after",
    # should_abort() asks the database each time it is called: there is no poll to time.
    "abort_job_polling_interval": None,
}


def worker_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` with procrastinate's names (:data:`PROCRASTINATE_WORKER_OPTIONS`) as ours.

    Both names of one option at once is a ``TypeError`` naming both.
    """
    ours = {k: v for k, v in options.items() if k not in PROCRASTINATE_WORKER_OPTIONS}
    for theirs, name in PROCRASTINATE_WORKER_OPTIONS.items():
        if theirs not in options or name is None:
            continue
        if name in options:
            raise TypeError(
                f"worker options {theirs}= and {name}= are one option under two names "
                f"(procrastinate's and ours): give one of them"
            )
        ours[name] = options[theirs]
    return ours


class App:
    """Tasks, a connector, and the worker that runs the tasks' jobs."""

    def __init__(
        self,
        *,
        connector: BaseConnector,
        worker_defaults: Mapping[str, Any] | None = None,
        periodic_defaults: Mapping[str, Any] | None = None,
    ) -> None:
        self.connector = connector
        #: Default keyword arguments of run_worker / run_worker_async.
        self.worker_defaults: dict[str, Any] = dict(worker_defaults or {})
        #: procrastinate's: ``{"max_delay": seconds}``, how old a period may be and still be
        #: deferred (default :data:`pgqueue_ref.periodic.MAX_DELAY`, 600).
        self.periodic_defaults: dict[str, Any] = dict(periodic_defaults or {})
        unknown = set(self.periodic_defaults) - {"max_delay"}
        if unknown:
            raise TypeError(
                f"periodic_defaults: unknown keys {sorted(unknown)}; expected max_delay"
            )
        self._registry: dict[str, TaskDefinition] = {}
        #: Every registered task, bound to this app: a plain dict, as procrastinate's
        #: ``App.tasks`` (``app.tasks["name"].defer()``). A task registered on this app or
        #: on one made by :meth:`with_connector` appears in each of theirs, bound to each;
        #: a task you add or remove here is this app's only. The worker looks tasks up
        #: here first.
        self.tasks: dict[str, Task] = {}
        self._family: weakref.WeakSet[App] = weakref.WeakSet([self])  # apps sharing the tasks
        self._periodic: dict[tuple[str, str], PeriodicTask] = {}
        self._workers: weakref.WeakSet[Worker] = weakref.WeakSet()  # made by app.worker()

    # The managers follow the connector, so replace_connector() swaps them too.
    @property
    def job_manager(self) -> JobManager:
        return JobManager(self.connector)

    @property
    def schema_manager(self) -> SchemaManager:
        return SchemaManager(self.connector)

    # -- tasks --------------------------------------------------------------

    @overload
    def task(self, func: Callable[..., Any], /) -> Task: ...

    @overload
    def task(
        self,
        /,
        *,
        name: str | None = None,
        queue: str = "default",
        priority: int = 0,
        lock: str | None = None,
        queueing_lock: str | None = None,
        retry: bool | int | RetryStrategy | None = None,
        pass_context: bool = False,
    ) -> Callable[[Callable[..., Any]], Task]: ...

    def task(
        self,
        func: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        queue: str = "default",
        priority: int = 0,
        lock: str | None = None,
        queueing_lock: str | None = None,
        retry: bool | int | RetryStrategy | None = None,
        pass_context: bool = False,
    ) -> Task | Callable[[Callable[..., Any]], Task]:
        """Register a function as a task: ``@app.task`` or ``@app.task(name=..., retry=3)``.

        ``retry=3`` allows up to 3 more attempts after the first one.
        """

        def register(func: Callable[..., Any]) -> Task:
            definition = TaskDefinition(
                func=func,
                name=name or f"{func.__module__}.{func.__qualname__}",
                queue=identifier("queue", queue, InvalidQueueName, "emails"),
                priority=priority,
                lock=lock,
                queueing_lock=queueing_lock,
                retry=retry_strategy(retry),
                pass_context=pass_context,
            )
            if definition.name in self._registry:
                logger.debug("task %r redefined", definition.name)  # re-running a notebook cell
            self._registry[definition.name] = definition
            for app in self._family:
                app.tasks[definition.name] = Task(definition, app)
            return self.tasks[definition.name]

        return register if func is None else register(func)

    def periodic(
        self,
        *,
        cron: str,
        periodic_id: str = "",
        task_kwargs: Mapping[str, Any] | None = None,
        **configure_kwargs: Any,
    ) -> Callable[[Task], Task]:
        """Run a task on a cron schedule, above ``@app.task``::

            @app.periodic(cron="0 * * * *", periodic_id="hourly")
            @app.task(name="report")
            async def report(timestamp: int) -> None: ...

        Each period, one job is deferred across every worker, called with
        ``timestamp`` (the period's start, epoch seconds) and ``task_kwargs``.
        A sixth cron field counts seconds. ``periodic_id`` tells apart several
        schedules of one task. ``configure_kwargs`` are
        :meth:`~pgqueue_ref.tasks.Task.configure`'s
        queue, priority, lock and queueing_lock. Continuous workers
        (``wait=True``) defer; see :mod:`pgqueue_ref.periodic` for missed periods.
        Raises InvalidCronExpression, naming the expression, and
        InvalidPeriodicTask for a function that takes no ``timestamp``.
        """
        parsed = Cron(cron)
        allowed = {"queue", "priority", "lock", "queueing_lock"}
        if set(configure_kwargs) - allowed:
            raise TypeError(
                f"periodic(): unknown options {sorted(set(configure_kwargs) - allowed)}; "
                f"expected {sorted(allowed)} (a periodic job runs at its period, not later)"
            )

        def register(task: Task) -> Task:
            if not isinstance(task, Task):
                raise InvalidPeriodicTask(
                    f"@app.periodic goes above @app.task, on the task it makes; got {task!r}"
                )
            check_takes_timestamp(task.definition)
            JobDeferrer(self, task.definition, **configure_kwargs)  # check the options now
            periodic = PeriodicTask(
                task.definition, parsed, periodic_id, dict(task_kwargs or {}), configure_kwargs
            )
            if periodic.key in self._periodic:
                logger.debug("periodic task %r redefined", periodic.key)  # a notebook re-run
            self._periodic[periodic.key] = periodic
            return task

        return register

    @property
    def periodic_tasks(self) -> Mapping[tuple[str, str], PeriodicTask]:
        """Every ``@app.periodic`` registration, by (task name, periodic id)."""
        return dict(self._periodic)

    @property
    def builtin_tasks(self) -> Mapping[str, Task]:
        """The tasks every app has (:mod:`pgqueue_ref.builtin_tasks`), bound to this app."""
        return {name: Task(definition, self) for name, definition in BUILTIN_TASKS.items()}

    def _definition(self, name: str) -> TaskDefinition | None:
        if (task := self.tasks.get(name)) is not None:
            return task.definition
        return self._registry.get(name) or BUILTIN_TASKS.get(name)

    def configure_task(self, name: str, **options: Any) -> JobDeferrer:
        """Defer a task by name, e.g. one defined in code this process does not import,
        or a builtin one (``pgqueue_ref.builtin_tasks.REMOVE_OLD_JOBS``)."""
        definition = self._definition(name) or TaskDefinition(func=_not_here, name=name)
        return JobDeferrer(self, definition, **options)

    # -- several apps over one set of tasks ------------------------------------

    def with_connector(self, connector: BaseConnector) -> App:
        """A second app over the same tasks, deferring through ``connector``."""
        other = App(connector=connector, worker_defaults=self.worker_defaults)
        other._registry = self._registry  # shared: a task registered on either is seen by both
        other.tasks = {name: Task(task.definition, other) for name, task in self.tasks.items()}
        other._family = self._family
        self._family.add(other)
        other._periodic = self._periodic
        other.periodic_defaults = self.periodic_defaults
        return other

    @contextlib.contextmanager
    def replace_connector(self, connector: BaseConnector) -> Iterator[App]:
        """Use ``connector`` inside the block, then the old one again."""
        old, self.connector = self.connector, connector
        try:
            yield self
        finally:
            self.connector = old

    # -- opening and closing ----------------------------------------------------

    def open(self, pool_or_engine: Any = None) -> App:
        """Open the connector (blocking). Also a context manager: ``with app.open(): ...``.

        A pool or engine handed in is used, and never closed by us.
        """
        self.connector.open(pool_or_engine)
        return self

    def close(self) -> None:
        """Stop this app's running workers gracefully, then close the connector."""
        for worker in self._running_workers():
            worker.stop()
            if worker._loop is not _running_loop():  # its own loop runs elsewhere: wait
                worker.wait_stopped(_grace(worker))
        self.connector.close()

    def _running_workers(self) -> list[Worker]:
        return [worker for worker in self._workers if worker.running]

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open_async(self, pool: Any = None) -> _AsyncOpening:
        """``await app.open_async()``, or ``async with app.open_async(): ...``."""
        return _AsyncOpening(self, pool)

    async def close_async(self) -> None:
        """Stop this app's running workers gracefully (claimed jobs handed back, outcomes
        written), then close the connector. A worker that the connector's closing would
        otherwise leave retrying on a closed connector never outlives it."""
        connector = require_async(self.connector)
        workers = self._running_workers()
        for worker in workers:
            worker.stop()
        for worker in workers:
            await asyncio.to_thread(worker.wait_stopped, _grace(worker))
        await connector.close_async()

    # -- the worker ---------------------------------------------------------------

    def prepare(self, job: Job, additional_context: Mapping[str, Any] | None = None) -> Runnable:
        """The worker's question: what does running this job mean? (JobHandler)

        ``additional_context`` is the worker's (procrastinate's option of that
        name): tasks with ``pass_context=True`` find it in ``context.additional_context``.
        """
        definition = self._definition(job.task_name)
        if definition is None:
            raise TaskNotFound(
                f"job {job.id} asks for task {job.task_name!r}, which this worker's app does not have "
                f"(it has: {', '.join(sorted(self.tasks)) or 'no tasks'}). Register it with "
                "@app.task(name=...) in the code the worker imports."
            )
        args: tuple[Any, ...] = ()
        if definition.pass_context:
            args = (JobContext(job, self, dict(additional_context or {})),)
        return Runnable(definition.func, args, job.args, definition.is_async, definition.retry)

    def worker(self, **options: Any) -> Worker:
        """A worker for this app's jobs; ``run_worker_async`` runs one. Closing the app
        stops it first. procrastinate's option names work too
        (``pgqueue_ref.app.worker_options``), and ``additional_context={...}``."""
        merged = {**worker_options(self.worker_defaults), **worker_options(options)}
        additional_context = merged.pop("additional_context", None)
        handler: JobHandler = self
        if additional_context is not None:
            handler = _WithContext(self, additional_context)
        deferrer = PeriodicDeferrer(self, **self.periodic_defaults) if self._periodic else None
        worker = Worker(
            manager=self.job_manager,
            face=Face.APP,
            handler=handler,
            periodic=deferrer.run_forever if deferrer is not None else None,
            **merged,
        )
        self._workers.add(worker)
        return worker

    async def run_worker_async(self, **options: Any) -> WorkerStats:
        """Run a worker: ``queues=[...]``, ``concurrency=N``, ``wait=False`` to drain and return,
        ``delete_jobs="successful"`` to delete jobs once they succeed (see
        :class:`~pgqueue_ref.worker.Worker`), and procrastinate's names for them
        (``pgqueue_ref.app.worker_options``). A continuous worker also defers the
        app's periodic tasks (:mod:`pgqueue_ref.periodic`).

        In a notebook, cancelling the cell (or the task) stops it gracefully.
        """
        return await self.worker(**options).run()

    def run_worker(self, **options: Any) -> WorkerStats:
        """Blocking twin of run_worker_async, for scripts (not inside a running loop)."""
        require_async(self.connector, worker=True)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.run_worker_async(**options))
        raise SyncCallInAsyncContext(
            "run_worker() blocks, and it was called inside a running event loop (a notebook, "
            "an async function): use 'await app.run_worker_async(...)' there instead."
        )


def _grace(worker: Worker) -> float | None:
    """How long to wait for a stopping worker: its shutdown timeout and a margin (None: ever)."""
    return None if worker.shutdown_timeout is None else worker.shutdown_timeout + 5


@dataclass(frozen=True, slots=True)
class _WithContext:
    """The app as a worker's JobHandler, with that worker's ``additional_context``."""

    app: App
    additional_context: Mapping[str, Any]

    def prepare(self, job: Job) -> Runnable:
        return self.app.prepare(job, self.additional_context)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _not_here(**kwargs: Any) -> None:
    raise TaskNotFound("this task was deferred by name; it runs only where its code is registered")


class _AsyncOpening:
    """What ``app.open_async()`` returns: awaitable, and an async context manager."""

    def __init__(self, app: App, pool: Any) -> None:
        self.app, self.pool = app, pool

    async def _open(self) -> App:
        await require_async(self.app.connector).open_async(self.pool)
        return self.app

    def __await__(self) -> Generator[Any, None, App]:
        return self._open().__await__()

    async def __aenter__(self) -> App:
        return await self._open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.app.close_async()
