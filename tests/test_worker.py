"""The worker engine, on a real database: order, schedules, retries, failures,
concurrency, LISTEN wake-up, drain mode and graceful stop."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import pgqueue_ref
from pgqueue_ref.exceptions import ConfigurationError, ConnectorException
from pgqueue_ref.manager import JobManager

Db = Callable[..., list[tuple[Any, ...]]]


async def test_fetch_order_is_priority_then_id(app: pgqueue_ref.App) -> None:
    order: list[str] = []

    @app.task(name="record")
    async def record(label: str) -> None:
        order.append(label)

    await record.defer_async(label="low-1")
    await record.configure(priority=5).defer_async(label="high-1")
    await record.defer_async(label="low-2")
    await record.configure(priority=5).defer_async(label="high-2")
    await record.configure(priority=-1).defer_async(label="lowest")

    await app.run_worker_async(wait=False, concurrency=1)

    assert order == ["high-1", "high-2", "low-1", "low-2", "lowest"]


async def test_scheduled_job_waits_for_its_time(app: pgqueue_ref.App, db: Db) -> None:
    ran: list[int] = []

    @app.task(name="later")
    async def later(n: int) -> None:
        ran.append(n)

    await later.configure(schedule_in={"seconds": 60}).defer_async(n=1)
    await later.configure(schedule_in={"seconds": 0.3}).defer_async(n=2)
    await later.defer_async(n=3)

    await app.run_worker_async(wait=False)
    assert ran == [3]  # drain mode: only what is ready now

    await asyncio.sleep(0.4)
    await app.run_worker_async(wait=False)
    assert ran == [3, 2]
    assert db("SELECT status FROM pgqueue_jobs WHERE args->>'n' = '1'") == [("todo",)]


async def test_retry_then_success(app: pgqueue_ref.App, db: Db) -> None:
    calls: list[int] = []

    @app.task(name="flaky", retry=3)
    async def flaky() -> None:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError(f"attempt {len(calls)} failed")

    job_id = await flaky.defer_async()
    stats = await app.run_worker_async(wait=False)

    assert len(calls) == 3
    assert (stats.retried, stats.succeeded, stats.failed) == (2, 1, 0)
    assert db("SELECT status, attempts, error FROM pgqueue_jobs WHERE id = %s", job_id) == [
        (
            "succeeded",
            3,
            "ConnectionError: attempt 2 failed",
        )  # the last error is kept for the record
    ]


async def test_retry_gives_up_after_its_retries_and_records_the_error(
    app: pgqueue_ref.App, db: Db
) -> None:
    calls: list[int] = []

    @app.task(name="broken", retry=2)
    def broken() -> None:
        calls.append(1)
        raise ValueError("no good")

    await broken.defer_async()
    stats = await app.run_worker_async(wait=False)

    assert len(calls) == 3  # the first attempt and 2 retries
    assert (stats.retried, stats.failed) == (2, 1)
    assert db("SELECT status, attempts, error FROM pgqueue_jobs") == [
        ("failed", 3, "ValueError: no good")
    ]


async def test_retry_waits_its_backoff(app: pgqueue_ref.App, db: Db) -> None:
    @app.task(name="slow_retry", retry=pgqueue_ref.RetryStrategy(max_retries=1, wait=30))
    def slow_retry() -> None:
        raise RuntimeError("later")

    await slow_retry.defer_async()
    await app.run_worker_async(wait=False)

    ((status, delay),) = db(
        "SELECT status, extract(epoch FROM scheduled_at - now()) FROM pgqueue_jobs"
    )
    assert status == "todo"
    assert 25 < delay <= 30


async def test_failure_without_retry_is_recorded_and_the_worker_goes_on(
    app: pgqueue_ref.App, db: Db
) -> None:
    @app.task(name="boom")
    async def boom() -> None:
        raise KeyError("missing")

    @app.task(name="fine")
    async def fine() -> None: ...

    await boom.defer_async()
    await fine.defer_async()
    stats = await app.run_worker_async(wait=False)

    assert (stats.failed, stats.succeeded) == (1, 1)
    assert db("SELECT task_name, status, error FROM pgqueue_jobs ORDER BY id") == [
        ("boom", "failed", "KeyError: 'missing'"),
        ("fine", "succeeded", None),
    ]


async def test_unknown_task_fails_with_a_message_and_the_worker_goes_on(
    app: pgqueue_ref.App, db: Db
) -> None:
    @app.task(name="known")
    async def known() -> None: ...

    await app.configure_task("nowhere.to.be.found").defer_async()
    await known.defer_async()
    stats = await app.run_worker_async(wait=False)

    assert (stats.failed, stats.succeeded) == (1, 1)
    ((status, error),) = db(
        "SELECT status, error FROM pgqueue_jobs WHERE task_name = 'nowhere.to.be.found'"
    )
    assert status == "failed"
    assert (
        "asks for task 'nowhere.to.be.found', which this worker's app does not have (it has: known)"
        in error
    )


async def test_sync_tasks_run_in_threads_async_tasks_on_the_loop(app: pgqueue_ref.App) -> None:
    threads: dict[str, str] = {}

    @app.task(name="sync")
    def sync_task() -> None:
        threads["sync"] = threading.current_thread().name

    @app.task(name="async")
    async def async_task() -> None:
        threads["async"] = threading.current_thread().name

    await sync_task.defer_async()
    await async_task.defer_async()
    await app.run_worker_async(wait=False)

    assert threads["sync"].startswith("pgqueue_ref-task")
    assert threads["async"] == threading.main_thread().name


async def test_concurrency_limit(app: pgqueue_ref.App) -> None:
    running = 0
    peak = 0

    @app.task(name="sleepy")
    async def sleepy() -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.05)
        running -= 1

    await sleepy.batch_defer_async(*({} for _ in range(12)))
    stats = await app.run_worker_async(wait=False, concurrency=3)

    assert stats.succeeded == 12
    assert peak == 3


async def test_listen_wakes_an_idle_worker_at_once(app: pgqueue_ref.App) -> None:
    done = asyncio.Event()

    @app.task(name="ping")
    async def ping() -> None:
        done.set()

    # Polling every 60 s: only a NOTIFY can wake this worker within the test.
    worker = app.worker(polling_interval=60)
    running = asyncio.create_task(worker.run())
    await asyncio.wait_for(worker.listening.wait(), 5)
    await asyncio.sleep(0.1)  # the worker's first fetch found nothing; it now sleeps

    started = time.monotonic()
    await ping.defer_async()
    await asyncio.wait_for(done.wait(), 5)
    woke_after = time.monotonic() - started

    worker.stop()
    await running
    assert woke_after < 2


async def test_a_listen_check_that_could_not_be_sent_is_sent_again(
    app: pgqueue_ref.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    # After a server restart the LISTEN may be back before the pool's stale connections
    # are replaced: the first probes fail. Once failed, the check used to be given up,
    # and the worker polled for good with its LISTEN in place (seen in test_restart).
    probe, failures = JobManager.notify_probe_async, []

    async def failing_twice(self: JobManager, channel: str, payload: str) -> None:
        if len(failures) < 2:
            failures.append(payload)
            raise ConnectorException("terminating connection due to administrator command")
        await probe(self, channel, payload)

    monkeypatch.setattr(JobManager, "notify_probe_async", failing_twice)
    worker = app.worker(polling_interval=60)
    running = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(worker.listening.wait(), 10)
    finally:
        worker.stop()
        await running
    assert len(failures) == 2


async def test_without_listen_the_worker_polls(app: pgqueue_ref.App) -> None:
    done = asyncio.Event()

    @app.task(name="ping")
    async def ping() -> None:
        done.set()

    worker = app.worker(listen=False, polling_interval=0.2)
    running = asyncio.create_task(worker.run())
    await asyncio.sleep(0.1)
    await ping.defer_async()
    await asyncio.wait_for(done.wait(), 5)
    worker.stop()
    await running
    assert not worker.listening.is_set()


async def test_notification_for_another_queue_does_not_wake(app: pgqueue_ref.App) -> None:
    @app.task(name="elsewhere", queue="other")
    async def elsewhere() -> None: ...

    worker = app.worker(queues=["mine"], polling_interval=60)
    running = asyncio.create_task(worker.run())
    await asyncio.wait_for(worker.listening.wait(), 5)
    await elsewhere.defer_async()
    await asyncio.sleep(0.3)
    worker.stop()
    stats = await running
    assert stats.finished == 0


async def test_a_cancel_arriving_with_a_notification_still_stops_the_worker(
    app: pgqueue_ref.App,
) -> None:
    """Python 3.11's wait_for() swallowed a cancel that came in the same loop
    iteration as the wake-up it waited for, and the worker ran on forever."""
    worker = app.worker(polling_interval=60)
    running = asyncio.create_task(worker.run())
    await asyncio.wait_for(worker.listening.wait(), 5)
    await asyncio.sleep(0.1)  # the first fetch found nothing: it waits for a wake-up

    worker._on_notify("app:default")  # what the listener calls for a NOTIFY...
    running.cancel()  # ...and the cancel, in the same iteration of the loop
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(running, 10)


class _SwallowsCancel(pgqueue_ref.PsycopgConnector):
    """Answers a cancel that lands in a query with the query's (empty) result, as
    aiopg's wait_for does on Python 3.11 when the cancel and the result coincide."""

    async def _fetch_all(self, query: str, params: Any, connection: Any) -> list[Any]:
        try:
            return await super()._fetch_all(query, params, connection)
        except asyncio.CancelledError:
            return []


async def test_a_cancel_swallowed_by_the_driver_still_stops_the_worker(dsn: str) -> None:
    app = pgqueue_ref.App(connector=_SwallowsCancel(conninfo=dsn))
    async with app.open_async():
        worker = app.worker(polling_interval=0, listen=False)  # always in a fetch query
        running = asyncio.create_task(worker.run())
        await asyncio.sleep(0.3)
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(running, 10)


async def test_drain_mode_returns_when_nothing_is_ready(app: pgqueue_ref.App, db: Db) -> None:
    @app.task(name="noop")
    async def noop() -> None: ...

    await noop.batch_defer_async(*({} for _ in range(250)))
    stats = await asyncio.wait_for(app.run_worker_async(wait=False, concurrency=4, prefetch=50), 30)

    assert stats.succeeded == 250
    assert db("SELECT status, count(*) FROM pgqueue_jobs GROUP BY 1") == [("succeeded", 250)]
    assert db("SELECT count(*) FROM pgqueue_workers") == [(0,)]  # unregistered on the way out


async def test_graceful_stop_finishes_running_jobs_and_hands_back_the_rest(
    app: pgqueue_ref.App, db: Db
) -> None:
    started = asyncio.Event()

    @app.task(name="slow")
    async def slow(n: int) -> None:
        started.set()
        await asyncio.sleep(0.3)

    await slow.batch_defer_async(*({"n": n} for n in range(5)))
    worker = app.worker(concurrency=1, prefetch=4)
    running = asyncio.create_task(worker.run())
    await asyncio.wait_for(started.wait(), 5)

    running.cancel()  # what interrupting a notebook cell does
    with pytest.raises(asyncio.CancelledError):
        await running

    # prefetch=4 claimed 4 jobs: 1 ran to the end, 3 waited in hand; the 5th was never claimed.
    assert (worker.stats.succeeded, worker.stats.handed_back) == (1, 3)
    assert db("SELECT status, attempts, count(*) FROM pgqueue_jobs GROUP BY 1, 2 ORDER BY 1") == [
        ("succeeded", 1, 1),
        ("todo", 0, 4),  # the 3 handed back got their attempt back
    ]
    assert db("SELECT count(*) FROM pgqueue_jobs WHERE worker_id IS NOT NULL") == [(0,)]


async def test_stop_interrupts_a_job_that_outlives_shutdown_timeout(
    app: pgqueue_ref.App, db: Db
) -> None:
    started = asyncio.Event()

    @app.task(name="forever")
    async def forever() -> None:
        started.set()
        await asyncio.sleep(3600)

    await forever.defer_async()
    worker = app.worker(shutdown_timeout=0.2)
    running = asyncio.create_task(worker.run())
    await asyncio.wait_for(started.wait(), 5)
    worker.stop()
    await asyncio.wait_for(running, 5)

    # Not lost: back in the queue, its attempt counted, with the reason.
    assert db("SELECT status, attempts, error FROM pgqueue_jobs") == [
        ("todo", 1, "interrupted: the worker was shut down")
    ]


async def test_jobs_sharing_a_lock_never_overlap(app: pgqueue_ref.App) -> None:
    running: set[str] = set()
    overlaps: list[str] = []
    order: list[int] = []

    @app.task(name="locked")
    async def locked(lock: str, n: int) -> None:
        if lock in running:
            overlaps.append(lock)
        running.add(lock)
        await asyncio.sleep(0.02)
        running.discard(lock)
        order.append(n)

    for n in range(6):
        await locked.configure(lock="L").defer_async(lock="L", n=n)
    stats = await app.run_worker_async(wait=False, concurrency=4)

    assert stats.succeeded == 6
    assert overlaps == []
    assert order == list(range(6))  # in id order


async def test_a_dead_workers_jobs_are_requeued(app: pgqueue_ref.App, db: Db) -> None:
    @app.task(name="t")
    async def t() -> None: ...

    job_id = await t.defer_async()
    # A worker that claimed the job and then went silent long ago:
    db(
        "INSERT INTO pgqueue_workers (name, heartbeat_at) VALUES ('ghost', now() - interval '1 hour')"
    )
    db(
        "UPDATE pgqueue_jobs SET status = 'doing', attempts = 1, "
        "worker_id = (SELECT id FROM pgqueue_workers WHERE name = 'ghost')"
    )

    stats = await app.run_worker_async(wait=False, stalled_after=60)

    assert stats.succeeded == 1
    assert db("SELECT status, attempts FROM pgqueue_jobs WHERE id = %s", job_id) == [
        ("succeeded", 2)
    ]
    assert db("SELECT name FROM pgqueue_workers") == []


async def test_two_workers_never_run_a_job_twice(app: pgqueue_ref.App, db: Db) -> None:
    seen: list[int] = []

    @app.task(name="count")
    async def count(n: int) -> None:
        seen.append(n)
        await asyncio.sleep(0)

    await count.batch_defer_async(*({"n": n} for n in range(2000)))
    first, second = await asyncio.gather(
        app.run_worker_async(wait=False, concurrency=4, prefetch=50),
        app.run_worker_async(wait=False, concurrency=4, prefetch=50),
    )

    assert sorted(seen) == list(range(2000))
    assert first.succeeded > 0 and second.succeeded > 0
    assert first.succeeded + second.succeeded == 2000


async def test_bad_concurrency_is_refused(app: pgqueue_ref.App) -> None:
    with pytest.raises(ValueError, match="concurrency=0"):
        app.worker(concurrency=0)


async def test_a_waiting_job_can_be_cancelled(app: pgqueue_ref.App, db: Db) -> None:
    ran: list[int] = []

    @app.task(name="t")
    async def t() -> None:
        ran.append(1)

    job_id = await t.defer_async()
    assert await app.job_manager.cancel_async(job_id) is pgqueue_ref.Status.CANCELLED
    assert await app.job_manager.cancel_async(job_id) is None  # nothing left to cancel
    await app.run_worker_async(wait=False)
    assert ran == []
    assert db("SELECT status FROM pgqueue_jobs") == [("cancelled",)]


async def test_a_running_job_can_be_asked_to_abort_and_sees_it(
    app: pgqueue_ref.App, db: Db
) -> None:
    started = asyncio.Event()
    checks: list[bool] = []

    @app.task(name="long", pass_context=True)
    async def long(context: pgqueue_ref.JobContext) -> None:
        started.set()
        while not await context.should_abort_async():
            checks.append(False)
            await asyncio.sleep(0.02)
        raise pgqueue_ref.exceptions.JobAborted("stopped early, as asked")

    @app.task(name="long_sync", pass_context=True)
    def long_sync(context: pgqueue_ref.JobContext) -> None:
        while not context.should_abort():  # the blocking twin, from the worker's thread
            time.sleep(0.02)
        raise pgqueue_ref.exceptions.JobAborted()

    job_id = await long.defer_async()
    sync_id = await long_sync.defer_async()
    worker = app.worker(concurrency=2)
    running = asyncio.create_task(worker.run())
    await asyncio.wait_for(started.wait(), 5)
    await asyncio.sleep(0.1)
    assert await app.job_manager.cancel_async(job_id, abort=True) is pgqueue_ref.Status.DOING
    assert await app.job_manager.cancel_async(sync_id, abort=True) is pgqueue_ref.Status.DOING
    await _wait_for_status(db, "aborted", 2)
    worker.stop()
    stats = await running

    assert checks  # it was running, and looked before being told
    assert stats.aborted == 2
    assert db("SELECT id, status, error FROM pgqueue_jobs ORDER BY id") == [
        (job_id, "aborted", "stopped early, as asked"),
        (sync_id, "aborted", "aborted on request"),
    ]


async def _wait_for_status(db: Db, status: str, count: int) -> None:
    deadline = time.monotonic() + 10
    while db("SELECT count(*) FROM pgqueue_jobs WHERE status = %s", status) != [(count,)]:
        assert time.monotonic() < deadline, f"waited for {count} {status} jobs"
        await asyncio.sleep(0.05)


async def test_the_fence_fires_on_time_while_queries_hang(
    app: pgqueue_ref.App, db: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    alive: list[float] = []
    runs: list[int] = []

    @app.task(name="long")
    async def long() -> None:
        runs.append(1)
        if len(runs) > 1:
            return  # the rerun, once the worker claims again
        while True:
            alive.append(time.monotonic())
            await asyncio.sleep(0.05)

    job_id = await long.defer_async()
    worker = app.worker(stalled_after=4, heartbeat_interval=0.5, polling_interval=0.1)
    running = asyncio.create_task(worker.run())
    deadline = time.monotonic() + 30
    while not alive:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)

    # A partition hangs queries, it does not fail them: every heartbeat and claim from
    # now on waits until `restored` (then goes through, late).
    restored = asyncio.Event()
    manager = worker.manager

    def hanging(real: Callable[..., Any]) -> Callable[..., Any]:
        async def hang(*args: Any, **kwargs: Any) -> Any:
            await restored.wait()
            return await real(*args, **kwargs)

        return hang

    cut = time.monotonic()  # the last good heartbeat was sent before this
    monkeypatch.setattr(manager, "heartbeat_async", hanging(manager.heartbeat_async))
    monkeypatch.setattr(manager, "fetch_async", hanging(manager.fetch_async))
    while not worker.fenced:
        assert time.monotonic() < deadline + 30, "the worker never fenced itself"
        await asyncio.sleep(0.05)
    sign_of_life = alive[-1]
    await asyncio.sleep(0.3)
    # Before anyone could have requeued the job (stalled_after after that send),
    # and the job was cancelled: no sign of life since the fence.
    assert sign_of_life < cut + worker.stalled_after
    assert alive[-1] == sign_of_life
    assert worker.stats.fenced == 1
    assert db("SELECT status FROM pgqueue_jobs WHERE id = %s", job_id) == [("doing",)]

    # Not presumed dead after all (no other worker): the heartbeat gets through, the
    # worker hands back what it dropped and claims again.
    restored.set()
    monkeypatch.undo()
    while len(runs) < 2:
        assert time.monotonic() < deadline + 60, "the worker never claimed again"
        await asyncio.sleep(0.05)
    worker.stop()
    await asyncio.wait_for(running, 30)
    assert not worker.fenced
    assert db("SELECT status, attempts FROM pgqueue_jobs WHERE id = %s", job_id) == [
        ("succeeded", 1)  # the fenced run gave its attempt back
    ]


def test_heartbeat_interval_must_leave_room_before_the_fence(app: pgqueue_ref.App) -> None:
    with pytest.raises(ConfigurationError, match="at most stalled_after / 4"):
        app.worker(stalled_after=3, heartbeat_interval=1)
    app.worker(stalled_after=0, heartbeat_interval=0)  # a one-off drain: no heartbeat, no fence


async def test_a_fence_while_orphans_are_being_released_hands_the_dropped_job_back_later(
    app: pgqueue_ref.App, db: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by tools/chaos.py: a release of orphaned claims sent before an outage
    went through after it, with the jobs it held then, and cleared the flag the
    fence had set meanwhile: the job the fence dropped stayed 'doing' for good."""
    runs: list[int] = []

    @app.task(name="long")
    async def long() -> None:
        runs.append(1)
        if len(runs) == 1:
            await asyncio.sleep(3600)  # until the fence cancels it

    job_id = await long.defer_async()
    worker = app.worker(stalled_after=4, heartbeat_interval=0.5, polling_interval=0.1)
    running = asyncio.create_task(worker.run())
    deadline = time.monotonic() + 30
    while not runs:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)

    restored, releasing = asyncio.Event(), asyncio.Event()
    manager = worker.manager

    def hanging(real: Callable[..., Any]) -> Callable[..., Any]:
        async def hang(*args: Any, **kwargs: Any) -> Any:
            await restored.wait()
            return await real(*args, **kwargs)

        return hang

    for name in ("heartbeat_async", "fetch_async"):
        monkeypatch.setattr(manager, name, hanging(getattr(manager, name)))
    real_release = manager.release_orphaned_claims_async

    async def release(*args: Any) -> Any:
        # Waits for a connection through the outage, as a pool's getconn does while
        # the server is down, and is sent once the pool has a good one again.
        releasing.set()
        await restored.wait()
        while True:
            with contextlib.suppress(ConnectorException):
                return await real_release(*args)
            await asyncio.sleep(0.05)

    monkeypatch.setattr(manager, "release_orphaned_claims_async", release)
    worker._orphans_possible = True  # as after a database error while claiming
    worker._room.set()  # the fetcher's next turn sends the release, which hangs
    worker._wake.set()
    await asyncio.wait_for(releasing.wait(), 30)
    while not worker.fenced:
        assert time.monotonic() < deadline + 30, "the worker never fenced itself"
        await asyncio.sleep(0.05)
    restored.set()  # the release goes through now, with what it held before the fence
    monkeypatch.undo()
    while len(runs) < 2:
        assert time.monotonic() < deadline + 60, "the dropped job was never handed back"
        await asyncio.sleep(0.05)
    worker.stop()
    await asyncio.wait_for(running, 30)
    assert db("SELECT status FROM pgqueue_jobs WHERE id = %s", job_id) == [("succeeded",)]
