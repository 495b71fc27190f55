"""The design choices that make the engine fast, each pinned by what it does on a real server."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import asyncpg
import psycopg

import pgqueue_ref
from pgqueue_ref.jobs import Face, JobSpec
from pgqueue_ref.manager import defer_call
from pgqueue_ref.sql import QUERIES

Db = Callable[..., list[tuple[Any, ...]]]

FETCH_PARAMS = {"face": "app", "worker_id": 1, "limit": 100, "queues": None, "task_names": None}


def test_fetch_walks_the_index_even_on_a_table_never_analysed(dsn: str, db: Db) -> None:
    # A burst of 20,000 jobs into a fresh table: no statistics yet. Reading and sorting
    # every waiting job on each fetch made draining quadratic; the ordered index scan
    # stops after `limit` rows.
    db("INSERT INTO pgqueue_jobs (task_name) SELECT 'noop' FROM generate_series(1, 20000)")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("BEGIN")
        plan = conn.execute(
            b"EXPLAIN " + QUERIES["fetch_jobs"].sql.encode(), FETCH_PARAMS
        ).fetchall()
        conn.execute("ROLLBACK")
    text = "\n".join(row[0] for row in plan)
    assert "Index Scan using pgqueue_jobs_fetch_idx" in text, text
    assert "Sort" not in text, text


def test_the_claim_skips_the_flush_wait_for_itself_only(dsn: str, db: Db) -> None:
    db("INSERT INTO pgqueue_workers (name) VALUES ('w')")
    db("INSERT INTO pgqueue_jobs (task_name) VALUES ('noop')")
    with psycopg.connect(dsn, autocommit=True) as conn:
        (setting,) = conn.execute("SHOW synchronous_commit").fetchone() or ("?",)
        claimed = conn.execute(QUERIES["fetch_jobs"].sql.encode(), FETCH_PARAMS).fetchall()
        # SET LOCAL semantics: the next statement on this connection (a defer, say)
        # is durable again.
        assert conn.execute("SHOW synchronous_commit").fetchone() == (setting,)
    assert len(claimed) == 1
    assert db("SELECT status FROM pgqueue_jobs") == [("doing",)]


async def test_one_job_and_a_batch_of_one_write_the_same_row(app: pgqueue_ref.App, db: Db) -> None:
    # One job goes through defer_job (plain values), several through defer_jobs
    # (unnest of arrays): both must write exactly the same columns.
    spec = JobSpec(
        task_name="t",
        queue="q",
        args=json.dumps({"a": 1}),
        payload=b"\x00\x01",
        priority=7,
        lock="l",
        queueing_lock=None,
        schedule_in=3600.0,
    )
    assert defer_call(Face.QUEUE, [spec]).query.name == "defer_job"
    assert defer_call(Face.QUEUE, [spec, spec]).query.name == "defer_jobs"
    manager = app.job_manager
    (one,) = await manager.defer_async(Face.QUEUE, [spec])
    first, _ = await manager.defer_async(Face.QUEUE, [spec, spec])
    columns = (
        "face, queue, task_name, args, payload, priority, lock, queueing_lock, status, "
        "round(extract(epoch FROM scheduled_at - created_at))"
    )
    rows = db(f"SELECT {columns} FROM pgqueue_jobs WHERE id IN (%s, %s) ORDER BY id", one, first)
    assert rows[0] == rows[1]
    assert rows[0][:3] == ("queue", "q", "t") and rows[0][-1] == 3600


async def test_asyncpg_pool_sends_no_reset_query_between_statements(dsn: str, db: Db) -> None:
    # asyncpg's default reset (UNLISTEN *; RESET ALL; ...) on each release would be a
    # second round trip for every statement.
    connector = pgqueue_ref.AsyncpgConnector(dsn=dsn, min_size=1, max_size=1)
    await connector.open_async()
    try:
        await connector.fetch_all_async("SELECT 42 AS answer")
        async with connector.pool.acquire() as conn:  # max_size=1: the same connection
            pid = conn.get_server_pid()  # asked of the client, not the server
        assert db("SELECT query FROM pg_stat_activity WHERE pid = %s", pid) == [
            ("SELECT 42 AS answer",)
        ]
    finally:
        await connector.close_async()


async def test_asyncpg_pool_reset_can_still_be_chosen(dsn: str) -> None:
    resets: list[asyncpg.Connection] = []

    async def reset(conn: asyncpg.Connection) -> None:
        resets.append(conn)

    connector = pgqueue_ref.AsyncpgConnector(dsn=dsn, min_size=1, max_size=1, reset=reset)
    await connector.open_async()
    try:
        await connector.fetch_all_async("SELECT 1")
    finally:
        await connector.close_async()
    assert len(resets) == 1
