"""The design choices that make the engine fast, each pinned by what it does on a real server."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import asyncpg
import psycopg
import pytest

import pgqueue_ref
from pgqueue_ref.jobs import Face, JobSpec, Status
from pgqueue_ref.manager import DeleteJobCondition, Outcome, defer_call, finish_call
from pgqueue_ref.sql import QUERIES, to_numbered

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


async def test_the_three_defer_statements_write_the_same_rows(app: pgqueue_ref.App, db: Db) -> None:
    # One job goes through defer_job (plain values), jobs differing only in their
    # arguments through defer_jobs_alike (one array), others through defer_jobs (an
    # array per column): all must write exactly the same columns.
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
    other = dataclasses.replace(spec, priority=8)
    assert defer_call(Face.QUEUE, [spec]).query.name == "defer_job"
    assert defer_call(Face.QUEUE, [spec, spec]).query.name == "defer_jobs_alike"
    assert defer_call(Face.QUEUE, [spec, other]).query.name == "defer_jobs"
    manager = app.job_manager
    ids = await manager.defer_async(Face.QUEUE, [spec])
    ids += await manager.defer_async(Face.QUEUE, [spec, spec])
    ids += await manager.defer_async(Face.QUEUE, [spec, other])
    columns = (
        "face, queue, task_name, args, payload, priority, lock, queueing_lock, status, "
        "round(extract(epoch FROM scheduled_at - created_at))"
    )
    rows = db(f"SELECT {columns} FROM pgqueue_jobs WHERE id = ANY(%s) ORDER BY id", ids)
    assert rows[:4] == [rows[0]] * 4
    assert rows[0][:3] == ("queue", "q", "t") and rows[0][-1] == 3600
    assert rows[4][5] == 8  # the ids come back in the order of the jobs


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


async def test_a_pool_of_yours_given_keep_session_sends_no_reset_query(dsn: str, db: Db) -> None:
    from pgqueue_ref.connectors.asyncpg import AsyncpgPoolDriver, keep_session

    async with asyncpg.create_pool(dsn, min_size=1, max_size=1, reset=keep_session) as pool:
        await AsyncpgPoolDriver(pool).fetch_all_async("SELECT 43 AS answer")
        async with pool.acquire() as conn:  # max_size=1: the same connection
            pid = conn.get_server_pid()
        assert db("SELECT query FROM pg_stat_activity WHERE pid = %s", pid) == [
            ("SELECT 43 AS answer",)
        ]


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


def _plan_nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [node, *(n for child in node.get("Plans", []) for n in _plan_nodes(child))]


@pytest.mark.parametrize(
    ("analysed_while_waiting", "held", "outcomes"),
    [
        # The Queue face's drain: statistics taken while every job waited (no 'doing'
        # row), then claims of 10 hold some 800 jobs when a flush of 740 comes.
        (True, 820, 740),
        # A burst into a table never analysed, 20,000 jobs held, a flush of 100.
        (False, 20_000, 100),
    ],
)
@pytest.mark.parametrize("plan_cache_mode", ["force_custom_plan", "force_generic_plan"])
async def test_a_flush_joins_its_outcomes_to_the_jobs_by_id_whatever_the_statistics(
    dsn: str, db: Db, analysed_while_waiting: bool, held: int, outcomes: int, plan_cache_mode: str
) -> None:
    # A nested loop that rescans every outcome for each job held made a flush cost
    # (jobs held) x (outcomes): 606,060 rows removed by its join filter, 130-180 ms,
    # for the first case with the guards written IS NOT DISTINCT FROM (queries.sql,
    # finish_jobs). Joined by id, no outcome is compared with a job it is not for.
    db("INSERT INTO pgqueue_workers (name) VALUES ('w')")
    db("INSERT INTO pgqueue_jobs (task_name) SELECT 'noop' FROM generate_series(1, 30000)")
    if analysed_while_waiting:
        db("ANALYZE pgqueue_jobs")
    db("UPDATE pgqueue_jobs SET status = 'doing', worker_id = 1 WHERE id <= %s", held)
    ids = list(range(1, outcomes + 1))
    call = finish_call([Outcome(i, Status.SUCCEEDED) for i in ids], 1, DeleteJobCondition.NEVER)
    sql, names = to_numbered(call.query.sql)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"SET plan_cache_mode = {plan_cache_mode}")
        async with conn.transaction():
            statement = await conn.prepare("EXPLAIN (ANALYZE, FORMAT JSON) " + sql)
            plan = json.loads(await statement.fetchval(*(call.params[n] for n in names)))
            updated = await conn.fetchval(
                "SELECT count(*) FROM pgqueue_jobs WHERE status = 'succeeded'"
            )
            raise _RolledBack
    except _RolledBack:
        pass
    finally:
        await conn.close()
    assert updated == outcomes
    nodes = _plan_nodes(plan[0]["Plan"])
    compared = sum(n.get("Rows Removed by Join Filter", 0) for n in nodes)
    assert compared <= outcomes, json.dumps(plan, indent=1)


class _RolledBack(Exception):
    """Leave the transaction without committing the flush EXPLAIN ANALYZE ran."""
