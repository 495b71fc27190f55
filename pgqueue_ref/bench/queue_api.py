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
from .pooled import SUFFIX, pooled_dsn
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
    """A subject for ``module.db.<driver>``, or None if it is not installed. pgqueue_ref's
    drivers have a pooled twin (:mod:`.pooled`)."""
    if importlib.util.find_spec(module) is None or importlib.util.find_spec(f"{module}.db") is None:
        return None
    return _queue_subject(module, driver, pooled=False)


def _queue_subject(module: str, driver: str, *, pooled: bool) -> Subject:
    library, classmethod_name = _DRIVERS[driver]
    pool = driver.endswith("PoolDriver")

    def statements(dsn: str) -> str:
        return pooled_dsn(dsn) if pooled else dsn

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
        async with _connection(library, statements(dsn), pool=pool, pooled=pooled) as conn:
            yield _QueueClient(_queries(module, driver, conn))

    @contextlib.contextmanager
    def sync_client(dsn: str) -> Iterator[SyncClient]:
        import psycopg

        settings: dict[str, Any] = {"prepare_threshold": None} if pooled else {}
        with psycopg.connect(statements(dsn), autocommit=True, **settings) as conn:
            yield _SyncQueueClient(_queries(module, driver, conn))

    @contextlib.asynccontextmanager
    async def worker(dsn: str, hook: JobHook) -> AsyncIterator[BenchWorker]:
        lib = importlib.import_module(module)
        async with _connection(library, statements(dsn), pool=pool, pooled=pooled) as conn:
            build = getattr(lib.PgQueuer, str(classmethod_name))
            # Behind the pooler the LISTEN goes to the server itself.
            pgq = build(conn, listen_dsn=dsn) if pooled else build(conn)

            async def noop(job: Any) -> None:
                hook(int(job.payload))

            pgq.entrypoint("noop")(noop)
            yield _QueueWorker(module, pgq)

    def twin() -> Subject:
        return _queue_subject(module, driver, pooled=True)

    sync = classmethod_name is None
    name = f"{module} {driver}"
    settings = "" if sync else "batch_size 10 (default)"
    if pooled:
        setting = _POOLER_SETTING[library]
        settings = "; ".join(
            p for p in (settings, setting, "" if sync else "listen_dsn direct") if p
        )
    return Subject(
        name=name + SUFFIX if pooled else name,
        driver=library,
        family=module,
        settings=settings,
        setup=setup,
        unfinished=unfinished,
        async_client=None if sync else async_client,
        sync_client=sync_client if sync else None,
        worker=None if sync else worker,
        pooled=twin if module == "pgqueue_ref" and not pooled else None,
        direct=name if pooled else None,
    )


#: What each driver needs behind a transaction pooler (docs/connectors-howto.md).
_POOLER_SETTING = {"asyncpg": "statement_cache_size=0", "psycopg": "prepare_threshold=None"}


@contextlib.asynccontextmanager
async def _connection(
    library: str, dsn: str, *, pool: bool = False, pooled: bool = False
) -> AsyncIterator[Any]:
    """A connection (or pool) of ``library``; ``pooled``: with the setting a transaction
    pooler needs (no prepared statements)."""
    if library == "asyncpg":
        import asyncpg

        settings: dict[str, Any] = {"statement_cache_size": 0} if pooled else {}
        if pool:
            async with asyncpg.create_pool(
                dsn, min_size=2, max_size=4, **settings
            ) as connection_pool:
                yield connection_pool
            return
        conn = await asyncpg.connect(dsn, **settings)
        try:
            yield conn
        finally:
            await conn.close()
    else:
        import psycopg

        settings = {"prepare_threshold": None} if pooled else {}
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True, **settings) as aconn:
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
