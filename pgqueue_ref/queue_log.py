"""PgQueuer's queue maintenance, queue log and statistics, on :class:`~pgqueue_ref.queries.Queries`.

::

    await queries.clear_queue("fetch")          # waiting and running jobs of "fetch"
    await queries.queue_log()                   # [Log(created, job_id, status, ...), ...]
    await queries.log_statistics(10, last=timedelta(minutes=5))   # per second, newest first

**Where the log lives.** PgQueuer writes a log row for every transition of
every job, in the statements that make them. Here finished jobs stay in
``pgqueue_jobs`` (until retention deletes them) and each row already holds
the time of each of its transitions, so the log is a view over the jobs,
``pgqueue_queue_log`` (``sql/schema.sql``): nothing more is written per job,
and finishing a job costs what it did. What that gives up, against PgQueuer:

* a retried job shows its last attempt only (queued, picked, outcome);
* a deleted job leaves the log with it: the worker's ``delete_jobs=``,
  ``delete_old_jobs``, and :meth:`~AsyncLogMethods.clear_queue_log`, which,
  like ``clear_statistics_log``, deletes finished Queue-face jobs (both are
  read from them);
* statistics are counted when asked, so ``aggregate_logs()`` has nothing to
  fold and returns at once;
* ``Log.traceback`` is the job's last error as text, not a ``TracebackRecord``,
  and ``Log`` has no ``aggregated``.

Statuses are PgQueuer's: ``queued``, ``picked``, ``successful``,
``exception`` (our ``failed``) and ``canceled`` (our ``cancelled`` and
``aborted``). The methods build :class:`~pgqueue_ref.manager.Call` objects once,
for both :class:`AsyncLogMethods` and :class:`SyncLogMethods`.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .manager import Call
from .sql import QUERIES

if TYPE_CHECKING:
    from .manager import JobManager

__all__ = ["AsyncLogMethods", "Log", "LogStatistics", "SyncLogMethods"]


@dataclass(frozen=True, slots=True)
class Log:
    """One transition of one Queue-face job (PgQueuer's ``models.Log``)."""

    created: datetime.datetime
    job_id: int
    status: str  # queued, picked, successful, exception or canceled
    priority: int
    entrypoint: str
    traceback: str | None  # the error, on 'exception'


@dataclass(frozen=True, slots=True)
class LogStatistics:
    """Transitions counted per second, entrypoint, priority and status
    (PgQueuer's ``models.LogStatistics``)."""

    count: int
    created: datetime.datetime  # the second they fall in
    entrypoint: str
    priority: int
    status: str


def _entrypoints(entrypoint: str | list[str] | None) -> list[str] | None:
    """PgQueuer's argument: one name, a list of them, or None (or empty) for all."""
    if not entrypoint:
        return None
    names = [entrypoint] if isinstance(entrypoint, str) else list(entrypoint)
    if not all(isinstance(name, str) for name in names):
        raise TypeError(f"entrypoint={entrypoint!r}: expected a name, a list of names, or None")
    return names


def _nothing(rows: list[dict[str, Any]]) -> None:
    return None


def _clear_queue(entrypoint: str | list[str] | None) -> Call[None]:
    return Call(QUERIES["clear_queue"], {"entrypoints": _entrypoints(entrypoint)}, _nothing)


def _clear_log(entrypoint: str | list[str] | None) -> Call[None]:
    return Call(QUERIES["clear_queue_log"], {"entrypoints": _entrypoints(entrypoint)}, _nothing)


def _logs(rows: list[dict[str, Any]]) -> list[Log]:
    return [Log(**row) for row in rows]


def _queue_log() -> Call[list[Log]]:
    return Call(QUERIES["queue_log"], {}, _logs)


def _job_log_history(job_id: int, limit: int) -> Call[list[Log]]:
    return Call(QUERIES["job_log_history"], {"id": job_id, "limit": limit}, _logs)


def _log_statistics(
    limit: int | None, last: datetime.timedelta | None
) -> Call[list[LogStatistics]]:
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit={limit!r}: expected a count of rows (an int >= 0), or None")
    if last is not None and not isinstance(last, datetime.timedelta):
        raise TypeError(f"last={last!r}: expected a datetime.timedelta, or None")
    params = {"limit": limit, "last": None if last is None else last.total_seconds()}
    return Call(
        QUERIES["log_statistics"], params, lambda rows: [LogStatistics(**row) for row in rows]
    )


class AsyncLogMethods:
    """The methods of :class:`~pgqueue_ref.queries.Queries` (coroutines)."""

    _manager: JobManager

    async def clear_queue(self, entrypoint: str | list[str] | None = None) -> None:
        """Delete the waiting and running Queue-face jobs, of ``entrypoint`` (one name or a
        list) or of all. Finished jobs (the log) and App-face jobs stay."""
        await self._manager.run_async(_clear_queue(entrypoint))

    async def queue_log(self) -> list[Log]:
        """Every transition of every Queue-face job still in the table, oldest first."""
        return await self._manager.run_async(_queue_log())

    async def job_log_history(self, id: int, limit: int = 100) -> list[Log]:
        """One job's transitions, oldest first."""
        return await self._manager.run_async(_job_log_history(id, limit))

    async def log_statistics(
        self, limit: int | None, last: datetime.timedelta | None = None
    ) -> list[LogStatistics]:
        """The log counted per second, entrypoint, priority and status, newest first: up
        to ``limit`` rows (None: all), within ``last`` (None: all time)."""
        return await self._manager.run_async(_log_statistics(limit, last))

    async def aggregate_logs(self) -> None:
        """Nothing to do: statistics are counted from the jobs when asked (PgQueuer folds
        its log into a statistics table here)."""

    async def clear_queue_log(self, entrypoint: str | list[str] | None = None) -> None:
        """Delete the finished Queue-face jobs (they are the log), of ``entrypoint`` or all."""
        await self._manager.run_async(_clear_log(entrypoint))

    async def clear_statistics_log(self, entrypoint: str | list[str] | None = None) -> None:
        """The same as :meth:`clear_queue_log`: statistics are counted from the same jobs."""
        await self._manager.run_async(_clear_log(entrypoint))


class SyncLogMethods:
    """The same methods on :class:`~pgqueue_ref.queries.SyncQueries` (plain calls)."""

    _manager: JobManager

    def clear_queue(self, entrypoint: str | list[str] | None = None) -> None:
        self._manager.run(_clear_queue(entrypoint))

    def queue_log(self) -> list[Log]:
        return self._manager.run(_queue_log())

    def job_log_history(self, id: int, limit: int = 100) -> list[Log]:
        return self._manager.run(_job_log_history(id, limit))

    def log_statistics(
        self, limit: int | None, last: datetime.timedelta | None = None
    ) -> list[LogStatistics]:
        return self._manager.run(_log_statistics(limit, last))

    def aggregate_logs(self) -> None:
        """Nothing to do (see :meth:`AsyncLogMethods.aggregate_logs`)."""

    def clear_queue_log(self, entrypoint: str | list[str] | None = None) -> None:
        self._manager.run(_clear_log(entrypoint))

    def clear_statistics_log(self, entrypoint: str | list[str] | None = None) -> None:
        self._manager.run(_clear_log(entrypoint))
