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
from ..jobs import Face, JobSpec, spec_values
from ..sql import CHANNEL, QUERIES, SCHEMA, to_numbered

__all__ = ["KINDS", "QUEUE_KINDS", "CommitRates", "Notifications", "commit_rates", "durable_server"]

_BARE = "CREATE TABLE IF NOT EXISTS bare_jobs (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, args jsonb NOT NULL)"
_DEFER, _DEFER_NAMES = to_numbered(str(QUERIES["defer_job"]))
#: One no-op job, due now, as each statement takes it (the jobs' own parameters, from
#: the same spec_values the library sends).
_NOOP = JobSpec(task_name="noop", schedule_in=0.0)
_DEFER_VALUES = spec_values(Face.APP, _NOOP)
_ENQUEUE, _ENQUEUE_NAMES = to_numbered(str(QUERIES["enqueue_job"]))
_ENQUEUE_VALUES = spec_values(Face.QUEUE, _NOOP) | {"header": None, "channel": CHANNEL}

#: What each kind of producer sends, one row per transaction.
KINDS: dict[str, str] = {
    "INSERT": "INSERT INTO bare_jobs (args) VALUES ($1::jsonb)",
    "INSERT + pg_notify": "WITH i AS (INSERT INTO bare_jobs (args) VALUES ($1::jsonb) RETURNING id) "
    "SELECT id FROM i, pg_notify('bare_jobs', '')",
    "defer_job, no worker idle": _DEFER,
    "defer_job, a worker idle": _DEFER,
}
#: The Queue face's one-job enqueue (``Queries.enqueue``'s statement), the same two ways:
#: ``commit_rates(dsn, kinds=KINDS | QUEUE_KINDS)``.
QUEUE_KINDS: dict[str, str] = {
    "enqueue_job, no consumer idle": _ENQUEUE,
    "enqueue_job, a consumer idle": _ENQUEUE,
}


@dataclass
class CommitRates:
    """Rows per second by kind and number of producers (:func:`commit_rates`)."""

    producers: list[int]
    rates: dict[tuple[str, int], float] = field(default_factory=dict)
    #: The kinds measured, in order (:data:`KINDS` unless asked otherwise).
    kinds: list[str] = field(default_factory=lambda: list(KINDS))
    #: Whether each commit waited for its flush to the disk (``fsync`` on).
    flushed: bool = True

    def rows(self) -> list[dict[str, Any]]:
        """One row per number of producers: each kind's rows/s, rounded."""
        return [
            {"producers": p} | {kind: round(self.rates[kind, p]) for kind in self.kinds}
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
    dsn: str,
    producers: Sequence[int] = (1, 4, 16),
    jobs: int = 800,
    kinds: dict[str, str] = KINDS,
) -> CommitRates:
    """Rows/s of ``jobs`` one-row transactions spread over ``p`` asyncpg connections, for
    each ``p`` in ``producers`` and each of ``kinds`` (:data:`KINDS`, and
    :data:`QUEUE_KINDS`), measured in turn. Needs pgqueue_ref's schema on ``dsn``; adds a
    table ``bare_jobs`` and, before the kinds "... a worker idle" and "... a consumer
    idle", an idle mark of each face on worker rows of its own; all removed afterwards."""
    import asyncpg

    await _execute(dsn, _BARE)
    kinds = dict(sorted(kinds.items(), key=lambda item: _marked(item[0])))  # marks last
    result = CommitRates(list(producers), kinds=list(kinds))
    durable = {"synchronous_commit": "on"}  # the server's own setting may be off
    conns = [await asyncpg.connect(dsn, server_settings=durable) for _ in range(max(producers))]
    result.flushed = await conns[0].fetchval("SELECT current_setting('fsync') = 'on'")
    try:
        marked = False
        for kind, sql in kinds.items():
            if _marked(kind) and not marked:
                await _execute(dsn, _IDLE_MARK)
                marked = True
            for p in producers:
                result.rates[kind, p] = await _rate(conns[:p], sql, max(1, jobs // p))
    finally:
        for conn in conns:
            await conn.close()
        await _execute(dsn, "DROP TABLE bare_jobs; " + _NO_IDLE_MARK)
    return result


def _marked(kind: str) -> bool:
    """Measured while a worker of each face is marked idle (so each defer notifies)."""
    return kind.endswith((", a worker idle", ", a consumer idle"))


_IDLE_MARK = (
    "WITH w AS (INSERT INTO pgqueue_workers (name) SELECT 'commit_rates' "
    "FROM generate_series(1, 2) RETURNING id) "
    "INSERT INTO pgqueue_listeners (worker_id, face, queues, idle) "
    "SELECT id, CASE WHEN id % 2 = 0 THEN 'app' ELSE 'queue' END, NULL, true FROM w"
)
_NO_IDLE_MARK = (
    "DELETE FROM pgqueue_workers WHERE name = 'commit_rates'; "
    "DELETE FROM pgqueue_jobs WHERE task_name = 'noop'"
)


async def _rate(conns: list[Any], sql: str, each: int) -> float:
    def args(n: int) -> list[Any]:
        if sql is _DEFER:
            values = _DEFER_VALUES | {"args": json.dumps({"n": n})}
            return [values[name] for name in _DEFER_NAMES]
        if sql is _ENQUEUE:
            enqueued = _ENQUEUE_VALUES | {"payload": str(n).encode()}
            return [enqueued[name] for name in _ENQUEUE_NAMES]
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


async def _main(producers: Sequence[int], jobs: int) -> None:
    async with durable_server() as dsn:
        rates = await commit_rates(dsn, producers, jobs, kinds=KINDS | QUEUE_KINDS)
    print("rows/s, one row per transaction, on a throwaway server with fsync on\n")
    print("| producers | " + " | ".join(rates.kinds) + " |")
    print("| ---: |" + " ---: |" * len(rates.kinds))
    for row in rates.rows():
        print("| " + " | ".join(f"{value:,}" for value in row.values()) + " |")


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m pgqueue_ref.bench.commit_lock",
        description="NOTIFY's commit lock: every kind of producer, both faces, side by side.",
    )
    parser.add_argument("--producers", type=int, nargs="+", default=[1, 4, 16, 32])
    parser.add_argument("--jobs", type=int, default=1600, help="rows per kind and producer count")
    options = parser.parse_args()
    asyncio.run(_main(options.producers, options.jobs))
