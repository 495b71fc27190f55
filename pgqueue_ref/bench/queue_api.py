"""PgQueuer's API, measured with one piece of code for PgQueuer and for our Queue face.

pgqueue_ref's Queue face reproduces PgQueuer's API (``<module>.db`` drivers,
``<module>.queries.Queries``, ``<module>.PgQueuer.from_*``), so the same calls
measure both: ``Queries(driver).enqueue(...)``, ``@pgq.entrypoint(...)``,
``pgq.run(mode=QueueExecutionMode.drain)``. PgQueuer runs with its documented
defaults (``batch_size=10``; no cap on concurrent jobs).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from ..sql import SCHEMA
from .subject import AsyncClient, BenchWorker, JobHook, Subject, SyncClient, count, execute

__all__ = ["queue_api"]

#: The database library under each driver, and the classmethod that builds a PgQueuer on it.
_DRIVERS = {
    "AsyncpgDriver": ("asyncpg", "from_asyncpg_connection"),
    "AsyncpgPoolDriver": ("asyncpg", "from_asyncpg_pool"),
    "PsycopgDriver": ("psycopg", "from_psycopg_connection"),
    "SyncPsycopgDriver": ("psycopg", None),
}


def queue_api(module: str, driver: str) -> Subject | None:
    """A subject for ``module.db.<driver>``, or None if it is not installed."""
    if importlib.util.find_spec(module) is None or importlib.util.find_spec(f"{module}.db") is None:
        return None
    library, classmethod_name = _DRIVERS[driver]

    async def setup(dsn: str) -> None:
        if module == "pgqueuer":
            async with _connection(library, dsn) as conn:
                await _queries(module, driver, conn).install()
        else:
            await execute(dsn, SCHEMA)

    async def unfinished(dsn: str) -> int:
        if module == "pgqueuer":  # PgQueuer deletes a job once it is done
            return await count(dsn, "SELECT count(*) FROM pgqueuer")
        return await count(dsn, "SELECT count(*) FROM pgqueue_jobs WHERE status <> 'succeeded'")

    @contextlib.asynccontextmanager
    async def async_client(dsn: str) -> AsyncIterator[AsyncClient]:
        async with _connection(library, dsn, pool=driver.endswith("PoolDriver")) as conn:
            yield _QueueClient(_queries(module, driver, conn))

    @contextlib.contextmanager
    def sync_client(dsn: str) -> Iterator[SyncClient]:
        import psycopg

        with psycopg.connect(dsn, autocommit=True) as conn:
            yield _SyncQueueClient(_queries(module, driver, conn))

    @contextlib.asynccontextmanager
    async def worker(dsn: str, hook: JobHook) -> AsyncIterator[BenchWorker]:
        lib = importlib.import_module(module)
        async with _connection(library, dsn, pool=driver.endswith("PoolDriver")) as conn:
            pgq = getattr(lib.PgQueuer, str(classmethod_name))(conn)

            async def noop(job: Any) -> None:
                hook(int(job.payload))

            pgq.entrypoint("noop")(noop)
            yield _QueueWorker(module, pgq)

    sync = classmethod_name is None
    return Subject(
        name=f"{module} {driver}",
        driver=library,
        family=module,
        settings="" if sync else "batch_size 10 (default)",
        setup=setup,
        unfinished=unfinished,
        async_client=None if sync else async_client,
        sync_client=sync_client if sync else None,
        worker=None if sync else worker,
    )


@contextlib.asynccontextmanager
async def _connection(library: str, dsn: str, *, pool: bool = False) -> AsyncIterator[Any]:
    if library == "asyncpg":
        import asyncpg

        if pool:
            async with asyncpg.create_pool(dsn, min_size=2, max_size=4) as connection_pool:
                yield connection_pool
            return
        conn = await asyncpg.connect(dsn)
        try:
            yield conn
        finally:
            await conn.close()
    else:
        import psycopg

        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as aconn:
            yield aconn


def _queries(module: str, driver: str, conn: Any) -> Any:
    db = importlib.import_module(f"{module}.db")
    return importlib.import_module(f"{module}.queries").Queries(getattr(db, driver)(conn))


def _payload(n: int) -> bytes:
    return str(n).encode()


class _QueueClient:
    def __init__(self, queries: Any) -> None:
        self.queries = queries

    async def defer_one(self, n: int) -> None:
        await self.queries.enqueue("noop", _payload(n))

    async def defer_batch(self, numbers: Sequence[int]) -> None:
        await self.queries.enqueue(
            ["noop"] * len(numbers), [_payload(n) for n in numbers], [0] * len(numbers)
        )


class _SyncQueueClient:
    def __init__(self, queries: Any) -> None:
        self.queries = queries

    def defer_one(self, n: int) -> None:
        self.queries.enqueue("noop", _payload(n))

    def defer_batch(self, numbers: Sequence[int]) -> None:
        self.queries.enqueue(
            ["noop"] * len(numbers), [_payload(n) for n in numbers], [0] * len(numbers)
        )


class _QueueWorker:
    def __init__(self, module: str, pgq: Any) -> None:
        self.pgq = pgq
        # PgQueuer keeps it in pgqueuer.types; pgqueue_ref at its top level.
        where = "pgqueuer.types" if module == "pgqueuer" else module
        self.modes = importlib.import_module(where).QueueExecutionMode

    async def drain(self) -> None:
        await self.pgq.run(mode=self.modes.drain)

    async def serve(self) -> None:
        await self.pgq.run()
