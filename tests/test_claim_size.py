"""The adaptive claim size: grows while jobs are fast, shrinks while they are slow."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

import pgqueue_ref
from pgqueue_ref.claim_size import MOST, ClaimSize
from pgqueue_ref.jobs import Face, Job
from pgqueue_ref.manager import JobManager


def test_grows_while_jobs_start_quickly_up_to_most() -> None:
    size = ClaimSize(start=16, most=100)
    targets = []
    for _ in range(5):
        size.started(0.001)
        targets.append(size.before_claim())
    assert targets == [32, 64, 100, 100, 100]


def test_shrinks_while_jobs_wait_long_down_to_one() -> None:
    size = ClaimSize(start=8)
    targets = []
    for _ in range(5):
        size.started(0.01)
        size.started(2.0)  # the longest wait decides
        targets.append(size.before_claim())
    assert targets == [4, 2, 1, 1, 1]


def test_stays_between_fast_and_slow_and_without_started_jobs() -> None:
    size = ClaimSize(start=8, fast=0.1, slow=1.0)
    size.started(0.5)
    assert size.before_claim() == 8
    assert size.before_claim() == 8  # an idle poll says nothing about the jobs


def test_goes_back_to_start_when_the_queue_runs_dry() -> None:
    size = ClaimSize(start=4)
    for _ in range(3):
        size.started(0.0)
        size.before_claim()
    assert size.target == 32
    size.after_claim(asked=32, got=32)
    assert size.target == 32
    size.after_claim(asked=32, got=5)
    assert size.target == 4


def test_refill_below_half_of_the_target() -> None:
    assert ClaimSize(start=10).refill_below == 5
    assert ClaimSize(start=1).refill_below == 1


def test_fixed_prefetch_never_changes() -> None:
    size = ClaimSize(7)
    size.started(0.0)
    size.before_claim()
    size.after_claim(asked=7, got=0)
    assert size.target == 7
    with pytest.raises(ValueError, match="prefetch=0: a worker keeps at least 1 job in hand"):
        ClaimSize(0)


class RecordingManager(JobManager):
    """Records how many jobs each fetch asked for."""

    def __init__(self, connector: pgqueue_ref.BaseConnector) -> None:
        super().__init__(connector)
        self.limits: list[int] = []

    async def fetch_async(
        self,
        face: Face,
        worker_id: int,
        limit: int,
        queues: Sequence[str] | None = None,
        task_names: Sequence[str] | None = None,
    ) -> list[Job]:
        self.limits.append(limit)
        return await super().fetch_async(face, worker_id, limit, queues, task_names)


async def test_a_worker_claims_more_per_round_trip_while_its_jobs_are_fast(
    app: pgqueue_ref.App,
) -> None:
    @app.task(name="noop")
    async def noop(n: int) -> None: ...

    await noop.batch_defer_async(*({"n": n} for n in range(3000)))
    manager = RecordingManager(app.connector)
    worker = pgqueue_ref.Worker(
        manager=manager, face=Face.APP, handler=app, concurrency=2, wait=False
    )
    stats = await asyncio.wait_for(worker.run(), 60)

    assert stats.succeeded == 3000
    assert manager.limits[0] == 2  # starts from the concurrency...
    assert max(manager.limits) > 500  # ...and claims hundreds at a time once jobs prove fast
    assert max(manager.limits) <= MOST
    assert len(manager.limits) < 40  # instead of 1,500 round trips of 2 jobs
