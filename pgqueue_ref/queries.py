"""``Queries(driver)``: PgQueuer's queue operations, over any driver or connector.

::

    queries = Queries(PsycopgDriver(conn))        # an async driver: methods are coroutines
    await queries.install()                       # the shared schema; idempotent
    await queries.enqueue("fetch", b"payload")    # -> [job id]
    await queries.enqueue(["a", "b"], [b"1", None], [0, 5])   # a batch, one statement

    queries = Queries(SyncPsycopgDriver(conn))    # a blocking driver: the same methods,
    queries.enqueue("fetch", b"payload")          # plain calls -> [job id]

``Queries(driver)`` is a :class:`SyncQueries` when the driver is blocking
(PgQueuer 1.6 returned coroutines there, which nobody awaited, so nothing was
enqueued). Both classes only *build* :class:`~pgqueue_ref.manager.Call` objects
(the shared :class:`_QueryCalls`) and run them through
:class:`~pgqueue_ref.manager.JobManager`, awaiting or not: the logic exists once.

``Queries(x)`` also takes a driver of your own written against PgQueuer's
driver protocol (:mod:`pgqueue_ref.connectors.driver`). The queue log and
statistics (``queue_log``, ``log_statistics``...) and ``clear_queue`` are
:mod:`pgqueue_ref.queue_log`'s.

Jobs land in ``pgqueue_jobs`` with face ``'queue'``: the same table the App
face writes, served by the same worker engine (see :class:`~pgqueue_ref.queuer.PgQueuer`).
"""

from __future__ import annotations

import contextlib
import datetime
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Self, TypeAlias, overload

import psycopg
import psycopg_pool

from . import connectors
from .connectors import AsyncConnector, BaseConnector, Row, SyncConnector
from .connectors.custom import as_connector
from .connectors.driver import PgQueuerDriver
from .connectors.psycopg import PsycopgDriver, PsycopgPoolDriver
from .exceptions import AlreadyEnqueued, DuplicateJobError
from .jobs import Face, JobSpec, spec_columns, spec_values
from .manager import Call, JobManager, SchemaManager
from .queue_log import AsyncLogMethods, SyncLogMethods
from .settings import Channel, DBSettings
from .sql import QUERIES

if TYPE_CHECKING:
    import asyncpg

__all__ = ["FailedJob", "OnConflict", "Queries", "QueueStatistics", "SortOrder", "SyncQueries"]

#: PgQueuer's order of list_failed_jobs: newest ("DESC") or oldest ("ASC") first.
SortOrder: TypeAlias = Literal["ASC", "DESC"]

#: What enqueue does with a dedupe key that a waiting job already holds.
OnConflict: TypeAlias = Literal["raise", "skip"]

# Each enqueue argument is one value, or (for a batch) a list with one per job.
Entrypoints: TypeAlias = str | list[str]
Payloads: TypeAlias = bytes | None | list[bytes | None]
Priorities: TypeAlias = int | list[int]
Delays: TypeAlias = datetime.timedelta | None | list[datetime.timedelta | None]
DedupeKeys: TypeAlias = str | None | list[str | None]
Headers: TypeAlias = dict[str, str] | None | list[dict[str, str] | None]


@dataclass(frozen=True, slots=True)
class QueueStatistics:
    """One line of ``queue_size()``: how many Queue-face jobs wait or run."""

    entrypoint: str
    priority: int
    status: str  # 'todo' (PgQueuer: queued) or 'doing' (PgQueuer: picked)
    count: int


@dataclass(frozen=True, slots=True)
class FailedJob:
    """One line of ``list_failed_jobs()``: a Queue-face job that failed, with its error."""

    id: int
    entrypoint: str
    priority: int
    attempts: int
    payload: bytes | None
    error: str | None
    created_at: datetime.datetime
    finished_at: datetime.datetime | None

    @classmethod
    def from_row(cls, row: Row) -> FailedJob:
        payload = row["payload"]
        return cls(**{**row, "payload": None if payload is None else bytes(payload)})


def _as_list(name: str, value: Any, size: int | None) -> list[Any]:
    if isinstance(value, list):
        if size is None:
            raise TypeError(
                f"enqueue got one entrypoint but a list for {name}: for a batch, give a list "
                "of entrypoints too, one per job"
            )
        if len(value) != size:
            raise ValueError(
                f"enqueue got {size} entrypoints but {len(value)} values for {name}: "
                "give one per job, or a single value for all"
            )
        return value
    return [value] * (size or 1)


def _job_specs(
    entrypoint: Entrypoints,
    payload: Payloads,
    priority: Priorities,
    execute_after: Delays,
    dedupe_key: DedupeKeys,
) -> list[JobSpec]:
    """PgQueuer's arguments (each a value, or a list with one value per job) as JobSpecs."""
    size = len(entrypoint) if isinstance(entrypoint, list) else None
    entrypoints = _as_list("entrypoint", entrypoint, size)
    columns = zip(
        entrypoints,
        _as_list("payload", payload, size),
        _as_list("priority", priority, size),
        _as_list("execute_after", execute_after, size),
        _as_list("dedupe_key", dedupe_key, size),
    )
    specs = []
    for name, data, prio, after, key in columns:
        if not isinstance(name, str) or not name:
            raise TypeError(f"entrypoint={name!r}: expected the entrypoint's name, a string")
        if data is not None and not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(
                f"payload of type {type(data).__name__}: the Queue face stores bytes; encode it "
                "first (e.g. json.dumps(data).encode()), or use the App face for JSON arguments"
            )
        if not isinstance(prio, int) or isinstance(prio, bool):
            raise TypeError(f"priority={prio!r}: expected an int (higher runs first)")
        if after is not None and not isinstance(after, datetime.timedelta):
            raise TypeError(f"execute_after={after!r}: expected a datetime.timedelta, or None")
        specs.append(
            JobSpec(
                task_name=name,
                payload=None if data is None else bytes(data),
                priority=prio,
                queueing_lock=key,
                schedule_in=None if after is None else after.total_seconds(),
            )
        )
    return specs


def _header_texts(headers: Headers, size: int | None) -> list[str | None]:
    """PgQueuer's ``headers=`` (a dict of strings per job, or None) as JSON text per job."""
    texts: list[str | None] = []
    for header in _as_list("headers", headers, size):
        if header is None:
            texts.append(None)
            continue
        if not isinstance(header, dict) or not all(
            isinstance(key, str) and isinstance(value, str) for key, value in header.items()
        ):
            raise TypeError(
                f"headers={header!r}: expected a dict of str to str (PgQueuer's headers), or None"
            )
        texts.append(json.dumps(header, separators=(",", ":")))
    return texts


def _ids_in_order(keys: list[str | None]) -> Callable[[list[Row]], list[int | None]]:
    """Read the enqueue rows back as one id per job, None where a duplicate was skipped.

    Jobs without a dedupe key are never skipped and their ids ascend in input
    order; a job with a key got the id returned with that key, if it was the
    first of the batch with it.
    """

    def ids(rows: list[Row]) -> list[int | None]:
        keyless = iter(sorted(row["id"] for row in rows if row["queueing_lock"] is None))
        by_key = {row["queueing_lock"]: row["id"] for row in rows if row["queueing_lock"]}
        return [next(keyless) if key is None else by_key.pop(key, None) for key in keys]

    return ids


class _QueryCalls:
    """The calls, built once for both classes: each method returns a Call."""

    def __init__(self, driver: BaseConnector, channel: str | None = None) -> None:
        self.driver = driver
        self.channel = Channel(channel) if channel is not None else DBSettings().channel
        self._manager = JobManager(driver)
        self._schema = SchemaManager(driver)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.driver!r}, channel={str(self.channel)!r})"

    def _enqueue_call(
        self,
        entrypoint: Entrypoints,
        payload: Payloads,
        priority: Priorities,
        execute_after: Delays,
        dedupe_key: DedupeKeys,
        on_conflict: OnConflict,
        headers: Headers = None,
    ) -> Call[list[int | None]]:
        if on_conflict not in ("raise", "skip"):
            raise ValueError(f"on_conflict={on_conflict!r}: expected 'raise' or 'skip'")
        specs = _job_specs(entrypoint, payload, priority, execute_after, dedupe_key)
        size = len(entrypoint) if isinstance(entrypoint, list) else None
        ids = _ids_in_order([s.queueing_lock for s in specs])
        if size is None and on_conflict == "raise":  # one job: enqueue_job's plain values
            (header,) = _header_texts(headers, None)
            one = spec_values(Face.QUEUE, specs[0]) | {
                "header": header,
                "channel": str(self.channel),
            }
            return Call(QUERIES["enqueue_job"], one, ids)
        query = "enqueue_jobs" if on_conflict == "raise" else "enqueue_jobs_skip_duplicates"
        params = {
            **spec_columns(Face.QUEUE, specs),
            "channel": str(self.channel),
            "headers": _header_texts(headers, size),
        }
        return Call(QUERIES[query], params, ids)

    @staticmethod
    def _queue_size_call() -> Call[list[QueueStatistics]]:
        return Call(
            QUERIES["queue_size"], {}, lambda rows: [QueueStatistics(**row) for row in rows]
        )

    @staticmethod
    def _status_counts_call() -> Call[dict[str, int]]:
        def queue_face_only(rows: list[Row]) -> dict[str, int]:
            counts: dict[str, int] = {}
            for row in rows:
                if row["face"] == Face.QUEUE:
                    counts[row["status"]] = counts.get(row["status"], 0) + row["count"]
            return counts

        return Call(QUERIES["status_counts"], {}, queue_face_only)

    # -- held failures (entrypoint(on_failure="hold")) ------------------------------

    def _requeue_jobs_call(self, ids: list[int]) -> Call[list[int]]:
        if not isinstance(ids, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in ids
        ):
            raise TypeError(f"ids={ids!r}: expected a list of job ids (ints)")
        params = {"ids": ids, "channel": str(self.channel)}
        return Call(
            QUERIES["requeue_failed_queue_jobs"], params, lambda rows: [r["id"] for r in rows]
        )

    @staticmethod
    def _list_failed_jobs_call(limit: int, order: SortOrder) -> Call[list[FailedJob]]:
        if order not in ("ASC", "DESC"):
            raise ValueError(f"order={order!r}: expected 'ASC' or 'DESC'")
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise ValueError(f"limit={limit!r}: expected an int of at least 1")
        params = {"limit": limit, "ascending": order == "ASC"}
        return Call(
            QUERIES["list_failed_queue_jobs"],
            params,
            lambda rows: [FailedJob.from_row(row) for row in rows],
        )


@contextlib.contextmanager
def _duplicates_named(dedupe_key: DedupeKeys) -> Iterator[None]:
    """AlreadyEnqueued, under PgQueuer's name and with the keys it was given."""
    try:
        yield
    except AlreadyEnqueued as error:
        keys = dedupe_key if isinstance(dedupe_key, list) else [dedupe_key]
        given = [repr(k) for k in keys if k is not None]
        which = "it" if len(given) == 1 else "one of them"
        raise DuplicateJobError(
            f"dedupe_key {', '.join(given)}: a waiting job already holds {which} (or an earlier "
            "job of the same batch does), so nothing was enqueued. Pass "
            "on_conflict='skip' to enqueue the others and get None for the duplicates.",
            dedupe_key=keys,
            sqlstate=error.sqlstate,
        ) from error


class Queries(_QueryCalls, AsyncLogMethods):
    """Queue operations on an async driver: every method is a coroutine.

    ``Queries(blocking_driver)`` returns a :class:`SyncQueries` instead.
    """

    def __new__(cls, driver: BaseConnector | PgQueuerDriver, channel: str | None = None) -> Self:
        if cls is Queries and isinstance(driver, SyncConnector):
            # Not a Queries instance, so Python does not call Queries.__init__ on
            # it. Type checkers cannot follow this switch (__new__ must return a
            # Queries for them): typed code may build SyncQueries(driver) directly.
            return SyncQueries(driver, channel)  # type: ignore[return-value]
        return super().__new__(cls)

    def __init__(self, driver: BaseConnector | PgQueuerDriver, channel: str | None = None) -> None:
        # A driver of your own, written against PgQueuer's protocol, is wrapped here.
        driver = as_connector(driver)
        if not isinstance(driver, AsyncConnector):
            raise TypeError(f"Queries needs a driver or connector; got {type(driver).__name__}")
        super().__init__(driver, channel)

    # -- PgQueuer's classmethods: the driver is made for you (see pgqueue_ref.db) --

    @classmethod
    def from_asyncpg_connection(cls, connection: asyncpg.Connection) -> Queries:
        """Needs the ``asyncpg`` extra (imported now, not with pgqueue_ref)."""
        return cls(connectors.load("AsyncpgDriver")(connection))

    @classmethod
    def from_asyncpg_pool(cls, pool: asyncpg.Pool) -> Queries:
        """Needs the ``asyncpg`` extra (imported now, not with pgqueue_ref)."""
        return cls(connectors.load("AsyncpgPoolDriver")(pool))

    @classmethod
    def from_psycopg_connection(cls, connection: psycopg.AsyncConnection[Any]) -> Queries:
        """The connection must be in autocommit mode, as PgQueuer's."""
        return cls(PsycopgDriver(connection))

    @classmethod
    def from_psycopg_pool(cls, pool: psycopg_pool.AsyncConnectionPool[Any]) -> Queries:
        """Beyond PgQueuer, whose Queries has no psycopg pool driver."""
        return cls(PsycopgPoolDriver(pool))

    async def install(self) -> None:
        """Apply the shared schema (``sql/schema.sql``); harmless if it is there."""
        await self._schema.apply_schema_async()

    @overload
    async def enqueue(
        self,
        entrypoint: Entrypoints,
        payload: Payloads,
        priority: Priorities = 0,
        execute_after: Delays = None,
        dedupe_key: DedupeKeys = None,
        headers: Headers = None,
        *,
        on_conflict: Literal["raise"] = "raise",
    ) -> list[int]: ...

    @overload
    async def enqueue(
        self,
        entrypoint: Entrypoints,
        payload: Payloads,
        priority: Priorities = 0,
        execute_after: Delays = None,
        dedupe_key: DedupeKeys = None,
        headers: Headers = None,
        *,
        on_conflict: Literal["skip"],
    ) -> list[int | None]: ...

    async def enqueue(
        self,
        entrypoint: Entrypoints,
        payload: Payloads,
        priority: Priorities = 0,
        execute_after: Delays = None,
        dedupe_key: DedupeKeys = None,
        headers: Headers = None,
        *,
        on_conflict: OnConflict = "raise",
    ) -> list[int] | list[int | None]:
        """Enqueue one job, or one per entrypoint if ``entrypoint`` is a list (then
        each other argument is a list of the same length, or one value for all).
        Returns the job ids; with ``on_conflict="skip"``, None for skipped duplicates.
        ``headers`` (PgQueuer's): a dict of strings per job, the entrypoint's ``job.headers``.
        """
        call = self._enqueue_call(
            entrypoint, payload, priority, execute_after, dedupe_key, on_conflict, headers
        )
        with _duplicates_named(dedupe_key):
            return await self._manager.run_async(call)

    async def queue_size(self) -> list[QueueStatistics]:
        """Waiting and running Queue-face jobs, per entrypoint, priority and status."""
        return await self._manager.run_async(self._queue_size_call())

    async def status_counts(self) -> dict[str, int]:
        """Queue-face jobs per status, finished ones included."""
        return await self._manager.run_async(self._status_counts_call())

    async def requeue_jobs(self, ids: list[int]) -> list[int]:
        """PgQueuer's ``requeue_jobs``: the failed Queue-face jobs among ``ids`` wait again,
        to run at once, attempts back to 0. Returns the ids requeued (PgQueuer: None);
        other ids are left alone."""
        return await self._manager.run_async(self._requeue_jobs_call(ids))

    async def list_failed_jobs(
        self, limit: int = 100, order: SortOrder = "DESC"
    ) -> list[FailedJob]:
        """PgQueuer's ``list_failed_jobs``: failed Queue-face jobs, with their error."""
        return await self._manager.run_async(self._list_failed_jobs_call(limit, order))


class SyncQueries(_QueryCalls, SyncLogMethods):
    """Queue operations on a blocking driver: the same methods as plain calls."""

    def install(self) -> None:
        self._schema.apply_schema()

    @overload
    def enqueue(
        self,
        entrypoint: Entrypoints,
        payload: Payloads,
        priority: Priorities = 0,
        execute_after: Delays = None,
        dedupe_key: DedupeKeys = None,
        headers: Headers = None,
        *,
        on_conflict: Literal["raise"] = "raise",
    ) -> list[int]: ...

    @overload
    def enqueue(
        self,
        entrypoint: Entrypoints,
        payload: Payloads,
        priority: Priorities = 0,
        execute_after: Delays = None,
        dedupe_key: DedupeKeys = None,
        headers: Headers = None,
        *,
        on_conflict: Literal["skip"],
    ) -> list[int | None]: ...

    def enqueue(
        self,
        entrypoint: Entrypoints,
        payload: Payloads,
        priority: Priorities = 0,
        execute_after: Delays = None,
        dedupe_key: DedupeKeys = None,
        headers: Headers = None,
        *,
        on_conflict: OnConflict = "raise",
    ) -> list[int] | list[int | None]:
        """See :meth:`Queries.enqueue`."""
        call = self._enqueue_call(
            entrypoint, payload, priority, execute_after, dedupe_key, on_conflict, headers
        )
        with _duplicates_named(dedupe_key):
            return self._manager.run(call)

    def queue_size(self) -> list[QueueStatistics]:
        return self._manager.run(self._queue_size_call())

    def status_counts(self) -> dict[str, int]:
        return self._manager.run(self._status_counts_call())

    def requeue_jobs(self, ids: list[int]) -> list[int]:
        """See :meth:`Queries.requeue_jobs`."""
        return self._manager.run(self._requeue_jobs_call(ids))

    def list_failed_jobs(self, limit: int = 100, order: SortOrder = "DESC") -> list[FailedJob]:
        """See :meth:`Queries.list_failed_jobs`."""
        return self._manager.run(self._list_failed_jobs_call(limit, order))
