"""What a job is, on its way in (:class:`JobSpec`) and on its way out (:class:`Job`).

Both faces share these: the App face fills ``args`` (JSON), the Queue face
fills ``payload`` (bytes). The functions here turn them into the columns of
``pgqueue_jobs`` and back, the same way for every driver.
"""

from __future__ import annotations

import datetime
import enum
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .exceptions import UnserializableArguments

__all__ = ["Face", "Job", "JobSpec", "Status", "dump_args", "job_from_row", "schedule_in_seconds"]


class Status(enum.StrEnum):
    """The ``status`` column. A job moves todo → doing → succeeded | failed,
    and back to todo when it is retried or handed back."""

    TODO = "todo"
    DOING = "doing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    ABORTED = "aborted"


class Face(enum.StrEnum):
    """Which API wrote a job; each face's workers fetch only their own."""

    APP = "app"
    QUEUE = "queue"


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One job to defer, before it has an id."""

    task_name: str
    queue: str = "default"
    args: str = "{}"  # JSON text, from dump_args()
    payload: bytes | None = None
    priority: int = 0
    lock: str | None = None
    queueing_lock: str | None = None
    schedule_at: datetime.datetime | None = None
    schedule_in: float | None = None  # seconds from now, computed by the server's clock


@dataclass(frozen=True, slots=True)
class Job:
    """One job as a worker claimed it."""

    id: int
    task_name: str
    queue: str = "default"
    args: dict[str, Any] = field(default_factory=dict)
    payload: bytes | None = None
    priority: int = 0
    attempts: int = 0  # including the current one
    lock: str | None = None
    queueing_lock: str | None = None
    scheduled_at: datetime.datetime | None = None
    created_at: datetime.datetime | None = None
    #: PgQueuer's job headers (``enqueue(..., headers=...)``), None if it was given none.
    headers: dict[str, str] | None = None
    #: Set on the jobs ``job_manager.list_jobs[_async]`` returns (procrastinate's
    #: ``Job`` has them); a job a worker claimed is 'doing', by that worker.
    status: Status | None = None
    abort_requested: bool = False
    worker_id: int | None = None

    @property
    def task_kwargs(self) -> dict[str, Any]:
        """procrastinate's name for the task's keyword arguments."""
        return self.args

    @property
    def entrypoint(self) -> str:
        """PgQueuer's name for the task name."""
        return self.task_name

    @property
    def dedupe_key(self) -> str | None:
        """PgQueuer's name for the queueing lock."""
        return self.queueing_lock


def dump_args(
    task_name: str, kwargs: Mapping[str, Any], dumps: Callable[[Any], str] | None = None
) -> str:
    """Serialise task arguments to JSON text, or say exactly which one cannot be.

    ``dumps`` is the connector's ``json_dumps`` (procrastinate's option), used
    instead of ``json.dumps`` when given: a ``TypeError`` or ``ValueError``
    from it is reported as below, argument by argument, through it again. What
    it returns is sent as it is, so it must be JSON text; it is checked for
    NUL characters and surrogates like ours, but not for NaN (PostgreSQL then
    refuses the insert).

    NaN and infinities are refused too: they are not JSON, and PostgreSQL's
    ``jsonb`` would reject them later, after the caller has moved on. So are
    strings that ``jsonb`` cannot hold: a NUL character, and surrogate code
    points (a str with a lone ``\\ud800`` in it, from bytes decoded with
    ``surrogateescape``, say).
    """
    dump = dumps or _dump
    try:
        text = dump(kwargs)
    except (TypeError, ValueError):
        pass
    else:
        # Both show in our JSON text as escapes (json.dumps writes ASCII): look
        # closer only then. An emoji escapes to a surrogate pair, and is fine.
        # Another dumps may write them as they are.
        if "\\u0000" in text or "\\ud" in text or (dumps is not None and _unstorable(text)):
            _refuse_unstorable_text(task_name, kwargs)
        return text
    for name, value in kwargs.items():
        try:
            dump(value)
        except (TypeError, ValueError) as error:
            raise UnserializableArguments(
                f"argument {name!r} of task {task_name!r} is not JSON serialisable: "
                f"{_describe(value)} ({error}). Task arguments are stored as JSON; "
                "pass plain str, int, float, bool, None, list or dict values."
            ) from None
    raise UnserializableArguments(  # a key that is not a string, say
        f"the arguments of task {task_name!r} are not JSON serialisable; "
        "pass keyword arguments whose values are plain JSON values."
    )


#: What json.dumps(value, allow_nan=False, separators=(",", ":")) makes anew on every
#: call, made once: a batch of 10,000 jobs dumps 10,000 arguments.
_dump: Callable[[Any], str] = json.JSONEncoder(allow_nan=False, separators=(",", ":")).encode


def _unstorable(value: Any) -> str | None:
    """What in ``value`` (a JSON value) PostgreSQL's text and jsonb cannot store, if anything."""
    if isinstance(value, str):
        if "\x00" in value:
            return "a NUL character (\\x00)"
        if any("\ud800" <= char <= "\udfff" for char in value):
            return "a surrogate code point (U+D800 to U+DFFF), which is not Unicode text"
        return None
    if isinstance(value, dict):
        items: list[Any] = [*value.keys(), *value.values()]
        return next((found for item in items if (found := _unstorable(item))), None)
    if isinstance(value, (list, tuple)):
        return next((found for item in value if (found := _unstorable(item))), None)
    return None


def _refuse_unstorable_text(task_name: str, kwargs: Mapping[str, Any]) -> None:
    for name, value in kwargs.items():
        found = _unstorable(name) or _unstorable(value)
        if found:
            raise UnserializableArguments(
                f"argument {name!r} of task {task_name!r} holds {found}, which PostgreSQL "
                "cannot store in text or jsonb: the job would not be saved. Remove it, or "
                "pass binary data encoded (base64, say)."
            )


def _describe(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return f"the float {value!r}"
    return f"a value of type {type(value).__name__}"


def schedule_in_seconds(schedule_in: Mapping[str, float] | datetime.timedelta) -> float:
    """``{"seconds": 30}`` or a timedelta, as seconds."""
    if isinstance(schedule_in, datetime.timedelta):
        return schedule_in.total_seconds()
    try:
        return datetime.timedelta(**schedule_in).total_seconds()
    except TypeError as error:
        raise TypeError(
            f"schedule_in={dict(schedule_in)!r} is not valid: use timedelta keywords, "
            'e.g. {"seconds": 30} or {"minutes": 5}'
        ) from error


def job_from_row(row: Mapping[str, Any], loads: Callable[[str], Any] | None = None) -> Job:
    """Build a Job from a ``fetch_jobs`` row, whatever driver returned it.

    ``loads`` is the connector's ``json_loads`` (procrastinate's option), used
    instead of ``json.loads`` for ``args`` when given.
    """
    payload = row["payload"]
    if payload is not None and not isinstance(payload, bytes):
        payload = bytes(payload)  # psycopg2 and aiopg return memoryview for bytea
    return Job(
        id=row["id"],
        task_name=row["task_name"],
        queue=row["queue"],
        args=(loads or json.loads)(row["args"]),
        payload=payload,
        priority=row["priority"],
        attempts=row["attempts"],
        lock=row["lock"],
        queueing_lock=row["queueing_lock"],
        scheduled_at=row["scheduled_at"],
        created_at=row["created_at"],
        headers=None if row.get("headers") is None else json.loads(row["headers"]),
        status=Status(row["status"]) if "status" in row else Status.DOING,  # claimed: doing
        abort_requested=row.get("abort_requested", False),
        worker_id=row.get("worker_id"),
    )


def spec_values(face: Face, spec: JobSpec) -> dict[str, Any]:
    """The parameters of ``defer_job`` (and ``enqueue_job``): :func:`spec_columns` for one
    job, plain values instead of arrays."""
    return {
        "face": face.value,
        "queue": spec.queue,
        "task_name": spec.task_name,
        "args": spec.args,
        "payload": spec.payload,
        "priority": spec.priority,
        "lock": spec.lock,
        "queueing_lock": spec.queueing_lock,
        "schedule_at": spec.schedule_at,
        "schedule_in": spec.schedule_in,
    }


def spec_columns(face: Face, specs: Sequence[JobSpec]) -> dict[str, Any]:
    """The parameters of the ``defer_jobs`` query: one array per column."""
    return {
        "face": face.value,
        "queues": [s.queue for s in specs],
        "task_names": [s.task_name for s in specs],
        "args": [s.args for s in specs],
        "payloads": [s.payload for s in specs],
        "priorities": [s.priority for s in specs],
        "locks": [s.lock for s in specs],
        "queueing_locks": [s.queueing_lock for s in specs],
        "schedule_ats": [s.schedule_at for s in specs],
        "schedule_ins": [s.schedule_in for s in specs],
    }
