"""Queue operations, written once for every connector and driver.

Each operation is a :class:`Call`: a named query from ``sql/queries.sql``, its
parameters, and how to read the rows it returns. :class:`JobManager` runs a
call on its connector; its async and blocking methods are twins of one line
each, so the logic exists once. Both faces (App and Queue) and the worker
engine go through here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import enum
import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .connectors import AsyncConnector, BaseConnector, Row, require_async
from .exceptions import AlreadyEnqueued, ConnectorException, InvalidQueueName, JobNotRetryable
from .jobs import Face, Job, JobSpec, Status, job_from_row, spec_columns, spec_values
from .names import identifier
from .sql import QUERIES, SCHEMA, Query
from .table_stats import TableStats, stats_from_row

__all__ = ["LIST_JOBS_FILTERS", "Call", "DeleteJobCondition", "JobManager", "Outcome"]

logger = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One round trip: a query, its parameters, and what to make of the rows."""

    query: Query
    params: dict[str, Any]
    result: Callable[[list[Row]], T]


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a job left 'doing'. ``status`` TODO means "run it again"."""

    job_id: int
    status: Status
    error: str | None = None
    retry_in: float = 0.0  # seconds, when status is TODO
    handed_back: bool = False  # never started: give the attempt back
    #: A failure held for a manual re-queue (the Queue face's ``on_failure="hold"``):
    #: never deleted by the worker's ``delete_jobs``.
    held: bool = False


class DeleteJobCondition(enum.StrEnum):
    """The worker's ``delete_jobs`` option, procrastinate's names and meaning:
    which finished jobs the worker deletes instead of keeping."""

    NEVER = "never"  #: keep every job (the default)
    SUCCESSFUL = "successful"  #: delete a job once it succeeded
    ALWAYS = "always"  #: delete a job once it finished, whatever the outcome

    @classmethod
    def parse(cls, value: str) -> DeleteJobCondition:
        try:
            return cls(value)
        except ValueError:
            names = ", ".join(repr(c.value) for c in cls)
            raise ValueError(
                f"delete_jobs={value!r}: expected one of {names} (which finished jobs the "
                "worker deletes)"
            ) from None

    @property
    def statuses(self) -> tuple[Status, ...]:
        """The outcomes deleted. Never TODO: a job that will run again is kept."""
        if self is DeleteJobCondition.SUCCESSFUL:
            return (Status.SUCCEEDED,)
        if self is DeleteJobCondition.ALWAYS:
            return (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED, Status.ABORTED)
        return ()


#: How a claim of a limited entrypoint loses a race for a seat (unique violation,
#: deadlock), and how many times it claims again before it gives up for this round.
SEAT_RACES = frozenset({"23505", "40P01"})
SEAT_RACE_ATTEMPTS = 8

#: Jobs one completion announcement names ('id:status,...'): a NOTIFY payload must
#: stay under 8000 bytes, and "9223372036854775807:cancelled," is 30.
ANNOUNCED_PER_NOTIFY = 200

#: Rows one ``delete_old_jobs`` statement deletes at most.
DELETE_BATCH_SIZE = 10_000

#: Seconds the server-side fence waits for each backend of a worker presumed dead to
#: exit (``pg_terminate_backend(pid, timeout)``); one that outlives it keeps its
#: worker's jobs where they are until the next pass.
FENCE_TIMEOUT = 5.0


def _ids(rows: list[Row]) -> list[int]:
    return [row["id"] for row in rows]


def _abort_flag(rows: list[Row]) -> bool:
    return bool(rows and rows[0]["abort_requested"])


def _names(rows: list[Row]) -> list[str]:
    return [row["name"] for row in rows]


def _nothing(rows: list[Row]) -> None:
    return None


# -- the calls --------------------------------------------------------------


def defer_call(face: Face, specs: Sequence[JobSpec]) -> Call[list[int]]:
    # The common cases have cheaper statements of their own: one job, and a batch
    # of jobs that differ only in their arguments.
    if len(specs) == 1:
        return Call(QUERIES["defer_job"], spec_values(face, specs[0]), _ids)
    shared = _shared(specs[0])
    if all(_shared(spec) == shared for spec in specs):
        params = spec_values(face, specs[0]) | {"args": _json_array(spec.args for spec in specs)}
        return Call(QUERIES["defer_jobs_alike"], params, _ids)
    return Call(QUERIES["defer_jobs"], spec_columns(face, specs), _ids)


def defer_alike_call(face: Face, template: JobSpec, args: Sequence[str]) -> Call[list[int]]:
    """Jobs like ``template`` but for their JSON ``args``, without a JobSpec each."""
    if len(args) == 1:
        return defer_call(face, [dataclasses.replace(template, args=args[0])])
    params = spec_values(face, template) | {"args": _json_array(args)}
    return Call(QUERIES["defer_jobs_alike"], params, _ids)


def _json_array(texts: Iterable[str]) -> str:
    """One JSON array of JSON texts (each already valid JSON, from dump_args)."""
    return "[" + ",".join(texts) + "]"


def _shared(spec: JobSpec) -> tuple[Any, ...]:
    """Every column of a job but its arguments."""
    return (
        spec.queue,
        spec.task_name,
        spec.payload,
        spec.priority,
        spec.lock,
        spec.queueing_lock,
        spec.schedule_at,
        spec.schedule_in,
    )


def fetch_call(
    face: Face,
    worker_id: int,
    limit: int,
    queues: Sequence[str] | None,
    task_names: Sequence[str] | None,
    loads: Callable[[str], Any] | None = None,
) -> Call[list[Job]]:
    params = {
        "face": face.value,
        "worker_id": worker_id,
        "limit": limit,
        "queues": list(queues) if queues is not None else None,
        "task_names": list(task_names) if task_names is not None else None,
    }
    # RETURNING has no order: run in the order the fetch chose them.
    return Call(
        QUERIES["fetch_jobs"],
        params,
        lambda rows: sorted((job_from_row(row, loads) for row in rows), key=_run_order),
    )


def _run_order(job: Job) -> tuple[int, int]:
    return (-job.priority, job.id)


def finish_call(
    outcomes: Sequence[Outcome],
    worker_id: int,
    delete_jobs: DeleteJobCondition = DeleteJobCondition.NEVER,
) -> Call[list[int]]:
    params = {
        "worker_id": worker_id,
        "delete_statuses": [status.value for status in delete_jobs.statuses],
        "ids": [o.job_id for o in outcomes],
        "statuses": [o.status.value for o in outcomes],
        "errors": [o.error for o in outcomes],
        "retry_ins": [o.retry_in for o in outcomes],
        "handed_backs": [o.handed_back for o in outcomes],
    }
    return Call(QUERIES["finish_jobs"], params, _ids)


def delete_old_jobs_call(
    nb_hours: float,
    queue: str | None,
    include_failed: bool,
    include_cancelled: bool,
    include_aborted: bool,
    batch_size: int,
) -> Call[int]:
    if nb_hours < 0:
        raise ValueError(
            f"nb_hours={nb_hours!r}: expected 0 or more (jobs finished at least that many "
            "hours ago are deleted; 0 deletes every finished job)"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r}: expected 1 or more")
    included = [
        (True, Status.SUCCEEDED),
        (include_failed, Status.FAILED),
        (include_cancelled, Status.CANCELLED),
        (include_aborted, Status.ABORTED),
    ]
    params = {
        "nb_hours": nb_hours,
        "queue": queue,
        "statuses": [status.value for wanted, status in included if wanted],
        "batch_size": batch_size,
    }
    return Call(QUERIES["delete_old_jobs"], params, _deleted)


def _deleted(rows: list[Row]) -> int:
    return int(rows[0]["deleted"])


def _settled(rows: list[Row]) -> bool | None:
    return bool(rows[0]["settled"]) if rows else None


def _one_id(rows: list[Row]) -> int:
    return int(rows[0]["id"])


def _status(rows: list[Row]) -> Status | None:
    return Status(rows[0]["status"]) if rows else None


#: procrastinate's list_jobs filters -> the get_jobs parameter each sets.
LIST_JOBS_FILTERS = {
    "id": "id",
    "task": "task_name",
    "status": "status",
    "lock": "lock",
    "queueing_lock": "queueing_lock",
    "worker_id": "worker_id",
}


def _list_jobs_call(
    queue: str | None, limit: int | None, filters: dict[str, Any]
) -> Call[list[Row]]:
    unknown = sorted(set(filters) - set(LIST_JOBS_FILTERS))
    if unknown:
        raise TypeError(
            f"list_jobs got unknown filter(s) {', '.join(unknown)}: "
            f"the filters are queue, limit, {', '.join(LIST_JOBS_FILTERS)}"
        )
    params = {column: filters.get(name) for name, column in LIST_JOBS_FILTERS.items()}
    if isinstance(params["status"], Status):
        params["status"] = params["status"].value
    return Call(QUERIES["get_jobs"], {"queue": queue, "limit": limit, **params}, list)


def _procrastinate_filters(
    id: int | None,
    task: str | None,
    status: str | None,
    lock: str | None,
    queueing_lock: str | None,
    worker_id: int | None,
) -> dict[str, Any]:
    return {
        "id": id,
        "task": task,
        "status": status,
        "lock": lock,
        "queueing_lock": queueing_lock,
        "worker_id": worker_id,
    }


def _jobs_call(
    queue: str | None, filters: dict[str, Any], loads: Callable[[str], Any] | None
) -> Call[list[Job]]:
    """procrastinate's list_jobs: every match (no limit), oldest first, as Jobs."""
    rows = _list_jobs_call(queue, None, filters)
    return Call(
        rows.query, rows.params, lambda found: [job_from_row(row, loads) for row in reversed(found)]
    )


def _counts_call(
    query: str, queue: str | None, task: str | None, status: str | None, lock: str | None
) -> Call[list[Row]]:
    params = {"queue": queue, "task_name": task, "status": status, "lock": lock}
    return Call(QUERIES[query], params, list)


def _delete_waiting_call(job_id: int) -> Call[bool]:
    return Call(QUERIES["delete_waiting_job"], {"id": job_id}, bool)


def _cancelled(status: Status | None, abort: bool) -> bool:
    """cancel_job's answer as procrastinate's: cancelled, or asked to abort."""
    return status is Status.CANCELLED or (abort and status is Status.DOING)


def _retry_call(
    job_id: int,
    retry_at: datetime.datetime | None,
    priority: int | None,
    queue: str | None,
    lock: str | None,
) -> Call[bool]:
    if queue is not None:
        identifier("queue", queue, InvalidQueueName, "emails")
    params = {"id": job_id, "retry_at": retry_at, "priority": priority, "queue": queue}
    return Call(QUERIES["retry_failed_job"], {**params, "lock": lock}, bool)


def _retried(job_id: int, found: bool) -> None:
    if not found:
        raise JobNotRetryable(
            f"job {job_id} cannot be retried: there is no such job, or it is not 'failed' "
            "(a waiting or running job will run anyway; look with get_job_status)"
        )


# -- the manager ------------------------------------------------------------


class JobManager:
    """Runs :class:`Call` objects on a connector, async or blocking."""

    def __init__(self, connector: BaseConnector) -> None:
        self.connector = connector

    async def run_async(self, call: Call[T], connection: Any = None) -> T:
        rows = await require_async(self.connector).fetch_all_async(
            call.query.sql, call.params, connection=connection
        )
        return call.result(rows)

    def run(self, call: Call[T], connection: Any = None) -> T:
        rows = self.connector.fetch_all(call.query.sql, call.params, connection=connection)
        return call.result(rows)

    # -- deferring ----------------------------------------------------------

    async def defer_async(
        self, face: Face, specs: Sequence[JobSpec], connection: Any = None
    ) -> list[int]:
        return await self.run_async(defer_call(face, specs), connection) if specs else []

    def defer(self, face: Face, specs: Sequence[JobSpec], connection: Any = None) -> list[int]:
        return self.run(defer_call(face, specs), connection) if specs else []

    async def defer_alike_async(
        self, face: Face, template: JobSpec, args: Sequence[str], connection: Any = None
    ) -> list[int]:
        """Defer one job per JSON ``args``, each otherwise like ``template``: a batch_defer."""
        call = defer_alike_call(face, template, args)
        return await self.run_async(call, connection) if args else []

    def defer_alike(
        self, face: Face, template: JobSpec, args: Sequence[str], connection: Any = None
    ) -> list[int]:
        return self.run(defer_alike_call(face, template, args), connection) if args else []

    # -- the worker's side --------------------------------------------------

    async def fetch_async(
        self,
        face: Face,
        worker_id: int,
        limit: int,
        queues: Sequence[str] | None = None,
        task_names: Sequence[str] | None = None,
    ) -> list[Job]:
        loads = self.connector.json_loads
        return await self.run_async(fetch_call(face, worker_id, limit, queues, task_names, loads))

    async def finish_async(
        self,
        outcomes: Sequence[Outcome],
        worker_id: int,
        delete_jobs: DeleteJobCondition = DeleteJobCondition.NEVER,
    ) -> list[int]:
        """Record outcomes of jobs ``worker_id`` holds, in one statement; if a retry
        collides with a queueing lock, one by one, so only the colliding job is affected.
        Finished jobs that ``delete_jobs`` names are deleted by that same statement.
        Returns the ids recorded: not those of jobs handed to another worker meanwhile."""
        if not outcomes:
            return []
        recorded: list[int] = []
        if Status.FAILED in delete_jobs.statuses and any(o.held for o in outcomes):
            # Held failures stay whatever delete_jobs says: written by a statement of
            # their own that deletes nothing.
            held = [o for o in outcomes if o.held]
            recorded += await self.finish_async(held, worker_id, DeleteJobCondition.NEVER)
            outcomes = [o for o in outcomes if not o.held]
            if not outcomes:
                return recorded
        try:
            written = await self.run_async(finish_call(outcomes, worker_id, delete_jobs))
            recorded += written
        except AlreadyEnqueued:
            for outcome in outcomes:
                recorded += await self._finish_one_async(outcome, worker_id, delete_jobs)
        return recorded

    async def release_orphaned_claims_async(self, worker_id: int, held: Sequence[int]) -> list[int]:
        """Hand back jobs claimed under ``worker_id`` that are not in ``held``."""
        call = Call(
            QUERIES["release_orphaned_claims"], {"worker_id": worker_id, "held": list(held)}, _ids
        )
        return await self.run_async(call)

    async def _finish_one_async(
        self, outcome: Outcome, worker_id: int, delete_jobs: DeleteJobCondition
    ) -> list[int]:
        try:
            return await self.run_async(finish_call([outcome], worker_id, delete_jobs))
        except AlreadyEnqueued:
            # Another job with the same queueing lock was deferred while this one
            # ran: that job will do the work, so this one stops here, and says why.
            logger.warning("job %s not requeued: its queueing lock is taken", outcome.job_id)
            return await self.run_async(
                finish_call(
                    [
                        dataclasses.replace(
                            outcome,
                            status=Status.CANCELLED if outcome.handed_back else Status.FAILED,
                            error=(outcome.error or "")
                            + " (not requeued: another job with its queueing lock is waiting)",
                        )
                    ],
                    worker_id,
                    delete_jobs,
                )
            )

    async def register_worker_async(self, name: str, session_tag: str | None = None) -> int:
        """A new worker row; ``session_tag``: the ``application_name`` of the worker's
        connections, whose backends are terminated if the worker is presumed dead."""
        return await self.run_async(
            Call(QUERIES["register_worker"], {"name": name, "session_tag": session_tag}, _one_id)
        )

    # -- wake-ups (App face): NOTIFY only while a worker sleeps ---------------

    async def go_idle_async(
        self, face: Face, worker_id: int, queues: Sequence[str] | None = None
    ) -> bool | None:
        """Mark ``worker_id`` idle, so that defers for ``queues`` of ``face`` NOTIFY.

        True: settled, no defer can have missed the mark (claim once more, then sleep
        until a NOTIFY); False: a defer was in flight, look again soon; None: the
        worker row is gone. (``go_idle`` in queries.sql says why.)"""
        params = {
            "face": face.value,
            "worker_id": worker_id,
            "queues": list(queues) if queues is not None else None,
        }
        return await self.run_async(Call(QUERIES["go_idle"], params, _settled))

    async def worker_busy_async(self, worker_id: int) -> None:
        """Unmark ``worker_id``: defers need not wake it."""
        call = Call(QUERIES["worker_busy"], {"worker_id": worker_id}, _nothing)
        await self.run_async(call)

    async def notify_probe_async(self, channel: str, payload: str) -> None:
        """NOTIFY ``channel`` with ``payload``: a worker checking that its LISTEN hears."""
        await self.run_async(
            Call(QUERIES["notify_probe"], {"channel": channel, "payload": payload}, _nothing)
        )

    async def heartbeat_async(self, worker_id: int) -> bool:
        """Returns False if our worker row is gone (another worker found us dead)."""
        return await self.run_async(Call(QUERIES["heartbeat"], {"worker_id": worker_id}, bool))

    async def unregister_worker_async(self, worker_id: int) -> None:
        await self.run_async(Call(QUERIES["unregister_worker"], {"worker_id": worker_id}, _nothing))

    async def requeue_stalled_async(
        self, stalled_after: float, fence_timeout: float = FENCE_TIMEOUT
    ) -> list[int]:
        """Hand back the jobs of workers silent for ``stalled_after`` seconds, once their
        tagged backends are gone (waiting up to ``fence_timeout`` seconds for each)."""
        params = {"stalled_after": stalled_after, "fence_timeout_ms": int(fence_timeout * 1000)}
        return await self.run_async(Call(QUERIES["requeue_stalled_jobs"], params, _ids))

    # -- retention ----------------------------------------------------------

    async def delete_old_jobs(
        self,
        nb_hours: float,
        queue: str | None = None,
        include_failed: bool = False,
        include_cancelled: bool = False,
        include_aborted: bool = False,
        *,
        batch_size: int = DELETE_BATCH_SIZE,
    ) -> int:
        """Delete jobs that finished more than ``nb_hours`` ago; returns how many.

        procrastinate's coroutine, under its name (no ``_async`` suffix; the
        blocking twin is :meth:`delete_old_jobs_blocking`). Succeeded jobs are
        deleted, and failed, cancelled or aborted ones when included; waiting
        and running jobs never. "Finished" is the ``finished_at`` column. The
        rows go ``batch_size`` per statement, each its own transaction, until
        a statement deletes fewer: no long lock, no burst of WAL.
        Raises ValueError for a negative ``nb_hours``.
        """
        call = delete_old_jobs_call(
            nb_hours, queue, include_failed, include_cancelled, include_aborted, batch_size
        )
        total, batch = 0, batch_size
        while batch == batch_size:  # stop after a short batch: nothing older is left
            batch = await self.run_async(call)
            total += batch
        return total

    def delete_old_jobs_blocking(
        self,
        nb_hours: float,
        queue: str | None = None,
        include_failed: bool = False,
        include_cancelled: bool = False,
        include_aborted: bool = False,
        *,
        batch_size: int = DELETE_BATCH_SIZE,
    ) -> int:
        """Blocking twin of :meth:`delete_old_jobs` (which is a coroutine, as in
        procrastinate), for scripts and sync connectors."""
        call = delete_old_jobs_call(
            nb_hours, queue, include_failed, include_cancelled, include_aborted, batch_size
        )
        total, batch = 0, batch_size
        while batch == batch_size:  # stop after a short batch: nothing older is left
            batch = self.run(call)
            total += batch
        return total

    async def table_stats_async(self) -> TableStats:
        """The jobs table's size on disk, its live and dead rows, its vacuums."""
        return await self.run_async(Call(QUERIES["jobs_table_stats"], {}, stats_from_row))

    def table_stats(self) -> TableStats:
        """Blocking twin of :meth:`table_stats_async`."""
        return self.run(Call(QUERIES["jobs_table_stats"], {}, stats_from_row))

    # -- periodic tasks and schedules ---------------------------------------

    async def defer_periodic_async(
        self, spec: JobSpec, periodic_id: str, defer_timestamp: int, max_delay: float
    ) -> int | None:
        """Defer ``spec`` for one period, unless any worker already did: then None."""
        params = {
            "task_name": spec.task_name,
            "periodic_id": periodic_id,
            "defer_timestamp": defer_timestamp,
            "max_delay": math.ceil(max_delay),
            "queue": spec.queue,
            "args": spec.args,
            "priority": spec.priority,
            "lock": spec.lock,
            "queueing_lock": spec.queueing_lock,
        }
        ids = await self.run_async(Call(QUERIES["defer_periodic_job"], params, _ids))
        return ids[0] if ids else None

    async def periodic_defers_async(self, limit: int = 100) -> list[Row]:
        return await self.run_async(Call(QUERIES["periodic_defers"], {"limit": limit}, list))

    async def register_schedules_async(
        self, schedules: Sequence[tuple[str, str, datetime.datetime]]
    ) -> None:
        """Make the rows of (entrypoint, expression, next_run) that are not there yet."""
        params = {
            "entrypoints": [entrypoint for entrypoint, _, _ in schedules],
            "expressions": [expression for _, expression, _ in schedules],
            "next_runs": [next_run for _, _, next_run in schedules],
        }
        await self.run_async(Call(QUERIES["register_schedules"], params, _nothing))

    async def claim_schedule_async(
        self,
        entrypoint: str,
        expression: str,
        period: datetime.datetime,
        next_run: datetime.datetime,
    ) -> Row | None:
        """The schedule's row, if this call fired ``period``; None if another consumer had."""
        params = {
            "entrypoint": entrypoint,
            "expression": expression,
            "period": period,
            "next_run": next_run,
        }
        rows = await self.run_async(Call(QUERIES["claim_schedule"], params, list))
        return rows[0] if rows else None

    async def heartbeat_schedule_async(self, schedule_id: int) -> None:
        await self.run_async(Call(QUERIES["heartbeat_schedule"], {"id": schedule_id}, _nothing))

    async def release_schedule_async(self, schedule_id: int) -> None:
        await self.run_async(Call(QUERIES["release_schedule"], {"id": schedule_id}, _nothing))

    async def list_schedules_async(self) -> list[Row]:
        return await self.run_async(Call(QUERIES["list_schedules"], {}, list))

    def list_schedules(self) -> list[Row]:
        return self.run(Call(QUERIES["list_schedules"], {}, list))

    # -- looking at jobs ----------------------------------------------------

    async def abort_requested_async(self, job_id: int) -> bool:
        return await self.run_async(Call(QUERIES["abort_requested"], {"id": job_id}, _abort_flag))

    def abort_requested(self, job_id: int) -> bool:
        return self.run(Call(QUERIES["abort_requested"], {"id": job_id}, _abort_flag))

    async def job_status_async(self, job_id: int, connection: Any = None) -> Status | None:
        return await self.run_async(
            Call(QUERIES["job_status"], {"id": job_id}, _status), connection
        )

    def job_status(self, job_id: int, connection: Any = None) -> Status | None:
        return self.run(Call(QUERIES["job_status"], {"id": job_id}, _status), connection)

    async def cancel_async(
        self, job_id: int, *, abort: bool = False, connection: Any = None
    ) -> Status | None:
        return await self.run_async(
            Call(QUERIES["cancel_job"], {"id": job_id, "abort": abort}, _status), connection
        )

    def cancel(self, job_id: int, *, abort: bool = False, connection: Any = None) -> Status | None:
        return self.run(
            Call(QUERIES["cancel_job"], {"id": job_id, "abort": abort}, _status), connection
        )

    async def list_job_rows_async(
        self, queue: str | None = None, limit: int | None = 100, **filters: Any
    ) -> list[Row]:
        """The newest ``limit`` jobs (None: all), as rows (dicts, every column, for
        people and tables); procrastinate's filters (``id``, ``task``, ``status``,
        ``lock``, ``queueing_lock``, ``worker_id``) narrow them, by keyword."""
        return await self.run_async(_list_jobs_call(queue, limit, filters))

    def list_job_rows(
        self, queue: str | None = None, limit: int | None = 100, **filters: Any
    ) -> list[Row]:
        return self.run(_list_jobs_call(queue, limit, filters))

    # -- procrastinate's names (3.10's JobManager), beside ours -------------

    async def list_jobs_async(
        self,
        id: int | None = None,
        queue: str | None = None,
        task: str | None = None,
        status: str | None = None,
        lock: str | None = None,
        queueing_lock: str | None = None,
        worker_id: int | None = None,
    ) -> list[Job]:
        """procrastinate's: every job that matches the filters, oldest first, as
        :class:`~pgqueue_ref.jobs.Job` objects (``status``, ``task_kwargs``... set).
        :meth:`list_job_rows_async` gives the newest rows, as dicts."""
        filters = _procrastinate_filters(id, task, status, lock, queueing_lock, worker_id)
        return await self.run_async(_jobs_call(queue, filters, self.connector.json_loads))

    def list_jobs(
        self,
        id: int | None = None,
        queue: str | None = None,
        task: str | None = None,
        status: str | None = None,
        lock: str | None = None,
        queueing_lock: str | None = None,
        worker_id: int | None = None,
    ) -> list[Job]:
        filters = _procrastinate_filters(id, task, status, lock, queueing_lock, worker_id)
        return self.run(_jobs_call(queue, filters, self.connector.json_loads))

    async def cancel_job_by_id_async(
        self, job_id: int, abort: bool = False, delete_job: bool = False, connection: Any = None
    ) -> bool:
        """Cancel a waiting job (deleted instead, with ``delete_job``), or ask a running
        one to abort (with ``abort``). Whether anything was done."""
        if delete_job and await self.run_async(_delete_waiting_call(job_id), connection):
            return True
        status = await self.cancel_async(job_id, abort=abort, connection=connection)
        return _cancelled(status, abort)

    def cancel_job_by_id(
        self, job_id: int, abort: bool = False, delete_job: bool = False, connection: Any = None
    ) -> bool:
        if delete_job and self.run(_delete_waiting_call(job_id), connection):
            return True
        return _cancelled(self.cancel(job_id, abort=abort, connection=connection), abort)

    async def get_job_status_async(self, job_id: int, connection: Any = None) -> Status | None:
        """procrastinate's name of ``job_status_async`` (None: no such job)."""
        return await self.job_status_async(job_id, connection)

    def get_job_status(self, job_id: int, connection: Any = None) -> Status | None:
        return self.job_status(job_id, connection)

    async def retry_job_by_id_async(
        self,
        job_id: int,
        retry_at: datetime.datetime | None = None,
        priority: int | None = None,
        queue: str | None = None,
        lock: str | None = None,
    ) -> None:
        """Put a failed job back to wait, at ``retry_at`` (None: now), optionally with a
        new priority, queue or lock. A job that is not 'failed' raises JobNotRetryable."""
        call = _retry_call(job_id, retry_at, priority, queue, lock)
        _retried(job_id, await self.run_async(call))

    def retry_job_by_id(
        self,
        job_id: int,
        retry_at: datetime.datetime | None = None,
        priority: int | None = None,
        queue: str | None = None,
        lock: str | None = None,
    ) -> None:
        _retried(job_id, self.run(_retry_call(job_id, retry_at, priority, queue, lock)))

    async def retry_job(
        self,
        job: Job,
        retry_at: datetime.datetime | None = None,
        priority: int | None = None,
        queue: str | None = None,
        lock: str | None = None,
    ) -> None:
        """procrastinate's ``retry_job``, which is async despite its name: see
        :meth:`retry_job_by_id_async`. ``retry_job_async`` is the same method."""
        await self.retry_job_by_id_async(job.id, retry_at, priority, queue, lock)

    retry_job_async = retry_job

    async def list_queues_async(
        self,
        queue: str | None = None,
        task: str | None = None,
        status: str | None = None,
        lock: str | None = None,
    ) -> list[Row]:
        """Per queue: ``name``, ``jobs_count`` and a count per status (``todo``, ...)."""
        return await self.run_async(_counts_call("job_counts_by_queue", queue, task, status, lock))

    def list_queues(
        self,
        queue: str | None = None,
        task: str | None = None,
        status: str | None = None,
        lock: str | None = None,
    ) -> list[Row]:
        return self.run(_counts_call("job_counts_by_queue", queue, task, status, lock))

    async def list_tasks_async(
        self,
        queue: str | None = None,
        task: str | None = None,
        status: str | None = None,
        lock: str | None = None,
    ) -> list[Row]:
        """Per task name: ``name``, ``jobs_count`` and a count per status."""
        return await self.run_async(_counts_call("job_counts_by_task", queue, task, status, lock))

    def list_tasks(
        self,
        queue: str | None = None,
        task: str | None = None,
        status: str | None = None,
        lock: str | None = None,
    ) -> list[Row]:
        return self.run(_counts_call("job_counts_by_task", queue, task, status, lock))

    async def status_counts_async(self) -> list[Row]:
        return await self.run_async(Call(QUERIES["status_counts"], {}, list))

    def status_counts(self) -> list[Row]:
        return self.run(Call(QUERIES["status_counts"], {}, list))

    # -- the Queue face's entrypoint limits, and completion ---------------------

    async def fetch_limited_async(
        self,
        face: Face,
        worker_id: int,
        limit: int,
        limits: Mapping[str, int],
        queues: Sequence[str] | None = None,
    ) -> list[Job]:
        """``fetch_async`` for a worker whose tasks (``limits``: task name -> the most
        that may run at once across every worker, 0 for no limit) include a limited one
        (``fetch_jobs_limited``). Two claims that chose the same seat at once: the second
        fails on the seats' unique index (or, having chosen two, may deadlock with the
        first) and claims again, now seeing the seat taken."""
        params = {
            "face": face.value,
            "worker_id": worker_id,
            "limit": limit,
            "task_names": list(limits),
            "limits": list(limits.values()),
            "queues": list(queues) if queues is not None else None,
        }
        loads = self.connector.json_loads
        call = Call(
            QUERIES["fetch_jobs_limited"],
            params,
            lambda rows: sorted((job_from_row(row, loads) for row in rows), key=_run_order),
        )
        for attempt in range(SEAT_RACE_ATTEMPTS):
            try:
                return await self.run_async(call)
            except ConnectorException as error:
                if error.sqlstate not in SEAT_RACES or attempt == SEAT_RACE_ATTEMPTS - 1:
                    raise
                logger.debug("claim lost a race for a seat (%s); claiming again", error.sqlstate)
        raise AssertionError("unreachable")  # pragma: no cover

    async def announce_finished_async(
        self, outcomes: Sequence[Outcome], recorded: Iterable[int]
    ) -> None:
        """Tell completion watchers (channel ``pgqueue_ref_finished``) how these jobs
        ended, right after :meth:`finish_async` recorded them (``recorded``: the ids it
        returned): ``announce_finished``, one notification per 200 jobs."""
        written = set(recorded)
        ended = [
            f"{o.job_id}:{o.status.value}"
            for o in outcomes
            if o.status is not Status.TODO and o.job_id in written
        ]
        if ended:
            payloads = [",".join(ended[i : i + ANNOUNCED_PER_NOTIFY])
                        for i in range(0, len(ended), ANNOUNCED_PER_NOTIFY)]  # fmt: skip
            call = Call(QUERIES["announce_finished"], {"payloads": payloads}, _nothing)
            await self.run_async(call)

    async def register_watcher_async(self) -> int:
        """A completion watcher's row (``register_watcher``): workers announce while it is
        there. Returns its id, for :meth:`touch_watcher_async` and
        :meth:`unregister_watcher_async`."""
        call = Call(QUERIES["register_watcher"], {}, lambda rows: int(rows[0]["id"]))
        return await self.run_async(call)

    async def touch_watcher_async(self, watcher_id: int) -> bool:
        """Keep a watcher's row fresh; False if it is gone (then register again)."""
        call = Call(QUERIES["touch_watcher"], {"id": watcher_id}, bool)
        return await self.run_async(call)

    async def unregister_watcher_async(self, watcher_id: int) -> None:
        """Delete a watcher's row (and any left stale by watchers that died)."""
        await self.run_async(Call(QUERIES["unregister_watcher"], {"id": watcher_id}, _nothing))

    async def job_statuses_async(self, job_ids: Iterable[int]) -> dict[int, Status]:
        """The status of each of these jobs that exists."""
        call = Call(
            QUERIES["job_statuses"],
            {"ids": list(job_ids)},
            lambda rows: {row["id"]: Status(row["status"]) for row in rows},
        )
        return await self.run_async(call)

    async def wait_for_job_async(self, job_id: int, *, timeout: float | None = None) -> Status:
        """Wait until job ``job_id`` has finished, and return how: ``succeeded``,
        ``failed``, ``cancelled`` or ``aborted`` (a job retried is not finished yet).

        Woken by the worker's announcement (LISTEN), with a look every 5 s in case
        one is missed (:mod:`pgqueue_ref.completion`). Raises
        :class:`~pgqueue_ref.exceptions.JobNotFound` if there is no such job, and
        ``TimeoutError`` after ``timeout`` seconds. For many jobs at once, share one
        watcher, which listens once for all of them: ``async with
        CompletionWatcher(connector) as w: await w.wait_for_job(job_id)``.
        """
        from .completion import CompletionWatcher  # it builds on this class

        async with asyncio.timeout(timeout), CompletionWatcher(self.connector) as watcher:
            return await watcher.wait_for_job(job_id)


class SchemaManager:
    """Applies ``sql/schema.sql``; safe to run any number of times."""

    def __init__(self, connector: BaseConnector) -> None:
        self.connector = connector

    async def apply_schema_async(self) -> None:
        await require_async(self.connector).execute_async(SCHEMA)

    def apply_schema(self) -> None:
        if isinstance(self.connector, AsyncConnector):  # on a Driver, execute is PgQueuer's
            self.connector.execute_blocking(SCHEMA)
        else:
            self.connector.execute(SCHEMA)

    async def missing_tables_async(self) -> list[str]:
        """The schema's tables, indexes and functions that the database lacks."""
        call = Call(QUERIES["missing_schema_objects"], {}, _names)
        return await JobManager(self.connector).run_async(call)
