"""NOTIFY's commit lock, measured live: the helpers of notebook 13.

PostgreSQL commits the transactions that sent a NOTIFY one at a time: at
commit, ``PreCommit_Notify`` (``src/backend/commands/async.c``) takes a lock
on "database 0", one object for the whole cluster, and holds it until the
commit record is on disk. Transactions that notified therefore cannot share a
disk flush (group commit), which is how a busy server commits many
transactions per flush. :func:`commit_rates` shows it: ``P`` connections, each
inserting one row per transaction as fast as it can, with and without a
``pg_notify`` in the statement, and pgqueue_ref's own ``defer_job`` statement
with no worker idle (no NOTIFY) and with one (NOTIFY).

The lock costs what the flush costs: on a server that does not wait for the disk
(``fsync=off``, as the tests' throwaway server runs) it is held for a moment and the
difference drowns in noise (measured at 16 producers, three runs each on PostgreSQL
15 and 18: notifying kinds at 0.65-1.17x their twin, against 0.29-0.50x with
``fsync`` on). So :func:`commit_rates` commits with
``synchronous_commit=on`` and records whether the server flushes, and
:meth:`CommitRates.notifying_is_slower` refuses to judge a run that did not.
:func:`durable_server` starts a throwaway server that does.

:class:`Notifications` is a LISTENing connection that reports what it heard::

    async with Notifications(dsn) as heard:
        await task.defer_async(n=1)
        await heard.payloads()  # ['app:default'] while a worker is idle, else []
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Self

import psycopg

from ..embedded import EmbeddedPostgres
from ..sql import CHANNEL, QUERIES, SCHEMA, to_numbered

__all__ = ["KINDS", "CommitRates", "Notifications", "commit_rates", "durable_server"]

_BARE = "CREATE TABLE IF NOT EXISTS bare_jobs (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, args jsonb NOT NULL)"
_DEFER, _DEFER_NAMES = to_numbered(str(QUERIES["defer_job"]))
_DEFER_VALUES = {
    "face": "app",
    "queue": "default",
    "task_name": "noop",
    "payload": None,
    "priority": 0,
    "lock": None,
    "queueing_lock": None,
    "schedule_at": None,
    "schedule_in": 0.0,
}

#: What each kind of producer sends, one row per transaction.
KINDS: dict[str, str] = {
    "INSERT": "INSERT INTO bare_jobs (args) VALUES ($1::jsonb)",
    "INSERT + pg_notify": "WITH i AS (INSERT INTO bare_jobs (args) VALUES ($1::jsonb) RETURNING id) "
    "SELECT id FROM i, pg_notify('bare_jobs', '')",
    "defer_job, no worker idle": _DEFER,
    "defer_job, a worker idle": _DEFER,
}


@dataclass
class CommitRates:
    """Rows per second by kind and number of producers (:func:`commit_rates`)."""

    producers: list[int]
    rates: dict[tuple[str, int], float] = field(default_factory=dict)
    #: Whether each commit waited for its flush to the disk (``fsync`` on).
    flushed: bool = True

    def rows(self) -> list[dict[str, Any]]:
        """One row per number of producers: each kind's rows/s, rounded."""
        return [
            {"producers": p} | {kind: round(self.rates[kind, p]) for kind in KINDS}
            for p in self.producers
        ]

    def ratio_rows(self) -> list[dict[str, Any]]:
        """Each notifying kind over its twin that does not notify, by number of producers."""
        return [
            {
                "producers": p,
                "INSERT + pg_notify / INSERT": round(
                    self.ratio("INSERT + pg_notify", "INSERT", p), 2
                ),
                "defer_job: a worker idle / none idle": round(
                    self.ratio("defer_job, a worker idle", "defer_job, no worker idle", p), 2
                ),
            }
            for p in self.producers
        ]

    def ratio(self, kind: str, over: str, producers: int) -> float:
        return self.rates[kind, producers] / self.rates[over, producers]

    def notifying_is_slower(self, producers: int) -> dict[str, bool]:
        """For each kind that notifies, whether it commits fewer rows/s than its twin that
        does not, at ``producers`` producers: the verdict that stays from run to run, on
        a server that flushes. Raises :class:`ValueError` for a run that did not."""
        if not self.flushed:
            raise ValueError(
                "these rates were measured on a server with fsync=off: a commit waits for "
                "no flush, NOTIFY's lock is held for a moment, and the verdict would be "
                "noise. Measure on a server that flushes, e.g. `async with "
                "durable_server() as dsn:`"
            )
        return {
            "INSERT + pg_notify < INSERT": self.ratio("INSERT + pg_notify", "INSERT", producers)
            < 1,
            "defer_job, a worker idle < no worker idle": self.ratio(
                "defer_job, a worker idle", "defer_job, no worker idle", producers
            )
            < 1,
        }


async def commit_rates(
    dsn: str, producers: Sequence[int] = (1, 4, 16), jobs: int = 800
) -> CommitRates:
    """Rows/s of ``jobs`` one-row transactions spread over ``p`` asyncpg connections, for
    each ``p`` in ``producers`` and each of :data:`KINDS`, measured in turn. Needs
    pgqueue_ref's schema on ``dsn``; adds a table ``bare_jobs`` and, for the last kind,
    an idle mark of a worker row of its own, both removed afterwards."""
    import asyncpg

    await _execute(dsn, _BARE)
    result = CommitRates(list(producers))
    durable = {"synchronous_commit": "on"}  # the server's own setting may be off
    conns = [await asyncpg.connect(dsn, server_settings=durable) for _ in range(max(producers))]
    result.flushed = await conns[0].fetchval("SELECT current_setting('fsync') = 'on'")
    try:
        for kind, sql in KINDS.items():
            if kind == "defer_job, a worker idle":
                await _execute(dsn, _IDLE_MARK)
            for p in producers:
                result.rates[kind, p] = await _rate(conns[:p], sql, max(1, jobs // p))
    finally:
        for conn in conns:
            await conn.close()
        await _execute(dsn, "DROP TABLE bare_jobs; " + _NO_IDLE_MARK)
    return result


_IDLE_MARK = (
    "WITH w AS (INSERT INTO pgqueue_workers (name) VALUES ('commit_rates') RETURNING id) "
    "INSERT INTO pgqueue_listeners (worker_id, face, queues, idle) SELECT id, 'app', NULL, true FROM w"
)
_NO_IDLE_MARK = "DELETE FROM pgqueue_workers WHERE name = 'commit_rates'; DELETE FROM pgqueue_jobs WHERE task_name = 'noop'"


async def _rate(conns: list[Any], sql: str, each: int) -> float:
    def args(n: int) -> list[Any]:
        if sql is _DEFER:
            values = _DEFER_VALUES | {"args": json.dumps({"n": n})}
            return [values[name] for name in _DEFER_NAMES]
        return [json.dumps({"n": n})]

    async def produce(conn: Any, count: int) -> None:
        for n in range(count):
            await conn.fetch(sql, *args(n))

    await asyncio.gather(*(produce(conn, 3) for conn in conns))  # prepared statements
    started = time.perf_counter()
    await asyncio.gather(*(produce(conn, each) for conn in conns))
    return each * len(conns) / (time.perf_counter() - started)


@asynccontextmanager
async def durable_server() -> AsyncIterator[str]:
    """A throwaway embedded server with ``fsync`` on (whatever the tests' server does)
    and pgqueue_ref's schema: yields its DSN, and stops it afterwards."""
    server = await asyncio.to_thread(EmbeddedPostgres)  # initdb and start: seconds
    try:
        await _execute(server.dsn_url, SCHEMA)
        yield server.dsn_url
    finally:
        await asyncio.to_thread(server.stop)


async def _execute(dsn: str, statements: str) -> None:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(statements.encode())


class Notifications:
    """A connection LISTENing on pgqueue_ref's channel: what did the defers send?"""

    def __init__(self, dsn: str, channel: str = CHANNEL) -> None:
        self.dsn, self.channel = dsn, channel
        self._conn: psycopg.AsyncConnection[Any] | None = None

    @classmethod
    async def open(cls, dsn: str, channel: str = CHANNEL) -> Notifications:
        """LISTENing from now on, until :meth:`close` (for a notebook's cells)."""
        return await cls(dsn, channel).__aenter__()

    async def __aenter__(self) -> Self:
        self._conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
        await self._conn.execute(f'LISTEN "{self.channel}"'.encode())
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()

    async def payloads(self, wait: float = 0.3) -> list[str]:
        """The payloads heard within ``wait`` seconds, in order."""
        assert self._conn is not None, "use it as `async with Notifications(dsn) as heard:`"
        return [n.payload async for n in self._conn.notifies(timeout=wait)]
