"""The Queue face's entrypoint limits, held failures and completion watching, on every
driver and connector (PgQueuer 1.6's ``entrypoint(concurrency_limit=, on_failure=)``,
``requeue_jobs``, ``CompletionWatcher``), and the App face's ``wait_for_job_async``.

A consumer or a watcher needs asyncio: on a blocking subject each test checks the
named error instead. The first line of each docstring is its row in ``docs/connectors.md``.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import Callable
from typing import Any

import pytest

from pgqueue_ref import PgQueuer, QueueExecutionMode
from pgqueue_ref.completion import CompletionWatcher
from pgqueue_ref.exceptions import JobNotFound, SyncConnectorConfigurationError
from pgqueue_ref.jobs import Status
from pgqueue_ref.queries import Queries
from pgqueue_ref.queuer import Context

from .conftest import Subject, _opened, built

Db = Callable[..., list[tuple[Any, ...]]]
FAST_POLL = datetime.timedelta(milliseconds=20)


def _async_or_refused(subject: Subject, what: str, make: Callable[[], object]) -> bool:
    """True on an async subject; on a blocking one, check that ``make()`` is refused."""
    if subject.is_async:
        return True
    with pytest.raises(SyncConnectorConfigurationError, match="can only defer jobs"):
        make()
    subject.unsupported(f"enqueue only: {what} raises SyncConnectorConfigurationError")
    return False


def most_at_once(runs: list[tuple[float, float]]) -> int:
    """The most runs in progress at one instant, from each run's (start, end)."""
    events = sorted([(end, -1) for _, end in runs] + [(start, 1) for start, _ in runs])
    running = most = 0
    for _, step in events:  # at equal times an end (-1) sorts before a start
        running += step
        most = max(most, running)
    return most


async def test_concurrency_limit_holds_across_two_consumers(subject: Subject, db: Db) -> None:
    """Queue face: `entrypoint(concurrency_limit=2)`: two consumers never run more than 2 of its jobs at once"""
    if not _async_or_refused(subject, "`PgQueuer(...)`", lambda: PgQueuer(subject.connector)):
        return
    ids = await Queries(subject.connector).enqueue(["limited"] * 8, [b""] * 8, 0)
    gate = asyncio.Event()
    started: dict[int, str] = {}  # job id -> the consumer that started it
    runs: dict[int, tuple[str, float, float]] = {}  # job id -> (consumer, start, end)

    async def limited(job: Any, context: Context) -> None:
        name, start = context.resources["name"], time.monotonic()
        started[job.id] = name
        await gate.wait()
        await asyncio.sleep(0.02)
        runs[job.id] = (name, start, time.monotonic())

    def consumer(connector: Any, name: str) -> PgQueuer:
        pgq = PgQueuer(connector, resources={"name": name})
        pgq.entrypoint("limited", concurrency_limit=2)(limited)
        return pgq

    async with built(subject.name, subject.route) as other, _opened(other):
        consumers = {
            "first": consumer(subject.connector, "first"),
            "second": consumer(other, "second"),
        }
        running = [
            asyncio.create_task(pgq.run(dequeue_timeout=FAST_POLL)) for pgq in consumers.values()
        ]
        try:
            # Both claim at once, then look again every 20 ms while the two jobs that
            # got seats wait at the gate: no third job starts, on either consumer.
            async with asyncio.timeout(10):
                while len(started) < 2:
                    await asyncio.sleep(0.01)
            await asyncio.sleep(0.3)
            assert len(started) == 2
            assert db("SELECT count(*) FROM pgqueue_jobs WHERE status = 'doing'") == [(2,)]
            holders = set(started.values())
            gate.set()
            if len(holders) == 1:  # one took both seats: stop it, so that the other runs too
                consumers[holders.pop()].stop()
            async with asyncio.timeout(20):
                while len(runs) < len(ids):
                    await asyncio.sleep(0.01)
        finally:
            for pgq in consumers.values():
                pgq.stop()
            await asyncio.gather(*running)
    assert sorted(runs) == ids
    assert {name for name, _, _ in runs.values()} == {"first", "second"}
    # Measured from the jobs' own records: two at once at most, and two reached.
    assert most_at_once([(start, end) for _, start, end in runs.values()]) == 2
    assert db("SELECT DISTINCT status FROM pgqueue_jobs") == [("succeeded",)]


async def test_held_failure_keeps_its_error_and_is_requeued(subject: Subject, db: Db) -> None:
    """Queue face: `on_failure="hold"` keeps a failed job with its error, even with delete_jobs, until `requeue_jobs`"""
    if not _async_or_refused(subject, "`PgQueuer(...)`", lambda: PgQueuer(subject.connector)):
        return
    queries = Queries(subject.connector)
    held, dropped = await queries.enqueue(["charge", "notify"], [b"42", b"42"], 0)
    pgq = PgQueuer(subject.connector, resources={"card_ok": False})

    @pgq.entrypoint("charge", on_failure="hold")
    def charge(job: Any, context: Context) -> None:
        if not context.resources["card_ok"]:
            raise ValueError(f"card declined for order {job.payload.decode()}")

    @pgq.entrypoint("notify")  # on_failure="delete", PgQueuer's default
    async def notify(job: Any) -> None:
        raise ConnectionError("mail server down")

    stats = await pgq.run(mode=QueueExecutionMode.drain, delete_jobs="always")
    assert (stats.succeeded, stats.failed) == (0, 2)
    # delete_jobs="always" deleted the failed "notify" job; the held one stays, with its error.
    assert db("SELECT id, status, error, attempts FROM pgqueue_jobs") == [
        (held, "failed", "ValueError: card declined for order 42", 1)
    ]
    [failed] = await queries.list_failed_jobs()
    assert (failed.id, failed.entrypoint, failed.payload, failed.error) == (
        held, "charge", b"42", "ValueError: card declined for order 42"
    )  # fmt: skip
    # Only failed Queue-face jobs are requeued: the deleted one and an unknown id are not.
    assert await queries.requeue_jobs([held, dropped, 10**9]) == [held]
    assert db("SELECT status, attempts FROM pgqueue_jobs") == [("todo", 0)]
    pgq.resources["card_ok"] = True
    stats = await pgq.run(mode=QueueExecutionMode.drain)
    assert (stats.succeeded, stats.failed) == (1, 0)
    assert db("SELECT id, status, attempts FROM pgqueue_jobs") == [(held, "succeeded", 1)]
    assert await queries.list_failed_jobs() == []


async def test_completion_watcher_resolves_successful_and_exception(
    subject: Subject, db: Db
) -> None:
    """Queue face: `CompletionWatcher.wait_for` resolves "successful" and "exception" from the consumer's announcement, many waiters on one LISTEN"""
    if not _async_or_refused(
        subject, "`CompletionWatcher(...)`", lambda: CompletionWatcher(subject.connector)
    ):
        return
    queries = Queries(subject.connector)
    ids = await queries.enqueue(["ok", "bad", "ok"], [b"", b"", b""], 0)
    pgq = PgQueuer(subject.connector)

    @pgq.entrypoint("ok")
    async def ok(job: Any) -> None:
        pass

    @pgq.entrypoint("bad")
    async def bad(job: Any) -> None:
        raise RuntimeError("no")

    # No safety net: only the first look and the announcements can resolve a waiter.
    async with CompletionWatcher(subject.connector, refresh_interval=None) as watcher:
        waiters = [watcher.wait_for(job_id) for job_id in ids]
        await asyncio.sleep(0.2)  # the first look has seen them all waiting
        assert not any(w.done() for w in waiters)
        await pgq.run(mode=QueueExecutionMode.drain)
        async with asyncio.timeout(10):
            assert await asyncio.gather(*waiters) == ["successful", "exception", "successful"]
        # An id that no job has: a named error, not a wait forever.
        with pytest.raises(JobNotFound, match=r"^job 1000000000 does not exist"):
            await asyncio.wait_for(watcher.wait_for(10**9), 10)
        # Already finished: the first look resolves it.
        assert await asyncio.wait_for(watcher.wait_for(ids[1]), 10) == "exception"


async def test_completion_watcher_safety_net(subject: Subject, db: Db) -> None:
    """Queue face: `CompletionWatcher` sees a job finished without an announcement at its next look, and a deleted one as "deleted\""""
    if not _async_or_refused(
        subject, "`CompletionWatcher(...)`", lambda: CompletionWatcher(subject.connector)
    ):
        return
    done, gone = await Queries(subject.connector).enqueue(["a", "b"], [b"", b""], 0)
    period = datetime.timedelta(milliseconds=100)
    async with CompletionWatcher(subject.connector, refresh_interval=period) as watcher:
        waiters = [watcher.wait_for(done), watcher.wait_for(gone)]
        await asyncio.sleep(0.3)
        assert not any(w.done() for w in waiters)
        # Plain SQL: no worker, so no announcement.
        db("UPDATE pgqueue_jobs SET status = 'succeeded' WHERE id = %s", done)
        db("DELETE FROM pgqueue_jobs WHERE id = %s", gone)
        async with asyncio.timeout(10):
            assert await asyncio.gather(*waiters) == ["successful", "deleted"]


async def test_app_wait_for_job_async(subject: Subject) -> None:
    """App face: `job_manager.wait_for_job_async(id)` returns the job's final status as its worker records it"""
    manager = subject.app.job_manager
    if not subject.is_async:
        with pytest.raises(SyncConnectorConfigurationError, match="can only defer jobs"):
            await manager.wait_for_job_async(1)
        subject.unsupported(
            "defer only: `wait_for_job_async` raises SyncConnectorConfigurationError"
        )
        return

    @subject.app.task(name="square")
    def square(n: int) -> int:
        if n < 0:
            raise ValueError("negative")
        return n * n

    good, bad = await subject.defer_job("square", n=3), await subject.defer_job("square", n=-1)
    waits = [asyncio.create_task(manager.wait_for_job_async(i, timeout=20)) for i in (good, bad)]
    await asyncio.sleep(0.2)
    assert not any(w.done() for w in waits)
    await subject.app.run_worker_async(wait=False)
    assert await asyncio.gather(*waits) == [Status.SUCCEEDED, Status.FAILED]
    with pytest.raises(JobNotFound):
        await manager.wait_for_job_async(10**9, timeout=10)
    with pytest.raises(TimeoutError):
        await manager.wait_for_job_async(await subject.defer_job("square", n=1), timeout=0.3)
