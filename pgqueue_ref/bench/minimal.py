"""The references: the least SQL a PostgreSQL queue can send, on asyncpg.

No library, no retries, no locks, no heartbeat: a table, a statement-level
NOTIFY trigger to wake the worker, and a worker of ``CONNECTIONS`` loops, each
claiming ``BATCH`` jobs per transaction with ``FOR UPDATE SKIP LOCKED``,
running them, and deleting them in one statement. Whatever a real queue does
on top of this costs something; this subject shows how close to the limit the
others come.

Two limits, the same loop on two tables: :func:`minimal_loop` on a two-column
table (the least a queue can write), and :func:`schema_loop` on pgqueue_ref's
own ``pgqueue_jobs``, with every column and index of our schema (the least
*our table* lets a queue write). The gap between them is the schema's cost;
the gap between the second and pgqueue_ref's subjects is our code's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from .subject import AsyncClient, BenchWorker, JobHook, Subject, count, execute

__all__ = [
    "BATCH",
    "CONNECTIONS",
    "MINIMAL",
    "SCHEMA",
    "SCHEMA_LIMIT",
    "minimal_loop",
    "schema_loop",
]

BATCH = 100
CONNECTIONS = 4
CHANNEL = "minimal_jobs"

SCHEMA = """
CREATE TABLE minimal_jobs (
    id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    args jsonb NOT NULL
);
CREATE FUNCTION minimal_jobs_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('minimal_jobs', '');
    RETURN NULL;
END;
$$;
CREATE TRIGGER minimal_jobs_notify AFTER INSERT ON minimal_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION minimal_jobs_notify();
"""

#: The names of the two limits, as the tables and the ratios find them.
MINIMAL = "minimal SQL loop (asyncpg)"
SCHEMA_LIMIT = "minimal SQL loop on pgqueue_ref's table (asyncpg)"


@dataclass(frozen=True)
class _Statements:
    insert_one: str
    insert_many: str
    claim: str
    delete: str
    table: str


_MINIMAL = _Statements(
    insert_one="INSERT INTO minimal_jobs (args) VALUES ($1::jsonb)",
    insert_many="INSERT INTO minimal_jobs (args) SELECT * FROM unnest($1::jsonb[])",
    claim=f"SELECT id, args FROM minimal_jobs ORDER BY id LIMIT {BATCH} FOR UPDATE SKIP LOCKED",
    delete="DELETE FROM minimal_jobs WHERE id = ANY($1::bigint[])",
    table="minimal_jobs",
)

#: The same loop on our table: every column (their defaults), every index, our fetch
#: index's order; the same NOTIFY trigger (our schema has none: our statements notify).
_ON_OUR_TABLE = _Statements(
    insert_one="INSERT INTO pgqueue_jobs (task_name, args) VALUES ('noop', $1::jsonb)",
    insert_many="INSERT INTO pgqueue_jobs (task_name, args) "
    "SELECT 'noop', a FROM unnest($1::jsonb[]) AS a",
    claim="SELECT id, args FROM pgqueue_jobs WHERE status = 'todo' AND face = 'app' "
    f"ORDER BY priority DESC, id LIMIT {BATCH} FOR UPDATE SKIP LOCKED",
    delete="DELETE FROM pgqueue_jobs WHERE id = ANY($1::bigint[])",
    table="pgqueue_jobs",
)

#: The minimal loop's one-job insert (tools/defer_costs.py times it), and its claim and
#: delete on our table (tools/drain_ceiling.py times them).
INSERT_ONE = _MINIMAL.insert_one
CLAIM_ON_OUR_TABLE = _ON_OUR_TABLE.claim
DELETE_ON_OUR_TABLE = _ON_OUR_TABLE.delete

_TRIGGER_ON_OUR_TABLE = """
CREATE FUNCTION minimal_jobs_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('minimal_jobs', '');
    RETURN NULL;
END;
$$;
CREATE TRIGGER minimal_jobs_notify AFTER INSERT ON pgqueue_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION minimal_jobs_notify();
"""


def minimal_loop() -> Subject:
    """The limit of a queue: a two-column table."""
    return _loop(MINIMAL, _MINIMAL, SCHEMA)


def schema_loop() -> Subject:
    """The limit of our table: the minimal loop on ``pgqueue_jobs``."""
    from ..sql import SCHEMA as OURS

    return _loop(SCHEMA_LIMIT, _ON_OUR_TABLE, OURS + _TRIGGER_ON_OUR_TABLE)


def _loop(name: str, statements: _Statements, schema: str) -> Subject:
    async def setup(dsn: str) -> None:
        await execute(dsn, schema)

    async def unfinished(dsn: str) -> int:
        return await count(dsn, f"SELECT count(*) FROM {statements.table}")

    @contextlib.asynccontextmanager
    async def async_client(dsn: str) -> AsyncIterator[AsyncClient]:
        import asyncpg

        conn = await asyncpg.connect(dsn)
        try:
            yield _MinimalClient(conn, statements)
        finally:
            await conn.close()

    @contextlib.asynccontextmanager
    async def worker(dsn: str, hook: JobHook) -> AsyncIterator[BenchWorker]:
        import asyncpg

        async with asyncpg.create_pool(
            dsn, min_size=CONNECTIONS + 1, max_size=CONNECTIONS + 1
        ) as pool:
            yield _MinimalWorker(pool, hook, statements)

    return Subject(
        name=name,
        driver="asyncpg",
        family="reference",
        settings=f"batch {BATCH}, {CONNECTIONS} connections",
        setup=setup,
        unfinished=unfinished,
        async_client=async_client,
        worker=worker,
    )


def _args(n: int) -> str:
    return json.dumps({"n": n})


class _MinimalClient:
    def __init__(self, conn: Any, statements: _Statements) -> None:
        self.conn = conn
        self.sql = statements

    async def defer_one(self, n: int) -> None:
        await self.conn.execute(self.sql.insert_one, _args(n))

    async def defer_batch(self, numbers: Sequence[int]) -> None:
        await self.conn.execute(self.sql.insert_many, [_args(n) for n in numbers])


class _MinimalWorker:
    def __init__(self, pool: Any, hook: JobHook, statements: _Statements) -> None:
        self.pool = pool
        self.hook = hook
        self.sql = statements
        self.wake = asyncio.Event()
        self.stopping = False

    async def _loop(self, *, wait: bool) -> None:
        async with self.pool.acquire() as conn:
            while not self.stopping:
                self.wake.clear()
                async with conn.transaction():
                    rows = await conn.fetch(self.sql.claim)
                    for row in rows:
                        self.hook(json.loads(row["args"])["n"])  # run the no-op job
                    if rows:
                        await conn.execute(self.sql.delete, [row["id"] for row in rows])
                if rows:
                    continue
                if not wait:
                    return
                await self.wake.wait()

    async def drain(self) -> None:
        await asyncio.gather(*(self._loop(wait=False) for _ in range(CONNECTIONS)))

    async def serve(self) -> None:
        async with self.pool.acquire() as listener:
            await listener.add_listener(CHANNEL, lambda *_: self.wake.set())
            loops = [asyncio.create_task(self._loop(wait=True)) for _ in range(CONNECTIONS)]
            try:
                await asyncio.wait(loops)  # until cancelled (wait() leaves the loops running)
            finally:
                # Stop gracefully: each loop commits the batch it is running, then returns.
                self.stopping = True
                self.wake.set()
                await asyncio.wait(loops)
