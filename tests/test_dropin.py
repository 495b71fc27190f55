"""Names that procrastinate 3.10 and PgQueuer 1.6 code uses, beside ours (issue 21).

Each test is code written against the anchor's public API, with only the import
changed, run against the real database.
"""

from __future__ import annotations

import asyncio
import decimal
import importlib
import json
import typing
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

import pgqueue_ref
from pgqueue_ref import App, BaseConnector, exceptions
from pgqueue_ref.contrib.sqlalchemy import SQLAlchemyPsycopg2Connector
from pgqueue_ref.db import PsycopgDriver
from pgqueue_ref.jobs import Job
from pgqueue_ref.manager import JobManager
from pgqueue_ref.queries import Queries

Db = Callable[..., list[tuple[Any, ...]]]

# -- errors -------------------------------------------------------------------


async def test_autocommit_required_is_the_runtime_error_pgqueuer_raises(dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        with pytest.raises(RuntimeError) as caught:  # how PgQueuer code catches it
            PsycopgDriver(conn)
    assert type(caught.value) is exceptions.AutocommitRequired


async def test_pgqueuer_error_names_catch_ours(dsn: str) -> None:
    from pgqueue_ref.errors import DuplicateJobError, PgqException

    assert DuplicateJobError is exceptions.DuplicateJobError
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        queries = Queries(PsycopgDriver(conn))
        await queries.enqueue("sync", b"", dedupe_key="user-1")
        with pytest.raises(PgqException) as caught:  # PgQueuer's base class, so ours
            await queries.enqueue("sync", b"", dedupe_key="user-1")
    assert isinstance(caught.value, DuplicateJobError)
    assert caught.value.dedupe_key == ["user-1"]


# -- import paths ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("pgqueue_ref.contrib.aiopg", "AiopgConnector"),
        ("pgqueue_ref.contrib.psycopg2", "Psycopg2Connector"),
    ],
)
def test_procrastinate_3_10_contrib_paths_are_the_top_level_classes(module: str, name: str) -> None:
    assert getattr(importlib.import_module(module), name) is getattr(pgqueue_ref, name)


def test_pgqueuer_models_and_types_modules() -> None:
    from pgqueue_ref import jobs, queries, queuer, settings
    from pgqueue_ref.models import Channel, Context, Job, JobId, QueueEntrypoint, QueueStatistics
    from pgqueue_ref.types import OnConflict, QueueExecutionMode

    assert (Job, Context, QueueStatistics) == (jobs.Job, queuer.Context, queries.QueueStatistics)
    assert (Channel, QueueExecutionMode) == (settings.Channel, settings.QueueExecutionMode)
    assert JobId(3) == 3 and QueueEntrypoint("fetch") == "fetch"
    assert typing.get_args(OnConflict) == ("raise", "skip")


# -- json_dumps= and json_loads= on every App-face connector --------------------

# name -> factory(dsn, **json options), as procrastinate's connectors take them.
APP_CONNECTORS: dict[str, Callable[..., BaseConnector]] = {
    "PsycopgConnector": lambda dsn, **j: pgqueue_ref.PsycopgConnector(conninfo=dsn, **j),
    "AsyncpgConnector": lambda dsn, **j: pgqueue_ref.AsyncpgConnector(dsn=dsn, **j),
    "AiopgConnector": lambda dsn, **j: pgqueue_ref.AiopgConnector(dsn=dsn, **j),
    "SyncPsycopgConnector": lambda dsn, **j: pgqueue_ref.SyncPsycopgConnector(conninfo=dsn, **j),
    "Psycopg2Connector": lambda dsn, **j: pgqueue_ref.Psycopg2Connector(dsn=dsn, **j),
    "SQLAlchemyPsycopg2Connector": lambda dsn, **j: SQLAlchemyPsycopg2Connector(dsn=dsn, **j),
}


def _dumps(value: Any) -> str:
    """Decimals as {"decimal": "1.10"}: json.dumps alone refuses them."""
    return json.dumps(value, default=lambda o: {"decimal": str(o)})


def _loads(text: str) -> Any:
    def hook(obj: dict[str, Any]) -> Any:
        return decimal.Decimal(obj["decimal"]) if obj.keys() == {"decimal"} else obj

    return json.loads(text, object_hook=hook)


@pytest.mark.parametrize("name", sorted(APP_CONNECTORS))
async def test_json_dumps_and_json_loads_are_used(name: str, dsn: str, db: Db) -> None:
    connector = APP_CONNECTORS[name](dsn, json_dumps=_dumps, json_loads=_loads)
    app = App(connector=connector)
    seen: list[Any] = []

    @app.task(name="price")
    def price(amount: decimal.Decimal) -> None:
        seen.append(amount)

    if isinstance(connector, pgqueue_ref.AsyncConnector):
        async with app.open_async():
            await price.defer_async(amount=decimal.Decimal("1.10"))
            await app.run_worker_async(wait=False)
        assert seen == [decimal.Decimal("1.10")]  # json_loads made it a Decimal again
    else:  # a blocking connector only defers

        def defer() -> None:
            with app.open():
                price.defer(amount=decimal.Decimal("1.10"))

        await asyncio.to_thread(defer)
    assert db("SELECT args FROM pgqueue_jobs") == [({"amount": {"decimal": "1.10"}},)]


async def test_without_json_dumps_a_decimal_is_refused(app: App) -> None:
    @app.task(name="price")
    def price(amount: decimal.Decimal) -> None: ...

    with pytest.raises(exceptions.UnserializableArguments, match="argument 'amount'"):
        await price.defer_async(amount=decimal.Decimal("1.10"))


async def test_json_dumps_that_fails_names_the_argument(dsn: str) -> None:
    app = App(connector=pgqueue_ref.PsycopgConnector(conninfo=dsn, json_dumps=json.dumps))

    @app.task(name="price")
    def price(amount: object) -> None: ...

    async with app.open_async():
        with pytest.raises(exceptions.UnserializableArguments, match="argument 'amount'"):
            await price.defer_async(amount=object())
        with pytest.raises(exceptions.UnserializableArguments, match="NUL character"):
            await price.defer_async(amount="a\x00b")


# -- procrastinate's worker options -----------------------------------------------


async def test_procrastinate_worker_options_are_ours(app: App) -> None:
    worker = app.worker(
        listen_notify=False,
        fetch_job_polling_interval=0.2,
        shutdown_graceful_timeout=None,
        update_heartbeat_interval=1.0,
        stalled_worker_timeout=8.0,
        abort_job_polling_interval=3.0,  # accepted: should_abort() asks the database each time
        name="w1",
        delete_jobs="successful",
    )
    assert (worker.listen, worker.polling_interval, worker.shutdown_timeout) == (False, 0.2, None)
    assert (worker.heartbeat_interval, worker.stalled_after, worker.name) == (1.0, 8.0, "w1")
    assert worker.delete_jobs == "successful"


async def test_worker_defaults_take_procrastinate_names_too(dsn: str) -> None:
    app = App(
        connector=pgqueue_ref.PsycopgConnector(conninfo=dsn),
        worker_defaults={"listen_notify": False, "fetch_job_polling_interval": 0.5},
    )
    worker = app.worker(polling_interval=0.1)  # ours, given at the call, wins
    assert (worker.listen, worker.polling_interval) == (False, 0.1)


@pytest.mark.parametrize(
    ("theirs", "ours"),
    [
        ("listen_notify", "listen"),
        ("fetch_job_polling_interval", "polling_interval"),
        ("shutdown_graceful_timeout", "shutdown_timeout"),
    ],
)
async def test_both_names_of_one_option_is_a_type_error(app: App, theirs: str, ours: str) -> None:
    with pytest.raises(TypeError) as caught:
        await app.run_worker_async(wait=False, **{theirs: 1, ours: 1})
    assert str(caught.value) == (
        f"worker options {theirs}= and {ours}= are one option under two names "
        "(procrastinate's and ours): give one of them"
    )


async def test_additional_context_reaches_the_task(app: App, db: Db) -> None:
    seen: list[Any] = []

    @app.task(name="report", pass_context=True)
    def report(context: Any) -> None:
        seen.append(context.additional_context)

    await report.defer_async()
    stats = await app.run_worker_async(
        wait=False, listen_notify=False, additional_context={"region": "eu"}
    )
    assert (stats.succeeded, seen) == (1, [{"region": "eu"}])
    assert db("SELECT status FROM pgqueue_jobs") == [("succeeded",)]


# -- procrastinate's job manager names ---------------------------------------------


async def test_cancel_job_by_id(app: App, db: Db) -> None:
    @app.task(name="slow")
    def slow() -> None: ...

    manager = app.job_manager
    kept_id, deleted_id, running_id = await slow.batch_defer_async({}, {}, {})
    db("UPDATE pgqueue_jobs SET status = 'doing' WHERE id = %s", running_id)

    assert await manager.cancel_job_by_id_async(kept_id) is True
    assert await manager.cancel_job_by_id_async(kept_id) is False  # nothing left to do
    assert await manager.cancel_job_by_id_async(deleted_id, delete_job=True) is True
    assert await manager.cancel_job_by_id_async(running_id) is False  # running: abort=True only
    assert await manager.cancel_job_by_id_async(running_id, abort=True, delete_job=True) is True
    assert await manager.cancel_job_by_id_async(10_000) is False
    assert db("SELECT id, status, abort_requested FROM pgqueue_jobs ORDER BY id") == [
        (kept_id, "cancelled", False),
        (running_id, "doing", True),  # never deleted: asked to abort
    ]
    assert await manager.get_job_status_async(kept_id) == "cancelled"
    assert await manager.get_job_status_async(deleted_id) is None


def test_blocking_twins(dsn: str, db: Db) -> None:
    app = App(connector=pgqueue_ref.SyncPsycopgConnector(conninfo=dsn))

    @app.task(name="t", queue="q1")
    def t() -> None: ...

    with app.open():
        job_id = t.defer()
        manager = app.job_manager
        assert manager.get_job_status(job_id) == "todo"
        assert manager.cancel_job_by_id(job_id, delete_job=True) is True
        assert manager.list_jobs(id=job_id) == []
        assert manager.list_queues() == manager.list_tasks() == []


async def test_list_jobs_with_procrastinate_filters(app: App, db: Db) -> None:
    @app.task(name="a", queue="q1", lock="L")
    def a(n: int) -> None: ...

    @app.task(name="b", queue="q2")
    def b() -> None: ...

    a_id, b_id = await a.defer_async(n=1), await b.defer_async()
    db("UPDATE pgqueue_jobs SET status = 'failed' WHERE id = %s", b_id)
    manager = app.job_manager

    def ids(jobs: list[Job]) -> list[int]:
        return [job.id for job in jobs]

    # procrastinate's: Job objects, every match, oldest first.
    first, second = await manager.list_jobs_async()
    assert isinstance(first, Job) and (first.id, second.id) == (a_id, b_id)
    assert (first.task_name, first.queue, first.lock, first.task_kwargs) == (
        "a",
        "q1",
        "L",
        {"n": 1},
    )
    assert (first.status, second.status) == ("todo", "failed")
    assert (first.abort_requested, first.worker_id, first.attempts) == (False, None, 0)
    assert ids(await asyncio.to_thread(manager.list_jobs)) == [a_id, b_id]  # the blocking twin
    assert ids(await manager.list_jobs_async(a_id)) == [a_id]  # id comes first, as theirs
    assert ids(await manager.list_jobs_async(task="b")) == [b_id]
    assert ids(await manager.list_jobs_async(status="failed")) == [b_id]
    assert ids(await manager.list_jobs_async(lock="L", queue="q1")) == [a_id]
    assert ids(await manager.list_jobs_async(queueing_lock="none")) == []
    assert ids(await manager.list_jobs_async(worker_id=1)) == []
    with pytest.raises(TypeError, match="unexpected keyword argument 'queue_name'"):
        await manager.list_jobs_async(queue_name="q1")  # type: ignore[call-arg]
    # Ours, beside it: rows (dicts), the newest first, at most `limit`.
    rows = await manager.list_job_rows_async()
    assert [row["id"] for row in rows] == [b_id, a_id]
    assert [row["id"] for row in await manager.list_job_rows_async(limit=1)] == [b_id]
    with pytest.raises(TypeError, match="unknown filter"):
        await manager.list_job_rows_async(queue_name="q1")


async def test_list_queues_and_tasks(app: App, db: Db) -> None:
    @app.task(name="a", queue="q1")
    def a() -> None: ...

    @app.task(name="b", queue="q1")
    def b() -> None: ...

    await a.defer_async()
    await a.configure(queue="q2").defer_async()
    b_id = await b.defer_async()
    db("UPDATE pgqueue_jobs SET status = 'succeeded' WHERE id = %s", b_id)
    counts = {"doing": 0, "failed": 0, "cancelled": 0, "aborted": 0}
    manager = app.job_manager
    assert await manager.list_queues_async() == [
        {"name": "q1", "jobs_count": 2, "todo": 1, "succeeded": 1, **counts},
        {"name": "q2", "jobs_count": 1, "todo": 1, "succeeded": 0, **counts},
    ]
    assert await manager.list_tasks_async(queue="q1") == [
        {"name": "a", "jobs_count": 1, "todo": 1, "succeeded": 0, **counts},
        {"name": "b", "jobs_count": 1, "todo": 0, "succeeded": 1, **counts},
    ]
    assert await manager.list_queues_async(status="succeeded", task="b") == [
        {"name": "q1", "jobs_count": 1, "todo": 0, "succeeded": 1, **counts},
    ]


async def test_retry_job_puts_a_failed_job_back(app: App, db: Db) -> None:
    runs: list[int] = []

    @app.task(name="flaky")
    def flaky() -> None:
        runs.append(1)
        if len(runs) == 1:
            raise RuntimeError("first time")

    job_id = await flaky.defer_async()
    await app.run_worker_async(wait=False, listen_notify=False)
    assert await app.job_manager.get_job_status_async(job_id) == "failed"
    job = pgqueue_ref.Job(job_id, "flaky")  # procrastinate's retry_job takes a job
    await app.job_manager.retry_job(job, priority=5, queue="again")
    assert db("SELECT status, priority, queue, error IS NOT NULL FROM pgqueue_jobs") == [
        ("todo", 5, "again", True)  # the last error is kept
    ]
    stats = await app.run_worker_async(wait=False, listen_notify=False)
    assert (stats.succeeded, len(runs)) == (1, 2)
    assert db("SELECT status, attempts FROM pgqueue_jobs") == [("succeeded", 2)]

    with pytest.raises(exceptions.JobNotRetryable) as caught:
        await app.job_manager.retry_job_by_id_async(job_id)  # succeeded: not 'failed'
    assert str(caught.value) == (
        f"job {job_id} cannot be retried: there is no such job, or it is not 'failed' "
        "(a waiting or running job will run anyway; look with get_job_status)"
    )
    assert JobManager.retry_job_async is JobManager.retry_job


# -- no connector changes psycopg2's process-wide adapters ---------------------------


def _adapt_a_dict() -> str:
    """What psycopg2 makes of a dict: by default nothing ("can't adapt")."""
    import psycopg2.extensions

    try:
        return type(psycopg2.extensions.adapt({})).__name__
    except psycopg2.ProgrammingError as error:
        return str(error)


@pytest.fixture
def psycopg2_globals() -> Iterator[Callable[[], tuple[dict[Any, Any], dict[Any, Any]]]]:
    """psycopg2's process-wide adapters and typecasters, reset to a clean slate for
    the test (whatever ran before it) and put back as they were afterwards."""
    import psycopg2.extensions

    extensions: Any = psycopg2.extensions
    saved = dict(extensions.adapters), dict(extensions.string_types)
    # The two that aiopg and SQLAlchemy add (hstore, UUID): psycopg2 has neither by default.
    for cls in (dict, uuid.UUID):
        extensions.adapters.pop((cls, extensions.ISQLQuote), None)

    def snapshot() -> tuple[dict[Any, Any], dict[Any, Any]]:
        return dict(extensions.adapters), dict(extensions.string_types)

    yield snapshot
    for live, kept in zip((extensions.adapters, extensions.string_types), saved, strict=True):
        live.clear()
        live.update(kept)


@pytest.mark.parametrize("name", sorted(APP_CONNECTORS))
async def test_opening_a_connector_leaves_psycopg2_adapters_alone(
    name: str, dsn: str, psycopg2_globals: Callable[[], Any]
) -> None:
    before = psycopg2_globals()
    assert _adapt_a_dict() == "can't adapt type 'dict'"
    connector = APP_CONNECTORS[name](dsn)
    app = App(connector=connector)

    @app.task(name="t")
    def t() -> None: ...

    if isinstance(connector, pgqueue_ref.AsyncConnector):
        async with app.open_async():
            await t.defer_async()
            await app.run_worker_async(wait=False)  # the LISTEN connection too
    else:

        def defer() -> None:
            with app.open():
                t.defer()

        await asyncio.to_thread(defer)
    assert _adapt_a_dict() == "can't adapt type 'dict'"  # not an HstoreAdapter
    adapters, typecasters = psycopg2_globals()
    if name == "SQLAlchemyPsycopg2Connector":
        # Not ours to change: SQLAlchemy's psycopg2 dialect registers psycopg2's UUID
        # adapter, process-wide, on every connect (extras.register_uuid, unconditional
        # in SQLAlchemy 2.1), so a program that uses SQLAlchemy has it already.
        import psycopg2.extensions
        import psycopg2.extras

        added = {key for key in adapters if before[0].get(key) is not adapters[key]}
        assert added == {(uuid.UUID, psycopg2.extensions.ISQLQuote)}
        assert adapters.pop((uuid.UUID, psycopg2.extensions.ISQLQuote)) is (
            psycopg2.extras.UUID_adapter
        )
    assert (adapters, typecasters) == before  # nor any other adapter or typecaster


async def test_the_check_catches_aiopg_defaults(dsn: str, psycopg2_globals: Any) -> None:
    """The test above fails on aiopg's own defaults: they are what it guards against."""
    app = App(connector=pgqueue_ref.AiopgConnector(dsn=dsn, enable_hstore=True))
    async with app.open_async():
        await app.job_manager.list_job_rows_async()
    assert _adapt_a_dict() == "HstoreAdapter"


# -- App.tasks, Task and JobContext attributes, Queries.from_* (the rest of #21) ---------


async def test_app_tasks_is_a_plain_dict(app: App, db: Db) -> None:
    @app.task(name="a", queue="q", lock="L", queueing_lock="Q", pass_context=True, retry=2)
    def a(context: Any) -> None: ...

    assert type(app.tasks) is dict and app.tasks["a"] is a  # procrastinate's: a plain dict
    assert (a.queue, a.lock, a.queueing_lock, a.pass_context) == ("q", "L", "Q", True)
    assert a.retry_strategy is not None and a.retry_strategy.max_retries == 2
    other = app.with_connector(app.connector)

    @other.task(name="b")
    def b() -> None: ...

    assert set(app.tasks) == set(other.tasks) == {"a", "b"}  # registered on either: in both
    assert app.tasks["b"].app is app and other.tasks["a"].app is other  # each bound to its app
    del app.tasks["a"]  # a dict of this app's: the other keeps its own
    assert "a" not in app.tasks and "a" in other.tasks


async def test_job_context_task_is_the_jobs_task(app: App) -> None:
    seen: list[Any] = []

    @app.task(name="ctx", pass_context=True)
    def ctx(context: pgqueue_ref.JobContext) -> None:
        seen.append(context.task)

    await ctx.defer_async()
    await app.run_worker_async(wait=False)
    assert seen == [app.tasks["ctx"]]


@pytest.mark.parametrize("kind", ["asyncpg connection", "asyncpg pool", "psycopg connection"])
async def test_queries_from_classmethods(dsn: str, db: Db, kind: str) -> None:
    import asyncpg

    from pgqueue_ref import Queries as TopLevelQueries  # `from pgqueuer import Queries`

    assert TopLevelQueries is Queries
    if kind == "asyncpg connection":
        resource: Any = await asyncpg.connect(dsn)
        queries = Queries.from_asyncpg_connection(resource)
    elif kind == "asyncpg pool":
        resource = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
        queries = Queries.from_asyncpg_pool(resource)
    else:
        resource = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
        queries = Queries.from_psycopg_connection(resource)
    try:
        (job_id,) = await queries.enqueue("fetch", b"x")
        assert db("SELECT id, face, payload FROM pgqueue_jobs") == [(job_id, "queue", b"x")]
    finally:
        await resource.close()


def test_pgqueuer_log_models_are_importable() -> None:
    from pgqueue_ref.models import Log, LogStatistics
    from pgqueue_ref.queue_log import Log as OurLog

    assert Log is OurLog and LogStatistics.__dataclass_fields__.keys() == {
        "count",
        "created",
        "entrypoint",
        "priority",
        "status",
    }
