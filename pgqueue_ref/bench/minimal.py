"""The reference: the least SQL a PostgreSQL queue can send, on asyncpg.

No library, no retries, no locks, no heartbeat: a table, a statement-level
NOTIFY trigger to wake the worker, and a worker of ``CONNECTIONS`` loops, each
claiming ``BATCH`` jobs per transaction with ``FOR UPDATE SKIP LOCKED``,
running them, and deleting them in one statement. Whatever a real queue does
on top of this costs something; this subject shows how close to the limit the
others come.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

from .subject import AsyncClient, BenchWorker, JobHook, Subject, count, execute

__all__ = ["BATCH", "CONNECTIONS", "SCHEMA", "minimal_loop"]

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

INSERT_ONE = "INSERT INTO minimal_jobs (args) VALUES ($1::jsonb)"
INSERT_MANY = "INSERT INTO minimal_jobs (args) SELECT * FROM unnest($1::jsonb[])"
CLAIM = f"SELECT id, args FROM minimal_jobs ORDER BY id LIMIT {BATCH} FOR UPDATE SKIP LOCKED"
DELETE = "DELETE FROM minimal_jobs WHERE id = ANY($1::bigint[])"


def minimal_loop() -> Subject:
    async def setup(dsn: str) -> None:
        await execute(dsn, SCHEMA)

    async def unfinished(dsn: str) -> int:
        return await count(dsn, "SELECT count(*) FROM minimal_jobs")

    @contextlib.asynccontextmanager
    async def async_client(dsn: str) -> AsyncIterator[AsyncClient]:
        import asyncpg

        conn = await asyncpg.connect(dsn)
        try:
            yield _MinimalClient(conn)
        finally:
            await conn.close()

    @contextlib.asynccontextmanager
    async def worker(dsn: str, hook: JobHook) -> AsyncIterator[BenchWorker]:
        import asyncpg

        async with asyncpg.create_pool(
            dsn, min_size=CONNECTIONS + 1, max_size=CONNECTIONS + 1
        ) as pool:
            yield _MinimalWorker(pool, hook)

    return Subject(
        name="minimal SQL loop (asyncpg)",
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
    def __init__(self, conn: Any) -> None:
        self.conn = conn

    async def defer_one(self, n: int) -> None:
        await self.conn.execute(INSERT_ONE, _args(n))

    async def defer_batch(self, numbers: Sequence[int]) -> None:
        await self.conn.execute(INSERT_MANY, [_args(n) for n in numbers])


class _MinimalWorker:
    def __init__(self, pool: Any, hook: JobHook) -> None:
        self.pool = pool
        self.hook = hook
        self.wake = asyncio.Event()
        self.stopping = False

    async def _loop(self, *, wait: bool) -> None:
        async with self.pool.acquire() as conn:
            while not self.stopping:
                self.wake.clear()
                async with conn.transaction():
                    rows = await conn.fetch(CLAIM)
                    for row in rows:
                        self.hook(json.loads(row["args"])["n"])  # run the no-op job
                    if rows:
                        await conn.execute(DELETE, [row["id"] for row in rows])
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
