"""Periodic tasks (App face, ``@app.periodic``) and schedules (Queue face, ``@pgq.schedule``):
each period once across several workers, the missed-period policy, bad input."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

import pgqueue_ref
from pgqueue_ref import PgQueuer
from pgqueue_ref.connectors.psycopg import PsycopgDriver
from pgqueue_ref.exceptions import InvalidCronExpression, InvalidPeriodicTask
from pgqueue_ref.manager import JobManager
from pgqueue_ref.periodic import Cron, PeriodicDeferrer, due_periods
from pgqueue_ref.schedules import Schedule, Scheduler

Db = Callable[..., list[tuple[Any, ...]]]
EVERY_SECOND = "* * * * * *"


async def _run_for(seconds: float, *runs: Any) -> None:
    tasks = [asyncio.create_task(run) for run in runs]
    await asyncio.sleep(seconds)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _covered(seen: list[int], start: float, end: float) -> None:
    """No period twice, and every second of [start, end] there."""
    assert len(seen) == len(set(seen)), f"a period ran twice: {sorted(seen)}"
    expected = set(range(int(start), int(end) + 1))
    assert expected <= set(seen), f"missing {sorted(expected - set(seen))} in {sorted(seen)}"


# -- the App face ------------------------------------------------------------------


async def test_two_workers_defer_and_run_each_second_once(
    app: pgqueue_ref.App, dsn: str, db: Db
) -> None:
    ran: list[int] = []

    @app.periodic(cron=EVERY_SECOND, periodic_id="tick")
    @app.task(name="tick")
    async def tick(timestamp: int) -> None:
        ran.append(timestamp)

    other = app.with_connector(pgqueue_ref.PsycopgConnector(conninfo=dsn))
    async with other.open_async():
        started = time.time()
        await _run_for(
            4.5,
            app.run_worker_async(heartbeat_interval=0),
            other.run_worker_async(heartbeat_interval=0),
        )
    # The last period may be deferred but not yet run when the workers stop.
    _covered(ran, started + 1, started + 3)
    deferred = [ts for (ts,) in db("SELECT defer_timestamp FROM pgqueue_periodic_defers")]
    jobs = db("SELECT args->>'timestamp' FROM pgqueue_jobs WHERE task_name = 'tick'")
    assert len(jobs) == len(deferred) == len(set(deferred))
    assert sorted(int(ts) for (ts,) in jobs) == sorted(deferred)


async def test_one_period_deferred_once_when_workers_race(app: pgqueue_ref.App, db: Db) -> None:
    @app.periodic(cron="0 0 * * *", task_kwargs={"n": 1})
    @app.task(name="nightly")
    def nightly(timestamp: int, n: int) -> None:
        pass

    deferrers = [PeriodicDeferrer(app) for _ in range(5)]
    (periodic,) = app.periodic_tasks.values()
    ids = await asyncio.gather(*(d.defer(periodic, 86_400 * 20_000) for d in deferrers))

    assert sum(job_id is not None for job_id in ids) == 1
    assert db("SELECT args FROM pgqueue_jobs") == [({"n": 1, "timestamp": 1_728_000_000},)]


async def test_a_drain_defers_nothing(app: pgqueue_ref.App, db: Db) -> None:
    @app.periodic(cron=EVERY_SECOND)
    @app.task(name="tick")
    def tick(timestamp: int) -> None:
        pass

    await app.run_worker_async(wait=False)
    assert db("SELECT count(*) FROM pgqueue_periodic_defers") == [(0,)]


# -- the missed-period policy --------------------------------------------------------


def test_a_starting_deferrer_takes_only_the_latest_recent_period() -> None:
    every_second, hourly = Cron(EVERY_SECOND), Cron("0 * * * *")
    now = 1_000_000.5
    # Back after a 10-minute outage: one job, not 600.
    assert due_periods(every_second, None, now, max_delay=600) == [1_000_000]
    # The latest hourly period began 2800 s ago, more than max_delay: none.
    assert due_periods(hourly, None, now, max_delay=600) == []
    assert due_periods(hourly, None, now, max_delay=3600) == [997_200]


def test_a_running_deferrer_catches_up_within_max_delay() -> None:
    every_second = Cron(EVERY_SECOND)
    # Woke 3 s late: the periods it slept through, oldest first.
    assert due_periods(every_second, 100, 103.2, max_delay=600) == [101, 102, 103]
    # Stalled for longer than max_delay: only the last max_delay seconds.
    assert due_periods(every_second, 100, 1_000.0, max_delay=5) == [995, 996, 997, 998, 999, 1000]
    assert due_periods(every_second, 103, 103.9, max_delay=600) == []


async def test_worker_starting_after_an_outage_defers_one_job(app: pgqueue_ref.App, db: Db) -> None:
    @app.periodic(cron=EVERY_SECOND)
    @app.task(name="tick")
    def tick(timestamp: int) -> None:
        pass

    deferrer = PeriodicDeferrer(app, max_delay=600)
    now = time.time()
    await deferrer.tick(now)  # its first pass: the outage is before it
    assert db("SELECT defer_timestamp FROM pgqueue_periodic_defers") == [(int(now),)]


# -- the Queue face ------------------------------------------------------------------


async def test_two_consumers_fire_each_second_once(dsn: str, db: Db) -> None:
    fired: list[int] = []
    schedules: list[Schedule] = []
    consumers = []
    for _ in range(2):
        pgq = PgQueuer(PsycopgDriver(await _autocommit(dsn)))

        @pgq.schedule("heartbeat", EVERY_SECOND)
        async def heartbeat(schedule: Schedule) -> None:
            assert schedule.last_run is not None
            fired.append(int(schedule.last_run.timestamp()))
            schedules.append(schedule)

        consumers.append(pgq)

    started = time.time()
    await _run_for(4.5, *(pgq.run(heartbeat_interval=0) for pgq in consumers))

    _covered(fired, started + 1, started + 3)
    last = schedules[-1]
    assert (last.entrypoint, last.expression, last.status) == ("heartbeat", "* * * * * *", "picked")
    assert last.next_run.timestamp() == fired[-1] + 1
    ((status, last_run),) = db("SELECT status, last_run FROM pgqueue_schedules")
    assert status == "queued" and int(last_run.timestamp()) == max(fired)


async def _autocommit(dsn: str) -> Any:
    import psycopg

    return await psycopg.AsyncConnection.connect(dsn, autocommit=True)


# -- bad input -------------------------------------------------------------------------


def test_invalid_cron_is_named_when_the_decorator_runs(app: pgqueue_ref.App) -> None:
    with pytest.raises(InvalidCronExpression) as error:
        app.periodic(cron="61 * * * *")
    assert str(error.value) == (
        "cron expression '61 * * * *' is not valid: expected 5 fields (minute hour "
        "day-of-month month day-of-week, e.g. '*/5 * * * *') or 6 with seconds last "
        "(e.g. '* * * * * */10' for every 10 seconds)"
    )
    assert isinstance(error.value, ValueError)


async def test_invalid_cron_on_the_queue_face(dsn: str) -> None:
    pgq = PgQueuer(PsycopgDriver(await _autocommit(dsn)))
    with pytest.raises(InvalidCronExpression, match=r"^cron expression 'every minute' is not"):
        pgq.schedule("cleanup", "every minute")


def test_periodic_task_without_timestamp_is_refused(app: pgqueue_ref.App) -> None:
    with pytest.raises(InvalidPeriodicTask) as error:

        @app.periodic(cron="* * * * *")
        @app.task(name="report")
        def report() -> None:
            pass

    assert str(error.value) == (
        "periodic task 'report' takes no 'timestamp' parameter, but each of its jobs is "
        "called with timestamp=<the period's start, epoch seconds>: add it, e.g. "
        "'async def tick(timestamp: int): ...'"
    )
    assert not app.periodic_tasks


def test_periodic_goes_above_task(app: pgqueue_ref.App) -> None:
    with pytest.raises(InvalidPeriodicTask, match="@app.periodic goes above @app.task"):

        @app.task(name="report")
        @app.periodic(cron="* * * * *")  # type: ignore[arg-type]
        def report(timestamp: int) -> None:
            pass


async def test_a_consumer_whose_schedules_cannot_be_registered_at_start_retries(
    dsn: str, db: Db, caplog: pytest.LogCaptureFixture
) -> None:
    # The database refuses the registration (its table is missing) when the
    # consumer starts, and answers a second later: the schedule still fires.
    fired: list[int] = []
    pgq = PgQueuer(PsycopgDriver(await _autocommit(dsn)))

    @pgq.schedule("heartbeat", EVERY_SECOND)
    async def heartbeat(schedule: Schedule) -> None:
        assert schedule.last_run is not None
        fired.append(int(schedule.last_run.timestamp()))

    db("ALTER TABLE pgqueue_schedules RENAME TO pgqueue_schedules_away")
    consumer = asyncio.create_task(pgq.run(heartbeat_interval=0))
    await asyncio.sleep(1.2)
    assert fired == []
    db("ALTER TABLE pgqueue_schedules_away RENAME TO pgqueue_schedules")
    await asyncio.sleep(2.5)
    consumer.cancel()
    await asyncio.gather(consumer, return_exceptions=True)

    assert len(fired) >= 1 and len(fired) == len(set(fired))
    assert "schedules not registered, retrying" in caplog.text
    assert db("SELECT entrypoint FROM pgqueue_schedules") == [("heartbeat",)]


async def test_a_long_schedule_callback_keeps_its_heartbeat(dsn: str, db: Db) -> None:
    pgq = PgQueuer(PsycopgDriver(await _autocommit(dsn)))
    beats: list[Any] = []

    @pgq.schedule("report", EVERY_SECOND)
    async def report(schedule: Schedule) -> None:
        for _ in range(3):  # a callback that takes 1.5 s, heartbeat every 0.2 s
            await asyncio.sleep(0.5)
            beats.extend(db("SELECT status, heartbeat FROM pgqueue_schedules"))

    scheduler = Scheduler(JobManager(pgq.connection), pgq._schedules, {}, heartbeat_interval=0.2)
    await scheduler._register()
    await scheduler.fire(("report", EVERY_SECOND), int(time.time()))

    assert [status for status, _ in beats] == ["picked"] * 3
    heartbeats = [heartbeat for _, heartbeat in beats]
    assert heartbeats == sorted(set(heartbeats)), "the heartbeat did not move on"
    assert db("SELECT status FROM pgqueue_schedules") == [("queued",)]


def test_a_schedule_heartbeat_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="heartbeat_interval=0"):
        Scheduler(None, {}, {}, heartbeat_interval=0)  # type: ignore[arg-type]
