"""Concurrent producers: P connections, one job per transaction, and NOTIFY's commit lock.

``python -m pgqueue_ref bench --operations producers`` measures, for P = 1, 2, 4
... 32 connections each deferring one job per transaction as fast as it can,
the jobs/s of every *kind* of producer below, with no worker running and with
a *busy* worker present (one of ours, its 16 runners held by long jobs, so it
needs no wake-up: the case where a NOTIFY per defer is pure cost):

* ``bare INSERT`` into a two-column table with no NOTIFY: the limit;
* ``INSERT into pgqueue_jobs``: a plain one-row INSERT into our table (every
  column, every index), no NOTIFY: the limit of our schema;
* ``bare INSERT + pg_notify``: the bare INSERT, sending a NOTIFY in the statement.
  PostgreSQL commits the transactions that notified one at a time
  (``PreCommit_Notify`` in ``async.c`` takes a cluster-wide lock, held until
  the commit record is flushed), so their commits cannot share a disk flush;
* ``pgqueue_ref AsyncpgConnector``: ``task.defer_async``, which notifies only
  while a worker of the queue is idle (``pgqueue_wake`` in schema.sql);
* ``pgqueue_ref Queries.enqueue``: the Queue face, PgQueuer's way: ``Queries``
  over an ``AsyncpgDriver`` on each producer's own connection, one
  ``enqueue(entrypoint, payload)`` per job. Its statements call the same
  ``pgqueue_wake``, so they too notify only while a consumer sleeps (none does
  here: the busy worker serves the App face);
* ``... every defer notifies``: the same defers with an idle mark that never
  goes away, so each one notifies: the behaviour before that change.

The P connections are spread over :data:`PROCESSES` producer processes (one
Python process is not enough for 32 producers of ours: the client's CPU would
be the limit), which start each measurement together and report when they
started and finished. Every row a producer inserted is counted in the table
afterwards: a job lost or doubled fails the run.

This module is also the producer and busy-worker process:
``python -m pgqueue_ref.bench.producers produce DSN CONNS`` or ``... busy DSN``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .runner import BenchError, _Child, fresh_database_with
from .subject import count, execute

if TYPE_CHECKING:
    from ..app import App

__all__ = [
    "BARE",
    "BARE_INSERT",
    "BARE_NOTIFY",
    "BARE_SCHEMA",
    "KINDS",
    "OURS",
    "OURS_ALWAYS",
    "PLAIN_INSERT",
    "PROCESSES",
    "PRODUCERS",
    "QUEUE_FACE",
    "SCHEMA_INSERT",
    "ProducerRun",
    "measure_producers",
]

BARE = "bare INSERT, no NOTIFY"
SCHEMA_INSERT = "INSERT into pgqueue_jobs, no NOTIFY"
BARE_NOTIFY = "bare INSERT + pg_notify"
OURS = "pgqueue_ref AsyncpgConnector"
QUEUE_FACE = "pgqueue_ref Queries.enqueue (AsyncpgDriver)"
OURS_ALWAYS = "pgqueue_ref AsyncpgConnector, every defer notifies"
#: In the order each round measures them (OURS_ALWAYS last: its idle mark stays).
KINDS = (BARE, SCHEMA_INSERT, BARE_NOTIFY, OURS, QUEUE_FACE, OURS_ALWAYS)
#: The numbers of concurrent producers measured.
PRODUCERS = (1, 2, 4, 8, 16, 32)
#: Producer processes the connections are spread over.
PROCESSES = 2
#: Runners of the busy worker, each held by a job that sleeps.
BUSY_CONCURRENCY = 16
WARM_UP = 3

#: The limit's table, and the two inserts with no NOTIFY (tools/defer_costs.py times
#: them on one connection too).
BARE_SCHEMA = """
CREATE TABLE bare_jobs (
    id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    args jsonb NOT NULL
);
"""
BARE_INSERT = "INSERT INTO bare_jobs (args) VALUES ($1::jsonb) RETURNING id"
PLAIN_INSERT = "INSERT INTO pgqueue_jobs (task_name, args) VALUES ('plain', $1::jsonb) RETURNING id"
_INSERT_NOTIFY = (
    "WITH i AS (INSERT INTO bare_jobs (args) VALUES ($1::jsonb) RETURNING id) "
    "SELECT id FROM i, pg_notify('bare_jobs', '')"
)


@dataclass
class ProducerRun:
    """jobs/s of one kind of producer, at one number of producers, with or without a worker."""

    kind: str
    producers: int
    worker: str  # "none" or "busy"
    jobs: int
    values: list[float] = field(default_factory=list)


async def _setup(dsn: str) -> None:
    from ..sql import SCHEMA

    await execute(dsn, SCHEMA + BARE_SCHEMA)


async def _phantom_idle_mark(dsn: str) -> None:
    """An idle mark no worker will ever clear: from now on every defer notifies."""
    await execute(
        dsn,
        "WITH w AS (INSERT INTO pgqueue_workers (name) VALUES ('phantom') RETURNING id) "
        "INSERT INTO pgqueue_listeners (worker_id, face, queues, idle) "
        "SELECT id, 'app', NULL, true FROM w",
    )


async def measure_producers(
    runs: dict[tuple[str, int, str], ProducerRun],
    producers: int,
    worker: str,
    jobs: int,
    kinds: Sequence[str] = KINDS,
) -> str:
    """One round: a fresh database, ``producers`` connections over the producer
    processes, each kind measured once; ``runs`` collects the rates."""
    async with fresh_database_with(_setup) as dsn, contextlib.AsyncExitStack() as stack:
        if worker == "busy":
            busy = await stack.enter_async_context(_Child.start_module(__name__, "busy", dsn))
            await busy.message()  # ready: its runners are all held
        processes = min(PROCESSES, producers)
        shares = [producers // processes + (i < producers % processes) for i in range(processes)]
        children = [
            await stack.enter_async_context(
                _Child.start_module(__name__, "produce", dsn, str(share))
            )
            for share in shares
        ]
        for child in children:
            await child.message()
        per_connection = max(1, jobs // producers)
        said = []
        for kind in kinds:
            if kind == OURS_ALWAYS:
                await _phantom_idle_mark(dsn)
            for child in children:
                child.send(f"{kinds.index(kind)} {per_connection}")
            reports = [await child.message(timeout=300.0) for child in children]
            started = min(r["started"] for r in reports)
            finished = max(r["finished"] for r in reports)
            rate = per_connection * producers / (finished - started)
            key = (kind, producers, worker)
            runs.setdefault(key, ProducerRun(kind, producers, worker, jobs)).values.append(rate)
            said.append(f"{rate:,.0f}")
        for child in children:
            await child.close_stdin()
            await child.exit()
        inserted = sum(r["inserted"] for r in reports)
        found = await count(
            dsn,
            "SELECT (SELECT count(*) FROM bare_jobs) + (SELECT count(*) FROM pgqueue_jobs "
            "WHERE task_name IN ('noop', 'plain'))",
        )
        if found != inserted:
            raise BenchError(f"producers: {inserted} jobs deferred, {found} in the tables")
    return f"{producers} producers, worker {worker}: " + " / ".join(said) + " jobs/s"


# -- the processes --------------------------------------------------------------------


def _say(**message: Any) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def _app(dsn: str, connections: int) -> App:
    import pgqueue_ref

    connector = pgqueue_ref.AsyncpgConnector(
        dsn=dsn, min_size=connections + 2, max_size=connections + 2
    )
    return pgqueue_ref.App(connector=connector)


@contextlib.asynccontextmanager
async def _bare_connections(dsn: str, n: int) -> AsyncIterator[list[Any]]:
    import asyncpg

    conns = [await asyncpg.connect(dsn) for _ in range(n)]
    try:
        yield conns
    finally:
        for conn in conns:
            await conn.close()


async def _produce(dsn: str, connections: int) -> None:
    from ..connectors.asyncpg import AsyncpgDriver
    from ..queries import Queries

    app = _app(dsn, connections)

    @app.task(name="noop")
    async def noop(n: int) -> None: ...

    inserted = 0
    async with app.open_async(), _bare_connections(dsn, connections) as conns:
        queue_face = [Queries(AsyncpgDriver(conn)) for conn in conns]

        async def bare(conn: Any, sql: str, jobs: int) -> None:
            for n in range(jobs):
                await conn.fetch(sql, json.dumps({"n": n}))

        async def ours(jobs: int) -> None:
            for n in range(jobs):
                await noop.defer_async(n=n)

        async def enqueue(queries: Queries, jobs: int) -> None:
            for n in range(jobs):
                await queries.enqueue("noop", str(n).encode())

        def runs(kind: str, jobs: int) -> list[Any]:
            bare_sql = {BARE: BARE_INSERT, SCHEMA_INSERT: PLAIN_INSERT, BARE_NOTIFY: _INSERT_NOTIFY}
            if kind in bare_sql:
                return [bare(conn, bare_sql[kind], jobs) for conn in conns]
            if kind == QUEUE_FACE:
                return [enqueue(queries, jobs) for queries in queue_face]
            return [ours(jobs) for _ in range(connections)]

        _say(ready=True)
        for line in iter(sys.stdin.readline, ""):
            index, jobs = (int(part) for part in line.split())
            kind = KINDS[index]
            await asyncio.gather(*runs(kind, WARM_UP))  # connections, prepared statements
            started = time.monotonic()
            await asyncio.gather(*runs(kind, jobs))
            finished = time.monotonic()
            inserted += (WARM_UP + jobs) * connections
            _say(started=started, finished=finished, inserted=inserted)


async def _busy(dsn: str) -> None:
    app = _app(dsn, BUSY_CONCURRENCY)
    held = asyncio.Semaphore(0)

    @app.task(name="hold")
    async def hold() -> None:
        held.release()
        await asyncio.sleep(3600)

    @app.task(name="noop")
    async def noop(n: int) -> None: ...

    async with app.open_async():
        await hold.batch_defer_async(*({} for _ in range(BUSY_CONCURRENCY)))
        worker = asyncio.create_task(app.run_worker_async(concurrency=BUSY_CONCURRENCY))
        for _ in range(BUSY_CONCURRENCY):
            await held.acquire()
        _say(ready=True)
        await asyncio.to_thread(sys.stdin.read)  # until killed
        worker.cancel()


def main(argv: list[str]) -> None:
    mode, dsn, *rest = argv
    if mode == "produce":
        asyncio.run(_produce(dsn, int(rest[0])))
    elif mode == "busy":
        asyncio.run(_busy(dsn))
    else:
        raise SystemExit(f"unknown mode {mode!r}: expected produce or busy")


if __name__ == "__main__":
    main(sys.argv[1:])
