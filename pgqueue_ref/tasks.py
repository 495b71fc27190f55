"""Tasks of the App face: what ``@app.task`` makes, and how a job is deferred.

A task has two halves. Its :class:`TaskDefinition` (the function and its
options) lives in a registry that apps made by ``app.with_connector(...)``
share. A :class:`Task` is that definition *bound to one app*: deferring through
it uses that app's connector. procrastinate binds the task object to the first
app once and for all, so deferring through a second app silently used the
first app's connector; binding per app is what avoids that trap.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import inspect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .exceptions import InvalidQueueName, SyncCallInAsyncContext
from .jobs import Face, Job, JobSpec, dump_args, schedule_in_seconds
from .names import identifier
from .retry import RetryStrategy

if TYPE_CHECKING:
    from .app import App

__all__ = ["JobContext", "JobDeferrer", "Task", "TaskDefinition"]


@dataclass(frozen=True, slots=True)
class TaskDefinition:
    func: Callable[..., Any]
    name: str
    queue: str = "default"
    priority: int = 0
    lock: str | None = None
    queueing_lock: str | None = None
    retry: RetryStrategy | None = None
    pass_context: bool = False
    #: Whether ``func`` is a coroutine function: asked once here, not for every job
    #: a worker runs (``inspect`` costs some 2 µs a call, a tenth of a no-op job).
    is_async: bool = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "is_async", inspect.iscoroutinefunction(self.func))


@dataclass(frozen=True, slots=True)
class JobContext:
    """Given as first argument to tasks declared with ``pass_context=True``."""

    job: Job
    app: App
    #: The worker's ``additional_context`` (procrastinate's option), or {}.
    additional_context: dict[str, Any] = field(default_factory=dict)

    @property
    def task(self) -> Task | None:
        """procrastinate's ``context.task``: the job's task, bound to this app (None for
        a task this process does not have)."""
        return self.app.tasks.get(self.job.task_name) or self.app.builtin_tasks.get(
            self.job.task_name
        )

    async def should_abort_async(self) -> bool:
        """Whether someone asked this job to abort (``cancel_async(job_id, abort=True)``).
        A task that checks it and stops should raise ``JobAborted``: the job ends 'aborted'."""
        return await self.app.job_manager.abort_requested_async(self.job.id)

    def should_abort(self) -> bool:
        """Blocking twin of should_abort_async, for sync tasks (they run in worker threads)."""
        return self.app.job_manager.abort_requested(self.job.id)


class JobDeferrer:
    """A task with per-job options, from ``task.configure(...)``; defers on demand."""

    def __init__(
        self,
        app: App,
        definition: TaskDefinition,
        *,
        queue: str | None = None,
        priority: int | None = None,
        lock: str | None = None,
        queueing_lock: str | None = None,
        schedule_at: datetime.datetime | None = None,
        schedule_in: Mapping[str, float] | datetime.timedelta | None = None,
        connection: Any = None,
    ) -> None:
        if schedule_at is not None and schedule_in is not None:
            raise ValueError("give schedule_at or schedule_in, not both")
        if schedule_at is not None and schedule_at.tzinfo is None:
            raise ValueError(
                f"schedule_at={schedule_at!r} has no time zone, so it is ambiguous: "
                "use an aware datetime, e.g. datetime.now(timezone.utc) + timedelta(minutes=5)"
            )
        queue = identifier(
            "queue", definition.queue if queue is None else queue, InvalidQueueName, "emails"
        )
        priority = definition.priority if priority is None else priority
        if not isinstance(priority, int) or isinstance(priority, bool):
            raise TypeError(f"priority={priority!r}: expected an int (higher runs first)")
        self.app = app
        self.definition = definition
        self.connection = connection
        self._template = JobSpec(
            task_name=definition.name,
            queue=queue,
            priority=priority,
            lock=definition.lock if lock is None else lock,
            queueing_lock=definition.queueing_lock if queueing_lock is None else queueing_lock,
            schedule_at=schedule_at,
            schedule_in=None if schedule_in is None else schedule_in_seconds(schedule_in),
        )

        # The template's fields but its args, for job_spec: a JobSpec made from them
        # costs a third of what dataclasses.replace does (it looks up the fields anew).
        self._shared = {
            f.name: getattr(self._template, f.name)
            for f in dataclasses.fields(JobSpec)
            if f.name != "args"
        }

    def job_spec(self, task_kwargs: Mapping[str, Any]) -> JobSpec:
        """The row this deferrer would insert for these arguments."""
        args = dump_args(self.definition.name, task_kwargs, self.app.connector.json_dumps)
        return JobSpec(args=args, **self._shared)

    def _args(self, kwargs_list: tuple[Mapping[str, Any], ...]) -> list[str]:
        """The JSON arguments of a batch: its jobs differ in nothing else."""
        for kwargs in kwargs_list:
            if not isinstance(kwargs, Mapping):
                raise TypeError(f"batch_defer takes one dict of arguments per job; got {kwargs!r}")
        dumps = self.app.connector.json_dumps
        return [dump_args(self.definition.name, kwargs, dumps) for kwargs in kwargs_list]

    async def defer_async(self, **task_kwargs: Any) -> int:
        """Defer one job; returns its id."""
        (job_id,) = await self.app.job_manager.defer_async(
            Face.APP, [self.job_spec(task_kwargs)], self.connection
        )
        return job_id

    def defer(self, **task_kwargs: Any) -> int:
        with _use_async_twin("defer"):
            (job_id,) = self.app.job_manager.defer(
                Face.APP, [self.job_spec(task_kwargs)], self.connection
            )
        return job_id

    async def batch_defer_async(self, *task_kwargs: Mapping[str, Any]) -> list[int]:
        """Defer one job per dict of arguments, in one statement; returns their ids."""
        return await self.app.job_manager.defer_alike_async(
            Face.APP, self._template, self._args(task_kwargs), self.connection
        )

    def batch_defer(self, *task_kwargs: Mapping[str, Any]) -> list[int]:
        with _use_async_twin("batch_defer"):
            return self.app.job_manager.defer_alike(
                Face.APP, self._template, self._args(task_kwargs), self.connection
            )


@contextlib.contextmanager
def _use_async_twin(method: str) -> Iterator[None]:
    """Name the method the caller used, not the connector's ``fetch_all`` underneath."""
    try:
        yield
    except SyncCallInAsyncContext:
        raise SyncCallInAsyncContext(
            f"{method}() blocks, and it was called inside the running event loop that the "
            "app's connector was opened in (a notebook, an async function): use "
            f"'await task.{method}_async(...)' there instead."
        ) from None


class Task:
    """A task definition bound to one app. Calling it runs the function here and now."""

    def __init__(self, definition: TaskDefinition, app: App) -> None:
        self.definition = definition
        self.app = app
        self._unconfigured: JobDeferrer | None = None

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def func(self) -> Callable[..., Any]:
        return self.definition.func

    # procrastinate's Task attributes, read from the definition.
    @property
    def queue(self) -> str:
        return self.definition.queue

    @property
    def lock(self) -> str | None:
        return self.definition.lock

    @property
    def queueing_lock(self) -> str | None:
        return self.definition.queueing_lock

    @property
    def pass_context(self) -> bool:
        return self.definition.pass_context

    @property
    def retry_strategy(self) -> RetryStrategy | None:
        return self.definition.retry

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.definition.func(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<Task {self.name!r} queue={self.definition.queue!r}>"

    def configure(self, **options: Any) -> JobDeferrer:
        """Per-job options: queue, priority, lock, queueing_lock, schedule_at,
        schedule_in (e.g. ``{"seconds": 30}``), connection (the caller's own)."""
        return JobDeferrer(self.app, self.definition, **options)

    def _deferrer(self) -> JobDeferrer:
        """``configure()`` with no options, made once: a defer one by one then costs its
        statement, not also the checks of the task's queue and priority every time."""
        if self._unconfigured is None:
            self._unconfigured = self.configure()
        return self._unconfigured

    def defer(self, *args: Any, **task_kwargs: Any) -> int:
        _no_positional(self.name, args)
        return self._deferrer().defer(**task_kwargs)

    async def defer_async(self, *args: Any, **task_kwargs: Any) -> int:
        _no_positional(self.name, args)
        return await self._deferrer().defer_async(**task_kwargs)

    def batch_defer(self, *task_kwargs: Mapping[str, Any]) -> list[int]:
        return self._deferrer().batch_defer(*task_kwargs)

    async def batch_defer_async(self, *task_kwargs: Mapping[str, Any]) -> list[int]:
        return await self._deferrer().batch_defer_async(*task_kwargs)


def _no_positional(name: str, args: tuple[Any, ...]) -> None:
    if args:
        raise TypeError(
            f"defer() of task {name!r} takes keyword arguments only (they are stored as a JSON "
            f"object): write defer(name=value, ...), got {len(args)} positional"
        )
