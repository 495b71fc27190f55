"""``PgQueuer``: classmethods, entrypoints, resources, run modes, channels, and both faces
side by side on one table.

Draining on every async driver and connector (async and sync entrypoints, the
Context and its resources), and the refusal of the blocking ones, are tested
once for all in tests/conformance/test_queue_face.py.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import psycopg
import psycopg_pool
import pytest

import pgqueue_ref
from pgqueue_ref import Channel, DBSettings, PgQueuer, QueueExecutionMode
from pgqueue_ref.db import AsyncpgDriver, AsyncpgPoolDriver, PsycopgDriver, PsycopgPoolDriver
from pgqueue_ref.exceptions import InvalidChannel
from pgqueue_ref.jobs import Job

Db = Callable[..., list[tuple[Any, ...]]]


@pytest.fixture
async def apg(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(dsn)
    yield connection
    await connection.close()


async def test_classmethods_wrap_the_right_driver(dsn: str, apg: asyncpg.Connection) -> None:
    resources: dict[str, Any] = {"cache": {}}
    pgq = PgQueuer.from_asyncpg_connection(apg, resources=resources)
    assert type(pgq.connection) is AsyncpgDriver
    assert pgq.resources is resources  # the very object, never a copy
    assert pgq.channel == Channel(DBSettings().channel) == "pgqueue_ref"
    async with asyncpg.create_pool(dsn, min_size=1, max_size=2) as pool:
        pgq = PgQueuer.from_asyncpg_pool(pool, channel=Channel("orders"))
        assert (type(pgq.connection), pgq.channel, pgq.resources) == (
            AsyncpgPoolDriver,
            "orders",
            {},
        )
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        assert type(PgQueuer.from_psycopg_connection(conn).connection) is PsycopgDriver
    async with psycopg_pool.AsyncConnectionPool(dsn, min_size=1, max_size=2) as ppool:
        assert type(PgQueuer.from_psycopg_pool(ppool).connection) is PsycopgPoolDriver


async def test_a_failing_entrypoint_fails_its_job_only(apg: asyncpg.Connection, db: Db) -> None:
    pgq = PgQueuer.from_asyncpg_connection(apg)

    @pgq.entrypoint("boom")
    async def boom(job: Job) -> None:
        if job.payload == b"bad":
            raise ValueError("bad payload")

    await pgq.queries.enqueue(["boom", "boom"], [b"bad", b"good"], [0, 0])
    stats = await pgq.run(mode=QueueExecutionMode.drain)
    assert (stats.succeeded, stats.failed) == (1, 1)
    assert db("SELECT payload, status, error FROM pgqueue_jobs ORDER BY id") == [
        (b"bad", "failed", "ValueError: bad payload"),
        (b"good", "succeeded", None),
    ]


async def test_a_sync_entrypoint_can_use_the_driver_blocking(dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        pgq = PgQueuer.from_psycopg_connection(conn)
        answers: list[Any] = []

        @pgq.entrypoint("ask")
        def ask(job: Job) -> None:  # in a worker thread: the blocking twin goes to the loop
            answers.append(pgq.connection.fetch_all("SELECT %(n)s::int AS n", {"n": job.id}))

        (job_id,) = await pgq.queries.enqueue("ask", b"")
        await pgq.run(mode=QueueExecutionMode.drain)
        assert answers == [[{"n": job_id}]]


def test_an_entrypoint_must_take_the_job(apg: asyncpg.Connection) -> None:
    pgq = PgQueuer.from_asyncpg_connection(apg)
    with pytest.raises(TypeError, match=r"entrypoint 'x' takes no argument, but it is called"):
        pgq.entrypoint("x")(lambda: None)


async def listening_channels(pgq: PgQueuer) -> list[str] | None:
    """Once the consumer LISTENs: its channels, asked on its own (single) connection."""
    for _ in range(50):
        rows = await pgq.connection.fetch_all_async(
            "SELECT array_agg(c) AS channels FROM pg_listening_channels() AS c"
        )
        if rows[0]["channels"]:
            break
        await asyncio.sleep(0.1)
    channels: list[str] | None = rows[0]["channels"]
    return channels


async def test_continuous_run_until_stopped_wakes_on_notify(apg: asyncpg.Connection) -> None:
    pgq = PgQueuer.from_asyncpg_connection(apg)

    @pgq.entrypoint("ping")
    async def ping(job: Job) -> None:
        pgq.stop()  # from inside an entrypoint: a graceful stop

    running = asyncio.create_task(pgq.run(dequeue_timeout=datetime.timedelta(seconds=60)))
    assert await listening_channels(pgq) == ["pgqueue_ref"]
    await pgq.queries.enqueue("ping", b"")
    stats = await asyncio.wait_for(running, 5)  # polling is 60 s: only NOTIFY makes it in time
    assert stats.succeeded == 1


async def test_stop_before_run_is_not_lost(apg: asyncpg.Connection) -> None:
    pgq = PgQueuer.from_asyncpg_connection(apg)
    pgq.stop()
    stats = await asyncio.wait_for(pgq.run(), 5)
    assert stats.finished == 0


# -- channels ----------------------------------------------------------------------------


async def test_a_custom_channel_is_listened_on_and_woken_by_its_queries(
    apg: asyncpg.Connection,
) -> None:
    pgq = PgQueuer.from_asyncpg_connection(apg, channel="orders")
    done = asyncio.Event()

    @pgq.entrypoint("ship")
    async def ship(job: Job) -> None:
        done.set()

    running = asyncio.create_task(pgq.run(dequeue_timeout=datetime.timedelta(seconds=60)))
    assert await listening_channels(pgq) == ["orders"]  # its own only, not the trigger's
    await pgq.queries.enqueue("ship", b"")  # Queries on 'orders': notifies 'orders'
    await asyncio.wait_for(done.wait(), 5)  # polling is 60 s: only NOTIFY makes it in time
    pgq.stop()
    await running


def test_channel_names_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    for bad in ["", "orders; DROP TABLE x", "1abc", "a-b", "é" * 32, "x" * 64]:
        with pytest.raises(InvalidChannel):
            Channel(bad)
    assert Channel("x" * 63) == "x" * 63
    with pytest.raises(InvalidChannel, match=r"channel 'a b' is not a valid channel name: use"):
        DBSettings(channel="a b")
    monkeypatch.setenv("PGQUEUE_REF_CHANNEL", "from_env")
    assert DBSettings().channel == "from_env"
    monkeypatch.setenv("PGQUEUE_REF_CHANNEL", "from env")
    with pytest.raises(InvalidChannel, match=r"^PGQUEUE_REF_CHANNEL='from env': channel"):
        DBSettings()


# -- both faces, one table, one engine -----------------------------------------------------


async def test_app_and_queue_jobs_side_by_side(
    app: pgqueue_ref.App, apg: asyncpg.Connection, db: Db
) -> None:
    app_ran: list[int] = []
    queue_ran: list[bytes | None] = []

    @app.task(name="work")
    async def work_app(n: int) -> None:
        app_ran.append(n)

    pgq = PgQueuer.from_asyncpg_connection(apg)

    @pgq.entrypoint("work")
    async def work_queue(job: Job) -> None:
        queue_ran.append(job.payload)

    await work_app.batch_defer_async({"n": 1}, {"n": 2})
    await pgq.queries.enqueue(["work"] * 3, [b"x", b"y", b"z"], [0, 0, 0])

    app_stats = await app.run_worker_async(wait=False)
    assert (app_stats.succeeded, sorted(app_ran), queue_ran) == (2, [1, 2], [])
    assert db("SELECT face, status, count(*) FROM pgqueue_jobs GROUP BY 1, 2 ORDER BY 1") == [
        ("app", "succeeded", 2),
        ("queue", "todo", 3),
    ]

    queue_stats = await pgq.run(mode=QueueExecutionMode.drain)
    assert (queue_stats.succeeded, sorted(queue_ran), len(app_ran)) == (3, [b"x", b"y", b"z"], 2)
    assert db("SELECT face, status, count(*) FROM pgqueue_jobs GROUP BY 1, 2 ORDER BY 1") == [
        ("app", "succeeded", 2),
        ("queue", "succeeded", 3),
    ]


# -- entrypoint() and run(): PgQueuer 1.6's parameters and its errors ---------------


async def test_entrypoint_options_are_validated_as_pgqueuer_does(apg: asyncpg.Connection) -> None:
    pgq = PgQueuer.from_asyncpg_connection(apg)
    with pytest.raises(ValueError, match=r"^Concurrency limit must be int\.$"):
        pgq.entrypoint("a", concurrency_limit=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^Concurrency limit must be greater or eq\. to zero\.$"):
        pgq.entrypoint("a", concurrency_limit=-1)
    with pytest.raises(ValueError, match=r"^accepts_context must be boolean or None$"):
        pgq.entrypoint("a", accepts_context="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^on_failure must be one of \('delete', 'hold'\)\.$"):
        pgq.entrypoint("a", on_failure="keep")  # type: ignore[arg-type]
    with pytest.raises(NotImplementedError, match="executor_factory is not supported here"):
        pgq.entrypoint("a", executor_factory=lambda parameters: None)

    @pgq.entrypoint("a", concurrency_limit=3, on_failure="hold")
    async def a(job: Job) -> None: ...

    spec = pgq.entrypoint_spec("a")
    assert (spec.concurrency_limit, spec.on_failure, spec.accepts_context) == (3, "hold", False)
    with pytest.raises(RuntimeError, match=r"^a already in registry, name must be unique\.$"):
        pgq.entrypoint("a")


async def test_accepts_context_overrides_the_signature(apg: asyncpg.Connection, db: Db) -> None:
    pgq = PgQueuer.from_asyncpg_connection(apg, resources={"seen": []})
    got: list[tuple[Any, ...]] = []

    @pgq.entrypoint("with", accepts_context=True)
    async def with_context(*args: Any) -> None:  # *args alone: the signature cannot tell
        got.append(args)

    @pgq.entrypoint("without", accepts_context=False)
    async def without(job: Job, context: Any = None) -> None:
        got.append((job, context))

    await pgq.queries.enqueue(["with", "without"], [b"", b""], [1, 0])
    await pgq.run(mode=QueueExecutionMode.drain)
    assert [len(args) for args in got] == [2, 2]
    assert got[0][1].resources is pgq.resources and got[1][1] is None


async def test_run_refuses_bad_parameters_with_pgqueuers_errors(apg: asyncpg.Connection) -> None:
    pgq = PgQueuer.from_asyncpg_connection(apg)
    drain = QueueExecutionMode.drain
    with pytest.raises(RuntimeError, match=r"^max_concurrent_tasks must be at least twice the batch size\.$"):  # fmt: skip
        await pgq.run(mode=drain, batch_size=10, max_concurrent_tasks=19)
    with pytest.raises(ValueError, match=r"^batch_size=0: expected at least 1$"):
        await pgq.run(mode=drain, batch_size=0)
    with pytest.raises(TypeError, match=r"^dequeue_timeout=5: expected a datetime\.timedelta$"):
        await pgq.run(5, mode=drain)  # type: ignore[arg-type]
    with pytest.raises(
        ValueError, match=r"^heartbeat_timeout=datetime\.timedelta\(0\): expected more"
    ):
        await pgq.run(mode=drain, heartbeat_timeout=datetime.timedelta(0))
    with pytest.raises(ValueError, match="there is no statistics log here to aggregate"):
        await pgq.run(mode=drain, log_aggregation_interval=datetime.timedelta(seconds=30))
    # The valid forms, positional in PgQueuer's order.
    stats = await pgq.run(datetime.timedelta(seconds=2), 5, drain, 0, False,
                          datetime.timedelta(seconds=12), datetime.timedelta(0))  # fmt: skip
    assert stats.finished == 0


async def test_run_maps_pgqueuers_parameters_onto_the_worker(apg: asyncpg.Connection) -> None:
    pgq = PgQueuer.from_asyncpg_connection(apg)
    seen: dict[str, Any] = {}

    @pgq.entrypoint("look")
    async def look(job: Job) -> None:
        worker = pgq._worker
        assert worker is not None
        seen.update(concurrency=worker.concurrency, prefetch=worker.prefetch,
                    polling=worker.polling_interval, stalled=worker.stalled_after,
                    heartbeat=worker.heartbeat_interval)  # fmt: skip

    await pgq.queries.enqueue("look", b"")
    await pgq.run(datetime.timedelta(seconds=3), 4, QueueExecutionMode.drain,
                  heartbeat_timeout=datetime.timedelta(seconds=12))  # fmt: skip
    assert seen == {"concurrency": 8, "prefetch": 4, "polling": 3.0, "stalled": 12.0,
                    "heartbeat": 2.0}  # fmt: skip


async def test_shutdown_on_listener_failure_stops_a_deaf_consumer(dsn: str) -> None:
    # A LISTEN whose own test notification never comes back: here, because the
    # probe goes out on a channel nobody listens to (the consumer's is replaced).
    async with asyncpg.create_pool(dsn, min_size=1, max_size=3) as pool:
        pgq = PgQueuer.from_asyncpg_pool(pool)

        @pgq.entrypoint("x")
        async def x(job: Job) -> None: ...

        driver = pgq.connection
        real_listen = driver.listen_async

        async def listen_elsewhere(channel: str, *args: Any) -> None:
            await real_listen("somewhere_else", *args)

        driver.listen_async = listen_elsewhere  # type: ignore[method-assign]
        with pytest.raises(
            pgqueue_ref.exceptions.ConnectionFailed, match="hears nothing|did not come back"
        ):
            await asyncio.wait_for(
                pgq.run(shutdown_on_listener_failure=True, listen_check_timeout=0.3), 20
            )


async def test_batch_size_bounds_each_claim_and_max_concurrent_tasks_what_runs(
    dsn: str, db: Db
) -> None:
    # Two claims go out at once (the next batch while the current one runs); still
    # each takes at most batch_size jobs, and at most max_concurrent_tasks run at once.
    # Jobs of one claim share its started_at (the claim's now()).
    async with asyncpg.create_pool(dsn, min_size=2, max_size=4) as pool:
        pgq = PgQueuer.from_asyncpg_pool(pool)
        runs = {"now": 0, "most": 0}

        @pgq.entrypoint("slow")
        async def slow(job: Job) -> None:
            runs["now"] += 1
            runs["most"] = max(runs["most"], runs["now"])
            await asyncio.sleep(0.02)
            runs["now"] -= 1

        await pgq.queries.enqueue(["slow"] * 60, [b""] * 60, 0)
        stats = await pgq.run(batch_size=3, mode=QueueExecutionMode.drain, max_concurrent_tasks=6)
    assert stats.succeeded == 60
    assert runs["most"] == 6  # more than one batch at once, never more than the cap
    claims = db("SELECT count(*) FROM pgqueue_jobs GROUP BY started_at")
    assert max(n for (n,) in claims) == 3 and sum(n for (n,) in claims) == 60


@pytest.mark.parametrize("claims_in_flight", [3, 4])
async def test_a_drain_with_more_claims_in_flight_than_fit_ends(
    dsn: str, db: Db, claims_in_flight: int
) -> None:
    # With batch_size=10 and room for 20, a third or fourth claim waits for room. When
    # the queue is empty the claims in flight end with nothing; each must free its
    # reservation and wake the waiting ones (a drain that hung forever, before).
    async with asyncpg.create_pool(dsn, min_size=2, max_size=6) as pool:
        pgq = PgQueuer.from_asyncpg_pool(pool)

        @pgq.entrypoint("noop")
        async def noop(job: Job) -> None:
            pass

        await pgq.queries.enqueue(["noop"] * 500, [b""] * 500, 0)
        run = pgq.run(mode=QueueExecutionMode.drain, claims_in_flight=claims_in_flight)
        stats = await asyncio.wait_for(run, 30)
    assert stats.succeeded == 500
    assert db("SELECT count(*) FROM pgqueue_jobs WHERE status <> 'succeeded'") == [(0,)]
