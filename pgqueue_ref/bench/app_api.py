"""procrastinate's API, measured with one piece of code for procrastinate and for our App face.

pgqueue_ref's App face reproduces procrastinate's API, so the very same calls
measure both: ``App(connector=...)``, ``@app.task(name=...)``, ``defer_async``,
``batch_defer_async``, ``run_worker_async(wait=False, concurrency=...)``. The
only difference between a pgqueue_ref row and the procrastinate row is the
module the classes come from, and the table the jobs land in.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from .pooled import SUFFIX, pooled_dsn
from .subject import AsyncClient, BenchWorker, JobHook, Subject, SyncClient, count

__all__ = ["CONCURRENCY", "app_api"]

#: Jobs a worker runs at once, for every subject that has this knob.
CONCURRENCY = 16

#: Where each library keeps its jobs.
_JOBS_TABLE = {"pgqueue_ref": "pgqueue_jobs", "procrastinate": "procrastinate_jobs"}


#: What each of pgqueue_ref's connectors needs behind a transaction pooler, beyond
#: ``listen_dsn=`` (docs/connectors-howto.md): psycopg 3 and asyncpg must not prepare.
_POOLER_SETTINGS: dict[str, dict[str, Any]] = {
    "PsycopgConnector": {"kwargs": {"prepare_threshold": None}},
    "SyncPsycopgConnector": {"kwargs": {"prepare_threshold": None}},
    "AsyncpgConnector": {"statement_cache_size": 0},
}


def app_api(
    module: str, connector: str, dsn_keyword: str, *, driver: str, sync: bool = False
) -> Subject | None:
    """A subject for ``module.<connector>(<dsn_keyword>=dsn)``, or None if it is not installed.

    ``sync=True``: a blocking connector; it defers, and has no worker. pgqueue_ref's
    connectors have a pooled twin (:mod:`.pooled`).
    """
    if not _has(module, connector):
        return None
    return _app_subject(module, connector, dsn_keyword, driver=driver, sync=sync, pooled=False)


def _app_subject(
    module: str, connector: str, dsn_keyword: str, *, driver: str, sync: bool, pooled: bool
) -> Subject:
    short = connector.rpartition(".")[2]
    settings = "" if sync else f"concurrency {CONCURRENCY}"

    def make_app(dsn: str) -> Any:
        lib = importlib.import_module(module)
        if not pooled:
            return lib.App(connector=_find(module, connector)(**{dsn_keyword: dsn}))
        # Statements through PgBouncer, with the driver's setting; LISTEN direct.
        extra = dict(_POOLER_SETTINGS.get(short, {}))
        if not sync:
            extra["listen_dsn"] = dsn
        made = _find(module, connector)(**{dsn_keyword: pooled_dsn(dsn)}, **extra)
        return lib.App(connector=made)

    async def setup(dsn: str) -> None:
        # Through the library's own async connector, the way its users apply it.
        lib = importlib.import_module(module)
        app = lib.App(connector=lib.PsycopgConnector(conninfo=dsn))
        async with app.open_async():
            await app.schema_manager.apply_schema_async()

    async def unfinished(dsn: str) -> int:
        return await count(
            dsn, f"SELECT count(*) FROM {_JOBS_TABLE[module]} WHERE status <> 'succeeded'"
        )

    @contextlib.asynccontextmanager
    async def async_client(dsn: str) -> AsyncIterator[AsyncClient]:
        app = make_app(dsn)
        async with app.open_async():
            yield _AsyncAppClient(_noop_task(app, _ignore))

    @contextlib.contextmanager
    def sync_client(dsn: str) -> Iterator[SyncClient]:
        app = make_app(dsn)
        with app.open():
            yield _SyncAppClient(_noop_task(app, _ignore))

    @contextlib.asynccontextmanager
    async def worker(dsn: str, hook: JobHook) -> AsyncIterator[BenchWorker]:
        app = make_app(dsn)
        _noop_task(app, hook)
        async with app.open_async():
            yield _AppWorker(app)

    def twin() -> Subject:
        return _app_subject(module, connector, dsn_keyword, driver=driver, sync=sync, pooled=True)

    name = f"{module} {short}"
    if pooled:
        setting = ", ".join(_describe(k, v) for k, v in _POOLER_SETTINGS.get(short, {}).items())
        settings = "; ".join(
            part for part in (settings, setting, "" if sync else "listen_dsn direct") if part
        )
    return Subject(
        name=name + SUFFIX if pooled else name,
        driver=driver,
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


def _describe(keyword: str, value: Any) -> str:
    """``kwargs={"prepare_threshold": None}`` as ``prepare_threshold=None``."""
    if isinstance(value, dict):
        return ", ".join(f"{k}={v!r}" for k, v in value.items())
    return f"{keyword}={value!r}"


def _find(module: str, name: str) -> Any:
    """``module.name``, where ``name`` may be dotted: ``contrib.sqlalchemy.X``."""
    package, _, attribute = f"{module}.{name}".rpartition(".")
    return getattr(importlib.import_module(package), attribute)


def _has(module: str, name: str) -> bool:
    if importlib.util.find_spec(module) is None:
        return False
    if module != "pgqueue_ref":
        return True
    try:
        _find(module, name)
    except (ImportError, AttributeError):  # e.g. the sqlalchemy extra is not installed
        return False
    return True


def _ignore(n: int) -> None:
    pass


def _noop_task(app: Any, hook: JobHook) -> Any:
    async def noop(n: int) -> None:
        hook(n)

    return app.task(name="noop")(noop)


class _AsyncAppClient:
    def __init__(self, task: Any) -> None:
        self.task = task

    async def defer_one(self, n: int) -> None:
        await self.task.defer_async(n=n)

    async def defer_batch(self, numbers: Sequence[int]) -> None:
        await self.task.batch_defer_async(*({"n": n} for n in numbers))


class _SyncAppClient:
    def __init__(self, task: Any) -> None:
        self.task = task

    def defer_one(self, n: int) -> None:
        self.task.defer(n=n)

    def defer_batch(self, numbers: Sequence[int]) -> None:
        self.task.batch_defer(*({"n": n} for n in numbers))


class _AppWorker:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def drain(self) -> None:
        await self.app.run_worker_async(wait=False, concurrency=CONCURRENCY)

    async def serve(self) -> None:
        # Both libraries stop gracefully when the task running the worker is cancelled.
        await self.app.run_worker_async(wait=True, concurrency=CONCURRENCY)
