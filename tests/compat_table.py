"""``docs/compatibility.md``: each public name of procrastinate 3.10 and PgQueuer 1.6,
and whether pgqueue_ref has it, computed from both libraries as installed.

How it stays honest:

* Every row is an anchor's name, imported from the anchor itself (both are
  installed with the ``bench`` extra), so a name that is not public there
  fails here. The names are those of their API references: procrastinate's
  ``docs/reference.rst`` (each class with the members it documents), and
  PgQueuer's documented modules (``pgqueuer``, ``pgqueuer.db``,
  ``pgqueuer.queries``, ``pgqueuer.models``, ``pgqueuer.types``,
  ``pgqueuer.errors``; each class's public methods, less ``Queries``' schema
  introspection (``has_table``, ``plan_upgrade``...) and the statements only
  its consumer sends (``dequeue``, ``log_jobs``, ``notify_*``, heartbeats)).
* The verdict is computed, not written: **no** when pgqueue_ref has no object
  at the mapped path; **differs** when it has one but not the anchor's
  signature (a parameter of theirs that ours does not take, a coroutine
  where theirs is a plain call or the reverse, a method where theirs is a
  property), or when :data:`MEANING_DIFFERS` says the meaning differs; else **yes**.
* Every **no** and **differs** needs a note in :data:`NOTES` or :data:`MEANING_DIFFERS`
  (the test fails on one without), and a note on a **yes** row fails too, so
  that the notes stay true when a name is added.
* ``tests/test_compatibility.py`` fails when the committed page is not what
  :func:`render` gives now; ``python tools/compatibility_table.py`` writes it.

Behaviour is tested elsewhere, where it applies to every connector or driver:
``tests/conformance/`` (the support table) and ``tests/test_dropin.py``.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DOC = Path(__file__).resolve().parents[1] / "docs" / "compatibility.md"
YES, DIFFERS, NO = "yes", "differs", "no"


@dataclass(frozen=True)
class Section:
    """Rows of one anchor class or module: ``(their name, our dotted path)``."""

    title: str
    anchor: str  # "procrastinate 3.10" or "PgQueuer 1.6"
    rows: list[tuple[str, str]]


def _members(theirs: str, ours: str, names: list[str]) -> list[tuple[str, str]]:
    return [(f"{theirs}.{name}", f"{ours}.{name}") for name in names]


def _same(module: str, ours: str, names: list[str]) -> list[tuple[str, str]]:
    return [(f"{module}.{name}", f"{ours}.{name}") for name in names]


P, Q = "procrastinate 3.10", "PgQueuer 1.6"

SECTIONS: list[Section] = [
    Section(
        "App",
        P,
        _members(
            "procrastinate.App",
            "pgqueue_ref.App",
            [
                "open",
                "open_async",
                "task",
                "run_worker",
                "run_worker_async",
                "configure_task",
                "from_path",
                "add_tasks_from",
                "add_task_alias",
                "with_connector",
                "periodic",
                "tasks",
                "job_manager",
            ],
        ),
    ),
    Section(
        "Connectors",
        P,
        [
            ("procrastinate.PsycopgConnector", "pgqueue_ref.PsycopgConnector"),
            ("procrastinate.SyncPsycopgConnector", "pgqueue_ref.SyncPsycopgConnector"),
            (
                "procrastinate.contrib.aiopg.AiopgConnector",
                "pgqueue_ref.contrib.aiopg.AiopgConnector",
            ),
            (
                "procrastinate.contrib.psycopg2.Psycopg2Connector",
                "pgqueue_ref.contrib.psycopg2.Psycopg2Connector",
            ),
            (
                "procrastinate.contrib.sqlalchemy.SQLAlchemyPsycopg2Connector",
                "pgqueue_ref.contrib.sqlalchemy.SQLAlchemyPsycopg2Connector",
            ),
            ("procrastinate.testing.InMemoryConnector", "pgqueue_ref.testing.InMemoryConnector"),
        ],
    ),
    Section(
        "Task",
        P,
        _members(
            "procrastinate.tasks.Task",
            "pgqueue_ref.tasks.Task",
            [
                "defer",
                "defer_async",
                "configure",
                "name",
                "aliases",
                "retry_strategy",
                "pass_context",
                "queue",
                "lock",
                "queueing_lock",
            ],
        ),
    ),
    Section(
        "JobContext",
        P,
        _members(
            "procrastinate.JobContext",
            "pgqueue_ref.JobContext",
            ["app", "worker_name", "worker_queues", "job", "task", "should_abort"],
        ),
    ),
    Section(
        "Middleware, blueprints, builtin tasks",
        P,
        [
            *_same("procrastinate.middleware", "pgqueue_ref.middleware", ["TaskMiddleware"]),
            *_same("procrastinate.middleware", "pgqueue_ref.middleware", ["WorkerMiddleware"]),
            ("procrastinate.blueprints.Blueprint", "pgqueue_ref.blueprints.Blueprint"),
            (
                "procrastinate.builtin_tasks.remove_old_jobs",
                "pgqueue_ref.builtin_tasks.remove_old_jobs",
            ),
        ],
    ),
    Section(
        "Jobs and statuses",
        P,
        [
            ("procrastinate.jobs.Job", "pgqueue_ref.jobs.Job"),
            *_members(
                "procrastinate.jobs.Job",
                "pgqueue_ref.jobs.Job",
                [
                    "id",
                    "status",
                    "queue",
                    "priority",
                    "lock",
                    "queueing_lock",
                    "task_name",
                    "task_kwargs",
                    "scheduled_at",
                    "attempts",
                    "abort_requested",
                    "worker_id",
                    "from_row",
                    "asdict",
                    "evolve",
                ],
            ),
            *_members(
                "procrastinate.jobs.Status",
                "pgqueue_ref.jobs.Status",
                ["TODO", "DOING", "SUCCEEDED", "FAILED", "CANCELLED", "ABORTING", "ABORTED"],
            ),
        ],
    ),
    Section(
        "Retry strategies",
        P,
        [
            ("procrastinate.RetryStrategy", "pgqueue_ref.RetryStrategy"),
            ("procrastinate.BaseRetryStrategy", "pgqueue_ref.retry.BaseRetryStrategy"),
            (
                "procrastinate.BaseRetryStrategy.get_retry_decision",
                "pgqueue_ref.retry.BaseRetryStrategy.get_retry_decision",
            ),
            (
                "procrastinate.BaseRetryStrategy.get_schedule_in",
                "pgqueue_ref.retry.BaseRetryStrategy.get_schedule_in",
            ),
            ("procrastinate.RetryDecision", "pgqueue_ref.retry.RetryDecision"),
        ],
    ),
    Section(
        "Exceptions",
        P,
        _same(
            "procrastinate.exceptions",
            "pgqueue_ref.exceptions",
            [
                "ProcrastinateException",
                "LoadFromPathError",
                "ConnectorException",
                "AlreadyEnqueued",
                "AppNotOpen",
                "TaskNotFound",
                "UnboundTaskError",
                "JobAborted",
                "MiddlewareKindMismatch",
            ],
        ),
    ),
    Section(
        "JobManager (`app.job_manager`)",
        P,
        _members(
            "procrastinate.manager.JobManager",
            "pgqueue_ref.manager.JobManager",
            [
                "defer_job_async",
                "batch_defer_jobs_async",
                "defer_job",
                "batch_defer_jobs",
                "defer_periodic_job",
                "fetch_job",
                "get_stalled_jobs",
                "delete_old_jobs",
                "finish_job",
                "finish_job_by_id_async",
                "cancel_job_by_id",
                "cancel_job_by_id_async",
                "get_job_status",
                "get_job_status_async",
                "retry_job",
                "retry_job_by_id_async",
                "retry_job_by_id",
                "listen_for_jobs",
                "check_connection_async",
                "check_connection",
                "list_jobs_async",
                "list_jobs",
                "list_queues_async",
                "list_queues",
                "list_tasks_async",
                "list_tasks",
                "list_locks_async",
                "list_locks",
                "list_jobs_to_abort_async",
                "register_worker",
                "unregister_worker",
                "update_heartbeat",
                "prune_stalled_workers",
            ],
        ),
    ),
    Section(
        "`pgqueuer`",
        Q,
        [
            ("pgqueuer.PgQueuer", "pgqueue_ref.PgQueuer"),
            ("pgqueuer.Queries", "pgqueue_ref.Queries"),  # added to pgqueue_ref/__init__.py
            ("pgqueuer.Job", "pgqueue_ref.models.Job"),
            ("pgqueuer.JobId", "pgqueue_ref.types.JobId"),
            ("pgqueuer.AsyncpgDriver", "pgqueue_ref.db.AsyncpgDriver"),
            ("pgqueuer.AsyncpgPoolDriver", "pgqueue_ref.db.AsyncpgPoolDriver"),
            ("pgqueuer.PsycopgDriver", "pgqueue_ref.db.PsycopgDriver"),
            ("pgqueuer.QueueManager", "pgqueue_ref.QueueManager"),
            ("pgqueuer.SchedulerManager", "pgqueue_ref.SchedulerManager"),
            ("pgqueuer.InMemoryDriver", "pgqueue_ref.InMemoryDriver"),
            ("pgqueuer.InMemoryQueries", "pgqueue_ref.InMemoryQueries"),
            (
                "pgqueuer.DatabaseRetryEntrypointExecutor",
                "pgqueue_ref.DatabaseRetryEntrypointExecutor",
            ),
            ("pgqueuer.RetryRequested", "pgqueue_ref.errors.RetryRequested"),
            ("pgqueuer.run", "pgqueue_ref.run"),
            (
                "pgqueuer.core.completion.CompletionWatcher",
                "pgqueue_ref.completion.CompletionWatcher",
            ),
            (
                "pgqueuer.core.completion.CompletionWatcher.wait_for",
                "pgqueue_ref.completion.CompletionWatcher.wait_for",
            ),
        ],
    ),
    Section(
        "PgQueuer",
        Q,
        _members(
            "pgqueuer.PgQueuer",
            "pgqueue_ref.PgQueuer",
            [
                "from_asyncpg_connection",
                "from_asyncpg_pool",
                "from_psycopg_connection",
                "in_memory",
                "entrypoint",
                "schedule",
                "run",
                "connection",
                "channel",
                "resources",
                "queries",
                "shutdown",
                "qm",
                "sm",
            ],
        ),
    ),
    Section(
        "Drivers (`pgqueuer.db`): the protocol",
        Q,
        [
            *_same(
                "pgqueuer.db",
                "pgqueue_ref.db",
                ["Driver", "AsyncpgDriver", "AsyncpgPoolDriver", "PsycopgDriver"],
            ),
            *_same("pgqueuer.db", "pgqueue_ref.db", ["SyncPsycopgDriver", "SyncDriver"]),
            *_members(
                "pgqueuer.db.Driver",
                "pgqueue_ref.db.Driver",
                ["fetch", "execute", "notify", "add_listener", "shutdown", "tm"],
            ),
            ("pgqueuer.db.Driver.__aenter__", "pgqueue_ref.db.Driver.__aenter__"),
            ("pgqueuer.db.Driver.__aexit__", "pgqueue_ref.db.Driver.__aexit__"),
            (
                "pgqueuer.ports.driver.ListenerRemover.remove_listener",
                "pgqueue_ref.db.Driver.remove_listener",
            ),
            ("pgqueuer.db.SyncDriver.fetch", "pgqueue_ref.db.SyncPsycopgDriver.fetch"),
        ],
    ),
    Section(
        "Queries (`pgqueuer.queries`)",
        Q,
        [
            *_members(
                "pgqueuer.queries.Queries",
                "pgqueue_ref.queries.Queries",
                [
                    "from_asyncpg_connection",
                    "from_asyncpg_pool",
                    "from_psycopg_connection",
                    "install",
                    "uninstall",
                    "upgrade",
                    "enqueue",
                    "clear_queue",
                    "queue_size",
                    "queue_log",
                    "log_statistics",
                    "aggregate_logs",
                    "clear_queue_log",
                    "clear_statistics_log",
                    "job_log_history",
                    "exception_logs",
                    "job_status",
                    "mark_job_as_cancelled",
                    "requeue_jobs",
                    "list_failed_jobs",
                    "retry_job",
                    "queued_work",
                    "queue_age",
                    "job_duration_percentiles",
                    "throughput_summary",
                    "throughput_timeseries",
                    "active_workers",
                    "stale_jobs",
                    "browse_queue",
                    "queue_job_by_id",
                    "peek_schedule",
                    "delete_schedule",
                    "clear_schedule",
                ],
            ),
            *_members(
                "pgqueuer.queries.SyncQueries",
                "pgqueue_ref.queries.SyncQueries",
                ["enqueue", "queue_size"],
            ),
        ],
    ),
    Section(
        "Models, types, errors",
        Q,
        [
            *_same(
                "pgqueuer.models",
                "pgqueue_ref.models",
                ["Job", "Context", "QueueStatistics", "Log", "LogStatistics", "Schedule"],
            ),
            *_members(
                "pgqueuer.models.Job",
                "pgqueue_ref.models.Job",
                ["id", "priority", "entrypoint", "payload", "headers", "status", "created"],
            ),
            *_same(
                "pgqueuer.types",
                "pgqueue_ref.types",
                ["QueueExecutionMode", "Channel", "JobId", "QueueEntrypoint", "OnConflict"],
            ),
            *_same("pgqueuer.types", "pgqueue_ref.types", ["JOB_STATUS", "OnFailure"]),
            *_same(
                "pgqueuer.errors",
                "pgqueue_ref.errors",
                [
                    "PgqException",
                    "DuplicateJobError",
                    "RetryRequested",
                    "RetryException",
                    "FailingListenerError",
                ],
            ),
        ],
    ),
]

# -- notes: why a name is missing or differs (their name -> one short reason) ---------

_WORKER_INTERNAL = (
    "the consumer's own bookkeeping in PgQueuer; ours is the shared worker engine's "
    "(`pgqueue_ref.worker`), not a public method"
)
_NO_INMEMORY = "no in-memory backend: every test and notebook runs a real PostgreSQL"
_NO_DASHBOARD = (
    "PgQueuer's dashboard queries; `Queries.queue_size`, `queue_log` and `log_statistics` "
    "are here, and `pgqueue-ref status` shows the rest"
)
_NO_MIDDLEWARE = "no middleware hooks: wrap the task function instead"
_JOBMANAGER_INTERNAL = (
    "the worker's own statements in procrastinate; ours are `JobManager` methods named "
    "after our SQL (`fetch_async`, `finish_async`, `heartbeat_async`...)"
)
_NO_SCHEDULE_QUERIES = (
    "schedules are the consumer's (`@pgq.schedule`); `pgqueue-ref status` lists them"
)
_NO_RETRY_EXCEPTION = "retries follow the task's `retry=` strategy, not an exception raised"
_STATUS_NAMES = "our statuses are procrastinate's (`todo`, `doing`...): see `queue_log`"

NOTES: dict[str, str] = {
    "procrastinate.App.from_path": "tasks are imported by the worker's `--app` path instead",
    "procrastinate.App.add_tasks_from": "no blueprints",
    "procrastinate.App.add_task_alias": "no task aliases",
    "procrastinate.testing.InMemoryConnector": _NO_INMEMORY,
    "procrastinate.tasks.Task.aliases": "no task aliases",
    "procrastinate.middleware.TaskMiddleware": _NO_MIDDLEWARE,
    "procrastinate.middleware.WorkerMiddleware": _NO_MIDDLEWARE,
    "procrastinate.blueprints.Blueprint": "no blueprints",
    "procrastinate.jobs.Job.from_row": "`pgqueue_ref.jobs.job_from_row(row)`",
    "procrastinate.jobs.Job.asdict": "a dataclass: `dataclasses.asdict(job)`",
    "procrastinate.jobs.Job.evolve": "a dataclass: `dataclasses.replace(job, ...)`",
    "procrastinate.jobs.Status.ABORTING": (
        "removed in procrastinate 3 too; a running job asked to abort stays `doing` with "
        "`abort_requested`"
    ),
    "procrastinate.BaseRetryStrategy": "one strategy class, `RetryStrategy`",
    "procrastinate.BaseRetryStrategy.get_retry_decision": "one strategy class, `RetryStrategy`",
    "procrastinate.BaseRetryStrategy.get_schedule_in": "one strategy class, `RetryStrategy`",
    "procrastinate.RetryDecision": "`RetryStrategy` answers with seconds, or None",
    "procrastinate.exceptions.ProcrastinateException": "`PgQueueError` is the base of ours",
    "procrastinate.exceptions.LoadFromPathError": "no `from_path`",
    "procrastinate.exceptions.AppNotOpen": "`ConnectorNotOpen`",
    "procrastinate.exceptions.UnboundTaskError": "tasks are always bound to their app",
    "procrastinate.exceptions.MiddlewareKindMismatch": _NO_MIDDLEWARE,
    "procrastinate.manager.JobManager.defer_job_async": _JOBMANAGER_INTERNAL,
    "procrastinate.manager.JobManager.batch_defer_jobs_async": _JOBMANAGER_INTERNAL,
    "procrastinate.manager.JobManager.defer_job": _JOBMANAGER_INTERNAL,
    "procrastinate.manager.JobManager.batch_defer_jobs": _JOBMANAGER_INTERNAL,
    "procrastinate.manager.JobManager.defer_periodic_job": _JOBMANAGER_INTERNAL,
    "procrastinate.manager.JobManager.fetch_job": _JOBMANAGER_INTERNAL,
    "procrastinate.manager.JobManager.get_stalled_jobs": _JOBMANAGER_INTERNAL,
    "procrastinate.manager.JobManager.finish_job": _JOBMANAGER_INTERNAL,
    "procrastinate.manager.JobManager.finish_job_by_id_async": _JOBMANAGER_INTERNAL,
    "procrastinate.manager.JobManager.listen_for_jobs": _JOBMANAGER_INTERNAL,
    "procrastinate.manager.JobManager.list_jobs_to_abort_async": _JOBMANAGER_INTERNAL,
    "procrastinate.manager.JobManager.register_worker": _JOBMANAGER_INTERNAL,
    "procrastinate.manager.JobManager.unregister_worker": _JOBMANAGER_INTERNAL,
    "procrastinate.manager.JobManager.update_heartbeat": _JOBMANAGER_INTERNAL,
    "procrastinate.manager.JobManager.prune_stalled_workers": _JOBMANAGER_INTERNAL,
    "procrastinate.manager.JobManager.check_connection_async": "`app.schema_manager` checks",
    "procrastinate.manager.JobManager.check_connection": "`app.schema_manager` checks",
    "procrastinate.manager.JobManager.list_locks_async": "no lock listing",
    "procrastinate.manager.JobManager.list_locks": "no lock listing",
    "pgqueuer.QueueManager": _WORKER_INTERNAL,
    "pgqueuer.SchedulerManager": _WORKER_INTERNAL,
    "pgqueuer.InMemoryDriver": _NO_INMEMORY,
    "pgqueuer.InMemoryQueries": _NO_INMEMORY,
    "pgqueuer.DatabaseRetryEntrypointExecutor": _NO_RETRY_EXCEPTION,
    "pgqueuer.RetryRequested": _NO_RETRY_EXCEPTION,
    "pgqueuer.run": "`pgqueue-ref worker` runs consumers",
    "pgqueuer.PgQueuer.in_memory": _NO_INMEMORY,
    "pgqueuer.PgQueuer.shutdown": "`pgq.stop()` stops it",
    "pgqueuer.PgQueuer.qm": _WORKER_INTERNAL,
    "pgqueuer.PgQueuer.sm": _WORKER_INTERNAL,
    "pgqueuer.db.SyncDriver": "write against `SyncPsycopgDriver.fetch`",
    "pgqueuer.db.Driver.tm": "no task manager: `remove_listener` ends each listener",
    "pgqueuer.queries.Queries.uninstall": "`pgqueue-ref schema` has no uninstall",
    "pgqueuer.queries.Queries.upgrade": "`install()` is idempotent and adds what is missing",
    "pgqueuer.queries.Queries.exception_logs": _NO_DASHBOARD,
    "pgqueuer.queries.Queries.job_status": "`app.job_manager.get_job_status_async(id)`",
    "pgqueuer.queries.Queries.mark_job_as_cancelled": "`app.job_manager.cancel_job_by_id_async`",
    "pgqueuer.queries.Queries.retry_job": _WORKER_INTERNAL,
    "pgqueuer.queries.Queries.queued_work": _WORKER_INTERNAL,
    "pgqueuer.queries.Queries.queue_age": _NO_DASHBOARD,
    "pgqueuer.queries.Queries.job_duration_percentiles": _NO_DASHBOARD,
    "pgqueuer.queries.Queries.throughput_summary": _NO_DASHBOARD,
    "pgqueuer.queries.Queries.throughput_timeseries": _NO_DASHBOARD,
    "pgqueuer.queries.Queries.active_workers": _NO_DASHBOARD,
    "pgqueuer.queries.Queries.stale_jobs": _NO_DASHBOARD,
    "pgqueuer.queries.Queries.browse_queue": _NO_DASHBOARD,
    "pgqueuer.queries.Queries.queue_job_by_id": _NO_DASHBOARD,
    "pgqueuer.queries.Queries.peek_schedule": _NO_SCHEDULE_QUERIES,
    "pgqueuer.queries.Queries.delete_schedule": _NO_SCHEDULE_QUERIES,
    "pgqueuer.queries.Queries.clear_schedule": _NO_SCHEDULE_QUERIES,
    "pgqueuer.models.Schedule": _NO_SCHEDULE_QUERIES,
    "pgqueuer.models.Job.created": "`job.created_at`",
    "pgqueuer.types.JOB_STATUS": _STATUS_NAMES,
    "pgqueuer.errors.RetryException": _NO_RETRY_EXCEPTION,
    "pgqueuer.errors.RetryRequested": _NO_RETRY_EXCEPTION,
    "pgqueuer.errors.FailingListenerError": "a failing LISTEN makes the consumer poll instead",
    "procrastinate.App.task": "no task aliases, no middleware; the function is positional-only",
    "procrastinate.JobContext.worker_name": "not kept: `context.job` and `context.app` are",
    "procrastinate.JobContext.worker_queues": "not kept: `context.job` and `context.app` are",
    "procrastinate.builtin_tasks.remove_old_jobs": (
        "the task's function; `app.builtin_tasks[REMOVE_OLD_JOBS]` is the task"
    ),
    "procrastinate.jobs.Job": "built with `args=`, which `job.task_kwargs` reads",
    "procrastinate.RetryStrategy": (
        "it counts retries: `max_retries=` is their `max_attempts=` minus one"
    ),
    "pgqueuer.PgQueuer": "`pgq.queries` is made from the driver",
    "pgqueuer.Queries": "takes the driver (and `channel=`): no query builders, no tracer",
    "pgqueuer.PgQueuer.schedule": (
        "a context is given when the function takes one; no custom executors"
    ),
    "pgqueuer.queries.Queries.install": "one schema, on the search path: nothing to create",
    "pgqueuer.models.Context": "no `cancellation` scope: `pgq.stop()` stops the consumer",
}

#: Names whose signature matches but whose meaning differs: always "differs", with why.
MEANING_DIFFERS: dict[str, str] = {
    "procrastinate.App.tasks": (
        "a plain dict, as theirs; after `with_connector`, each app's dict holds the tasks "
        "bound to that app (theirs: the same objects, bound to the first app)"
    ),
    "procrastinate.manager.JobManager.list_jobs_async": (
        "`Job` objects as theirs, both faces' jobs; `list_job_rows_async` gives rows, newest first"
    ),
    "procrastinate.manager.JobManager.list_jobs": (
        "`Job` objects as theirs, both faces' jobs; `list_job_rows_async` gives rows, newest first"
    ),
    "procrastinate.manager.JobManager.get_job_status": (
        "`None` for a job that does not exist, where theirs has no status to return"
    ),
    "procrastinate.manager.JobManager.get_job_status_async": (
        "`None` for a job that does not exist, where theirs has no status to return"
    ),
    "pgqueuer.db.Driver.execute": 'returns `""`, not the command tag (PgQueuer never reads it)',
    "pgqueuer.db.Driver.__aenter__": "`PgQueuer.run()` does not enter the driver",
    "pgqueuer.queries.Queries.queue_log": (
        "read from the jobs (a view): a retried job shows its last attempt; "
        "`traceback` is text; no `aggregated`"
    ),
    "pgqueuer.queries.Queries.log_statistics": "counted from the jobs when asked",
    "pgqueuer.queries.Queries.aggregate_logs": "nothing to fold: returns at once",
    "pgqueuer.queries.Queries.clear_queue_log": "deletes the finished jobs, which are the log",
    "pgqueuer.queries.Queries.clear_statistics_log": "the same as `clear_queue_log`",
    "pgqueuer.queries.Queries.clear_queue": "deletes waiting and running jobs; finished ones stay",
    "pgqueuer.models.Log": "`traceback` is text; no `aggregated`",
    "pgqueuer.types.Channel": "a checked `str` subclass, theirs a `NewType`",
    "pgqueuer.models.Job.status": "`doing` while it runs (procrastinate's names), theirs `picked`",
    "pgqueuer.models.LogStatistics": "counted from the jobs when asked",
    "pgqueuer.types.OnConflict": "no `update_priority`",
    "pgqueuer.PgQueuer.entrypoint": (
        "`executor_factory=` is refused (`NotImplementedError`): every job runs on the "
        "shared worker engine"
    ),
    "pgqueuer.queries.Queries.requeue_jobs": (
        'also requeues failed jobs that `on_failure="delete"` left in the shared table'
    ),
    "pgqueuer.queries.Queries.list_failed_jobs": (
        'held failures and the failed jobs that `on_failure="delete"` left in the table'
    ),
}


# -- resolving and comparing ------------------------------------------------------


def resolve(path: str) -> Any:
    """The object at a dotted path: the longest importable module, then attributes.
    Raises LookupError when there is none."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for index, name in enumerate(parts[cut:], cut):
            obj = _member(obj, name, ".".join(parts[:index]))
        return obj
    raise LookupError(path)


_MISSING = object()
_ASSIGNED = r"self\.{name}\b\s*(:[^=]*)?="  # set in __init__: an instance attribute


def _member(owner: Any, name: str, where: str) -> Any:
    """``owner.name``, also when it is an instance attribute that only ``__init__``
    sets, an attrs or dataclass field, or a class annotation."""
    if inspect.ismodule(owner):  # a module __getattr__ (an optional driver's class) too
        try:
            return getattr(owner, name)
        except AttributeError:
            raise LookupError(f"{where}.{name}") from None
    found = inspect.getattr_static(owner, name, _MISSING)
    if found is not _MISSING:
        return getattr(owner, name, found)
    if inspect.isclass(owner):
        fields = getattr(owner, "__attrs_attrs__", None) or ()
        if any(field.name == name for field in fields):
            return _Attribute(name)
        if dataclasses.is_dataclass(owner) and name in {f.name for f in dataclasses.fields(owner)}:
            return _Attribute(name)
        if any(name in getattr(klass, "__annotations__", {}) for klass in owner.__mro__):
            return _Attribute(name)
        if "model_fields" in vars(owner) and name in owner.model_fields:
            return _Attribute(name)
        for klass in owner.__mro__:
            for init in (vars(klass).get("__init__"), vars(klass).get("__post_init__")):
                with _no_source():
                    if init and re.search(_ASSIGNED.format(name=name), inspect.getsource(init)):
                        return _Attribute(name)
    raise LookupError(f"{where}.{name}")


class _no_source:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, *_: object) -> bool:
        return kind in (OSError, TypeError)


@dataclass(frozen=True)
class _Attribute:
    """A data attribute (a field, or set by ``__init__``): nothing to call."""

    name: str


def _kind(obj: Any) -> str:
    if isinstance(obj, (_Attribute, property)) or not callable(obj):
        return "attribute"
    if inspect.isclass(obj):
        return "class"
    return "coroutine" if inspect.iscoroutinefunction(obj) else "call"


def _parameters(obj: Any) -> tuple[set[str], bool] | None:
    """Named parameters (not self), and whether it takes **kwargs; None if unknown."""
    target = obj.__init__ if inspect.isclass(obj) else obj
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return None
    names = {
        p.name
        for p in signature.parameters.values()
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.name not in ("self", "cls")
    }
    takes_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    return names, takes_any


def compare(theirs: Any, ours: Any) -> str:
    """ "" if ours takes what theirs does, else what differs (for the differs verdict)."""
    their_kind, our_kind = _kind(theirs), _kind(ours)
    if their_kind == "attribute" or their_kind != our_kind:
        if their_kind == our_kind or (their_kind == "attribute" and our_kind != "class"):
            return "" if their_kind == "attribute" else f"{our_kind} where theirs is {their_kind}"
        return f"{our_kind} where theirs is {their_kind}"
    if inspect.isclass(theirs) and issubclass(theirs, BaseException):
        return ""
    params = _parameters(theirs), _parameters(ours)
    if params[0] is None or params[1] is None:
        return ""
    (their_names, _), (our_names, ours_takes_any) = params
    missing = sorted(their_names - our_names)
    if missing and not ours_takes_any:
        return "no " + ", ".join(f"`{name}=`" for name in missing)
    return ""


@dataclass(frozen=True)
class Verdict:
    theirs: str  # their dotted name
    ours: str  # our dotted path
    outcome: str  # YES, DIFFERS or NO
    found: str  # what the comparison found ("" if nothing)


def verdicts() -> list[tuple[Section, list[Verdict]]]:
    """Every row's computed verdict. Raises LookupError if a name is not the anchor's."""
    result = []
    for section in SECTIONS:
        rows = []
        for theirs, ours in section.rows:
            their_object = resolve(theirs)  # a name of theirs that is not there fails here
            try:
                our_object = resolve(ours)
            except LookupError:
                rows.append(Verdict(theirs, ours, NO, ""))
                continue
            found = compare(their_object, our_object)
            outcome = DIFFERS if found or theirs in MEANING_DIFFERS else YES
            rows.append(Verdict(theirs, ours, outcome, found))
        result.append((section, rows))
    return result


def _short(theirs: str) -> str:
    """Their name as the row shows it: without the module (or class) the section names."""
    for prefix in ("procrastinate.manager.JobManager.", "procrastinate.jobs.", "pgqueuer.db."):
        if theirs.startswith(prefix):
            return theirs.removeprefix(prefix)
    for prefix in ("pgqueuer.queries.", "pgqueuer.models.", "pgqueuer.types.", "pgqueuer.errors."):
        if theirs.startswith(prefix):
            return theirs.removeprefix(prefix)
    if theirs.startswith("pgqueuer.ports.driver.ListenerRemover."):
        return "Driver." + theirs.rsplit(".", 1)[1]
    return theirs.removeprefix("procrastinate.").removeprefix("pgqueuer.")


def render(computed: list[tuple[Section, list[Verdict]]]) -> str:
    """The markdown of ``docs/compatibility.md``."""
    body: list[str] = []
    counts = {YES: 0, DIFFERS: 0, NO: 0}
    for section, rows in computed:
        notes: list[str] = []
        body += [f"## {section.anchor}: {section.title}", "", "| name | here |", "| --- | --- |"]
        for row in rows:
            counts[row.outcome] += 1
            note = MEANING_DIFFERS.get(row.theirs) or NOTES.get(row.theirs, "")
            if row.found:
                note = f"{row.found}; {note}" if note else row.found
            cell = row.outcome
            if note:
                if note not in notes:
                    notes.append(note)
                cell = f"{row.outcome} [{notes.index(note) + 1}]"
            body.append(f"| `{_short(row.theirs)}` | {cell} |")
        body.append("")
        if notes:
            body += [f"{number}. {note}" for number, note in enumerate(notes, 1)] + [""]
    header = [
        "# Compatibility with procrastinate 3.10 and PgQueuer 1.6",
        "",
        "<!-- Generated by `python tools/compatibility_table.py` from both libraries as",
        "     installed; tests/test_compatibility.py fails when this file is not what it",
        "     gives. Do not edit by hand. -->",
        "",
        "Each row is a public name of procrastinate 3.10 (its API reference) or PgQueuer",
        "1.6 (its documented modules), imported from that library, and whether",
        "pgqueue_ref has it. **yes**: pgqueue_ref has it, taking every parameter theirs",
        "takes, sync where theirs is sync and async where theirs is async. **differs**:",
        "it is there, but its signature or its meaning is not theirs; the note says how.",
        "**no**: it is not there; the note says what to use instead, or why. The verdicts",
        "are computed by comparing the two objects (`tests/compat_table.py`); what each",
        "name *does* is tested on every connector and driver it applies to, in",
        "`tests/conformance/` ([the support table](connectors.md)) and",
        "`tests/test_dropin.py`.",
        "",
        "Out of scope: each library's internals, which code written against its public",
        "API does not touch: table and column names, the SQL, the schema's migrations,",
        "CLI internals, private attributes (a leading `_`), the web dashboard, and the",
        "methods of PgQueuer's `Queries` that only its own consumer or schema tooling",
        "calls (`dequeue`, `log_jobs`, `notify_*`, heartbeats, `has_table`, `plan_upgrade`...).",
        "procrastinate's Django integration (`procrastinate.contrib.django`) is not here",
        "and not listed: it needs Django, and pgqueue_ref has none.",
        "",
        f"In all, {sum(counts.values())} names: "
        + f"{counts[YES]} yes, {counts[DIFFERS]} differ, {counts[NO]} no.",
        "",
    ]
    return "\n".join(header + body).rstrip() + "\n"


def problems(computed: list[tuple[Section, list[Verdict]]]) -> list[str]:
    """Notes that are missing, or left on a name that no longer needs one."""
    found = []
    for _, rows in computed:
        for row in rows:
            noted = row.theirs in NOTES or row.theirs in MEANING_DIFFERS
            if row.outcome == NO and row.theirs not in NOTES:
                found.append(f"{row.theirs}: no, and NOTES does not say why")
            elif row.outcome == DIFFERS and not noted:
                found.append(f"{row.theirs}: differs ({row.found}), and no note says why")
            elif row.outcome == YES and noted:
                found.append(f"{row.theirs}: yes now, so its note is stale")
    return found
