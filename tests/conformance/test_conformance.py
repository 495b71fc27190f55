"""What every connector and driver does the same way, tested once for all."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest

from pgqueue_ref.exceptions import (
    AlreadyEnqueued,
    ConnectorException,
    SyncConnectorConfigurationError,
)
from pgqueue_ref.jobs import Face, JobSpec

from .conftest import Subject

Db = Callable[..., list[tuple[Any, ...]]]

ARGUMENTS = {
    "unicode": "h\u00e9llo \u2603 \U0001f600 \u4e2d\u6587",
    "nested": {"list": [1, 2.5, None, True, {"deep": ["x"]}], "empty": {}},
    "large": "x" * 200_000,
    "sql": "'; DROP TABLE pgqueue_jobs; -- %(name)s $1 %s",
    "numbers": [0, -1, 2**53, 1e-300],
}


async def test_defer_writes_a_job(subject: Subject, db: Db) -> None:
    job_id = await subject.defer_job("t", {"queue": "q", "priority": 3}, a=1)
    assert db("SELECT id, face, queue, task_name, args, priority, status FROM pgqueue_jobs") == [
        (job_id, "app", "q", "t", {"a": 1}, 3, "todo")
    ]


async def test_batch_defer_is_one_transaction_with_ids_in_order(subject: Subject, db: Db) -> None:
    ids = await subject.batch_defer("t", {"n": 1}, {"n": 2}, {"n": 3})
    assert db("SELECT id, args->>'n' FROM pgqueue_jobs ORDER BY id") == list(
        zip(ids, ["1", "2", "3"])
    )
    assert db("SELECT count(DISTINCT xmin::text) FROM pgqueue_jobs") == [(1,)]


async def test_arguments_round_trip(subject: Subject) -> None:
    await subject.defer_job("t", **ARGUMENTS)
    (job,) = await subject.list_jobs()
    assert json.loads(job["args"]) == ARGUMENTS


async def test_payload_bytes_round_trip(subject: Subject) -> None:
    payload = bytes(range(256)) * 100
    manager = subject.app.job_manager
    specs = [JobSpec(task_name="fetch", payload=payload), JobSpec(task_name="fetch", payload=None)]
    await subject.call(manager.defer, manager.defer_async, Face.QUEUE, specs)
    jobs = await subject.list_jobs()
    assert sorted(
        (bytes(j["payload"]) if j["payload"] is not None else None) is None for j in jobs
    ) == [False, True]
    assert any(j["payload"] is not None and bytes(j["payload"]) == payload for j in jobs)


async def test_queueing_lock_conflict_is_already_enqueued(subject: Subject, db: Db) -> None:
    await subject.defer_job("t", {"queueing_lock": "one"})
    with pytest.raises(AlreadyEnqueued):
        await subject.defer_job("t", {"queueing_lock": "one"})
    with pytest.raises(AlreadyEnqueued):  # a batch colliding with itself: no partial write
        await subject.batch_defer("t", {"n": 1}, {"n": 2}, options={"queueing_lock": "two"})
    assert db("SELECT queueing_lock FROM pgqueue_jobs") == [("one",)]


async def test_database_errors_become_connector_exceptions_with_sqlstate(subject: Subject) -> None:
    connector: Any = subject.connector
    with pytest.raises(ConnectorException) as caught:
        await subject.call(
            connector.fetch_all,
            getattr(connector, "fetch_all_async", None),  # blocking connectors have none
            "SELECT 1 / %(zero)s::int",
            {"zero": 0},
        )
    assert caught.value.sqlstate == "22012"
    assert isinstance(caught.value.__cause__, Exception)


async def test_worker_round_trip_or_a_clear_refusal(subject: Subject, db: Db) -> None:
    ran: list[int] = []

    @subject.app.task(name="work")
    async def work(n: int) -> None:
        ran.append(n)

    await subject.batch_defer("work", {"n": 1}, {"n": 2})
    if not subject.is_async:
        with pytest.raises(
            SyncConnectorConfigurationError, match="can only defer jobs: a worker needs an async"
        ):
            subject.app.worker()
        return
    stats = await subject.app.run_worker_async(wait=False)
    assert (stats.succeeded, sorted(ran)) == (2, [1, 2])
    assert db("SELECT status, count(*) FROM pgqueue_jobs GROUP BY 1") == [("succeeded", 2)]


async def test_listen_wakes_the_worker(subject: Subject) -> None:
    if not subject.is_async:
        pytest.skip("blocking connectors cannot run a worker (tested above)")
    done = asyncio.Event()

    @subject.app.task(name="ping")
    async def ping() -> None:
        done.set()

    worker = subject.app.worker(polling_interval=60)
    running = asyncio.create_task(worker.run())
    await asyncio.wait_for(worker.listening.wait(), 5)
    await subject.defer_job("ping")
    await asyncio.wait_for(done.wait(), 5)  # polling is 60 s: only NOTIFY makes it in time
    worker.stop()
    await running
