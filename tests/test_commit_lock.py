"""The helpers of notebook 13 (NOTIFY's commit lock) on the real server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest

import pgqueue_ref
from pgqueue_ref.bench.commit_lock import (
    KINDS,
    QUEUE_KINDS,
    Notifications,
    commit_rates,
    durable_server,
)
from pgqueue_ref.jobs import Face

Db = Callable[..., list[tuple[Any, ...]]]


async def test_commit_rates_measures_every_kind_and_cleans_up(dsn: str, db: Db) -> None:
    rates = await commit_rates(dsn, producers=(1, 2), jobs=20)
    assert set(rates.rates) == {(kind, p) for kind in KINDS for p in (1, 2)}
    assert all(rate > 0 for rate in rates.rates.values())
    assert [row["producers"] for row in rates.rows()] == [1, 2]
    # The tests' server runs with fsync off: no verdict from it.
    assert not rates.flushed
    with pytest.raises(ValueError, match="fsync=off"):
        rates.notifying_is_slower(2)
    assert db("SELECT count(*) FROM pgqueue_jobs") == [(0,)]
    assert db("SELECT count(*) FROM pgqueue_listeners") == [(0,)]
    assert db("SELECT to_regclass('bare_jobs')") == [(None,)]


async def test_notifications_hears_only_while_a_worker_is_idle(
    app: pgqueue_ref.App, dsn: str
) -> None:
    @app.task(name="t")
    async def t() -> None: ...

    async with Notifications(dsn) as heard:
        await t.defer_async()
        assert await heard.payloads() == []
        worker_id = await app.job_manager.register_worker_async("w")
        assert await app.job_manager.go_idle_async(Face.APP, worker_id)
        await t.defer_async()
        assert await heard.payloads() == ["app:default"]


async def test_a_durable_server_flushes_and_its_verdict_has_both_kinds() -> None:
    async with durable_server() as dsn:
        rates = await commit_rates(dsn, producers=(2,), jobs=20)
        assert rates.flushed
        assert set(rates.notifying_is_slower(2)) == {
            "INSERT + pg_notify < INSERT",
            "defer_job, a worker idle < no worker idle",
        }
    with pytest.raises(psycopg.OperationalError):  # stopped afterwards
        await psycopg.AsyncConnection.connect(dsn, connect_timeout=2)


async def test_the_queue_face_kinds_are_measured_and_the_marked_ones_notify(
    dsn: str, db: Db
) -> None:
    async with Notifications(dsn) as heard:
        rates = await commit_rates(dsn, producers=(1,), jobs=5, kinds=KINDS | QUEUE_KINDS)
        payloads = await heard.payloads()
    # Measured in turn, the marked kinds last; each kind sends one row per transaction
    # (and 3 first, for the prepared statements): NOTIFYs only from the marked ones.
    assert rates.kinds == [
        "INSERT",
        "INSERT + pg_notify",
        "defer_job, no worker idle",
        "enqueue_job, no consumer idle",
        "defer_job, a worker idle",
        "enqueue_job, a consumer idle",
    ]
    assert sorted(set(payloads)) == ["app:default", "queue:default"]
    assert db("SELECT count(*) FROM pgqueue_workers") == [(0,)]
    assert db("SELECT count(*) FROM pgqueue_jobs") == [(0,)]
