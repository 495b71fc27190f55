"""Retention: the worker's delete_jobs option, JobManager.delete_old_jobs (in batches),
the builtin task remove_old_jobs, and ``jobs prune`` on the command line."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

import pgqueue_ref
from pgqueue_ref import PgQueuer, QueueExecutionMode
from pgqueue_ref.builtin_tasks import REMOVE_OLD_JOBS
from pgqueue_ref.display import recording
from pgqueue_ref.exceptions import JobAborted
from pgqueue_ref.jobs import Status
from pgqueue_ref.manager import DeleteJobCondition, Outcome, finish_call
from pgqueue_ref.table_stats import TableStats

Db = Callable[..., list[tuple[Any, ...]]]


def _statuses(db: Db) -> list[str]:
    return [status for (status,) in db("SELECT status FROM pgqueue_jobs ORDER BY id")]


def _tasks(app: pgqueue_ref.App) -> tuple[pgqueue_ref.Task, pgqueue_ref.Task, pgqueue_ref.Task]:
    attempts: dict[int, int] = {}

    @app.task(name="ok")
    async def ok(n: int) -> None:
        pass

    @app.task(name="boom")
    async def boom(n: int) -> None:
        raise RuntimeError(f"boom {n}")

    @app.task(name="flaky", retry=1)
    async def flaky(n: int) -> None:
        attempts[n] = attempts.get(n, 0) + 1
        if attempts[n] == 1:
            raise RuntimeError("first attempt fails")

    return ok, boom, flaky


# -- delete_jobs ---------------------------------------------------------------


async def test_delete_successful_leaves_only_failed_jobs(app: pgqueue_ref.App, db: Db) -> None:
    ok, boom, flaky = _tasks(app)
    await ok.batch_defer_async({"n": 1}, {"n": 2}, {"n": 3})
    await boom.batch_defer_async({"n": 4}, {"n": 5})
    await flaky.defer_async(n=6)  # fails once (kept, to run again), then succeeds

    stats = await app.run_worker_async(wait=False, delete_jobs="successful")

    assert (stats.succeeded, stats.failed, stats.retried) == (4, 2, 1)
    assert db("SELECT task_name, status FROM pgqueue_jobs ORDER BY id") == [
        ("boom", "failed"),
        ("boom", "failed"),
    ]


async def test_delete_always_leaves_nothing_finished(app: pgqueue_ref.App, db: Db) -> None:
    ok, boom, flaky = _tasks(app)

    @app.task(name="stop")
    async def stop() -> None:
        raise JobAborted

    await ok.defer_async(n=1)
    await boom.defer_async(n=2)
    await flaky.defer_async(n=3)
    await stop.defer_async()
    waiting = await ok.configure(schedule_in={"hours": 1}).defer_async(n=4)

    stats = await app.run_worker_async(wait=False, delete_jobs="always")

    assert (stats.succeeded, stats.failed, stats.aborted, stats.retried) == (2, 1, 1, 1)
    assert db("SELECT id, status FROM pgqueue_jobs") == [(waiting, "todo")]


async def test_delete_never_is_the_default_and_keeps_every_job(
    app: pgqueue_ref.App, db: Db
) -> None:
    ok, boom, _ = _tasks(app)
    await ok.defer_async(n=1)
    await boom.defer_async(n=2)
    assert app.worker().delete_jobs == "never"
    await app.run_worker_async(wait=False, delete_jobs="never")
    assert _statuses(db) == ["succeeded", "failed"]


async def test_delete_jobs_outside_its_three_values_is_a_value_error(
    app: pgqueue_ref.App,
) -> None:
    message = (
        "delete_jobs='success': expected one of 'never', 'successful', 'always' "
        "(which finished jobs the worker deletes)"
    )
    with pytest.raises(ValueError) as raised:
        app.worker(delete_jobs="success")
    assert str(raised.value) == message
    with pytest.raises(ValueError, match="expected one of 'never', 'successful', 'always'"):
        await app.run_worker_async(wait=False, delete_jobs=True)


async def test_the_delete_is_in_the_statement_that_records_outcomes(
    app: pgqueue_ref.App, db: Db
) -> None:
    ok, _, _ = _tasks(app)
    await ok.batch_defer_async({"n": 1}, {"n": 2})
    with recording(app.connector) as sent:
        await app.run_worker_async(
            wait=False, name="w", flush_interval=60, prefetch=10, delete_jobs="successful"
        )
    assert [s.name for s in sent] == [
        "register_worker",
        "requeue_stalled_jobs",
        "fetch_jobs",
        "fetch_jobs",
        "finish_jobs",
        "announce_finished",  # for completion watchers: a NOTIFY, no table read
        "fetch_jobs",
        "unregister_worker",
    ]
    assert sent[4].params["delete_statuses"] == ["succeeded"]
    assert db("SELECT count(*) FROM pgqueue_jobs") == [(0,)]


async def test_queue_face_consumer_takes_delete_jobs(dsn: str, db: Db) -> None:
    # PgQueuer deletes every job when it finishes; here that is delete_jobs="always".
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        pgq = PgQueuer.from_psycopg_connection(conn)

        @pgq.entrypoint("work")
        async def work(job: Any) -> None:
            if job.payload == b"bad":
                raise RuntimeError("bad payload")

        await pgq.queries.enqueue(["work", "work"], [b"good", b"bad"], [0, 0])
        await pgq.run(mode=QueueExecutionMode.drain, delete_jobs="always")
    assert db("SELECT count(*) FROM pgqueue_jobs") == [(0,)]


# -- delete_old_jobs -------------------------------------------------------------


async def _one_job_of_each_status(app: pgqueue_ref.App, db: Db) -> None:
    """succeeded, failed, aborted (by the worker), cancelled, todo, doing."""
    ok, boom, _ = _tasks(app)

    @app.task(name="stop")
    async def stop() -> None:
        raise JobAborted

    await ok.defer_async(n=1)
    await boom.defer_async(n=2)
    await stop.defer_async()
    await app.run_worker_async(wait=False)
    cancelled = await ok.configure(schedule_in={"hours": 1}).defer_async(n=3)
    await app.job_manager.cancel_async(cancelled)
    await ok.configure(schedule_in={"hours": 1}).defer_async(n=4)
    running = await ok.configure(schedule_in={"hours": 1}).defer_async(n=5)
    db("UPDATE pgqueue_jobs SET status = 'doing', started_at = now() WHERE id = %s", running)
    assert _statuses(db) == ["succeeded", "failed", "aborted", "cancelled", "todo", "doing"]


async def test_delete_old_jobs_keeps_waiting_running_cancelled_and_aborted_jobs(
    app: pgqueue_ref.App, db: Db
) -> None:
    await _one_job_of_each_status(app, db)
    deleted = await app.job_manager.delete_old_jobs(nb_hours=0, include_failed=True)
    assert deleted == 2
    assert _statuses(db) == ["aborted", "cancelled", "todo", "doing"]


async def test_delete_old_jobs_of_succeeded_and_failed_jobs_leaves_only_waiting_ones(
    app: pgqueue_ref.App, db: Db
) -> None:
    # The "done when", as it reads: finished jobs succeeded or failed.
    ok, boom, _ = _tasks(app)
    await ok.batch_defer_async({"n": 1}, {"n": 2}, {"n": 3})
    await boom.batch_defer_async({"n": 4}, {"n": 5})
    await ok.configure(schedule_in={"hours": 1}).batch_defer_async({"n": 6}, {"n": 7})
    await app.run_worker_async(wait=False)

    assert await app.job_manager.delete_old_jobs(nb_hours=0, include_failed=True) == 5
    assert _statuses(db) == ["todo", "todo"]


async def test_delete_old_jobs_with_everything_included_leaves_only_waiting_and_running(
    app: pgqueue_ref.App, db: Db
) -> None:
    await _one_job_of_each_status(app, db)
    deleted = await app.job_manager.delete_old_jobs(
        0, include_failed=True, include_cancelled=True, include_aborted=True
    )
    assert deleted == 4
    assert _statuses(db) == ["todo", "doing"]


async def test_delete_old_jobs_by_default_deletes_succeeded_jobs_only(
    app: pgqueue_ref.App, db: Db
) -> None:
    await _one_job_of_each_status(app, db)
    assert await app.job_manager.delete_old_jobs(0) == 1
    assert _statuses(db) == ["failed", "aborted", "cancelled", "todo", "doing"]


async def test_delete_old_jobs_reads_finished_at_and_the_queue(
    app: pgqueue_ref.App, db: Db
) -> None:
    ok, _, _ = _tasks(app)
    await ok.batch_defer_async(*({"n": n} for n in range(4)))
    await ok.configure(queue="other").defer_async(n=4)
    await app.run_worker_async(wait=False)
    db("UPDATE pgqueue_jobs SET finished_at = now() - interval '3 hours' WHERE id IN (1, 2, 5)")

    assert await app.job_manager.delete_old_jobs(nb_hours=4) == 0
    assert await app.job_manager.delete_old_jobs(nb_hours=2.5, queue="default") == 2
    assert db("SELECT id FROM pgqueue_jobs ORDER BY id") == [(3,), (4,), (5,)]
    assert await app.job_manager.delete_old_jobs(nb_hours=2) == 1
    assert db("SELECT id FROM pgqueue_jobs ORDER BY id") == [(3,), (4,)]


async def test_delete_old_jobs_deletes_in_batches(app: pgqueue_ref.App, db: Db) -> None:
    ok, _, _ = _tasks(app)
    await ok.batch_defer_async(*({"n": n} for n in range(5)))
    await app.run_worker_async(wait=False)
    with recording(app.connector) as sent:
        deleted = await app.job_manager.delete_old_jobs(0, batch_size=2)
    assert deleted == 5
    # 2 + 2 + 1: the short batch says nothing is left.
    assert [(s.name, s.params["batch_size"]) for s in sent] == [("delete_old_jobs", 2)] * 3
    assert db("SELECT count(*) FROM pgqueue_jobs") == [(0,)]


async def test_delete_old_jobs_refuses_a_negative_nb_hours(app: pgqueue_ref.App) -> None:
    with pytest.raises(ValueError) as raised:
        await app.job_manager.delete_old_jobs(nb_hours=-1)
    assert str(raised.value) == (
        "nb_hours=-1: expected 0 or more (jobs finished at least that many hours ago are "
        "deleted; 0 deletes every finished job)"
    )
    with pytest.raises(ValueError, match=r"^batch_size=0: expected 1 or more$"):
        await app.job_manager.delete_old_jobs(nb_hours=1, batch_size=0)


def test_delete_old_jobs_blocking_is_the_sync_twin(dsn: str, db: Db) -> None:
    db("INSERT INTO pgqueue_jobs (task_name, status, finished_at) VALUES ('t', 'succeeded', now())")
    db("INSERT INTO pgqueue_jobs (task_name, status, finished_at) VALUES ('t', 'failed', now())")
    app = pgqueue_ref.App(connector=pgqueue_ref.SyncPsycopgConnector(conninfo=dsn))
    with app.open():
        assert app.job_manager.delete_old_jobs_blocking(0, include_failed=True) == 2
    assert db("SELECT count(*) FROM pgqueue_jobs") == [(0,)]


# -- the builtin task ---------------------------------------------------------------


async def test_builtin_remove_old_jobs_runs_on_every_app(app: pgqueue_ref.App, db: Db) -> None:
    ok, boom, _ = _tasks(app)
    await ok.defer_async(n=1)
    await boom.defer_async(n=2)
    await app.run_worker_async(wait=False)
    assert REMOVE_OLD_JOBS == "builtin:pgqueue_ref.builtin_tasks.remove_old_jobs"
    assert REMOVE_OLD_JOBS in app.builtin_tasks and REMOVE_OLD_JOBS not in app.tasks

    await app.configure_task(REMOVE_OLD_JOBS).defer_async(max_hours=0, remove_failed=True)
    stats = await app.run_worker_async(wait=False)

    assert stats.succeeded == 1
    # Running while it deleted, so it stayed; the jobs before it are gone.
    assert db("SELECT task_name, status FROM pgqueue_jobs") == [(REMOVE_OLD_JOBS, "succeeded")]


# -- the command line -----------------------------------------------------------------


def _cli(*args: str, dsn: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pgqueue_ref", "--dsn", dsn, *args],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip


def test_jobs_prune_prints_how_many_it_deleted(dsn: str, db: Db) -> None:
    for status in ("succeeded", "failed", "failed", "cancelled"):
        db("INSERT INTO pgqueue_jobs (task_name, status, finished_at) VALUES ('t', %s, now())",
           status)  # fmt: skip
    db("INSERT INTO pgqueue_jobs (task_name) VALUES ('t')")

    result = _cli("jobs", "prune", "--older-than", "0", "--include-failed", dsn=dsn)

    assert result.returncode == 0, result.stderr
    assert result.stdout == "deleted 3 jobs finished more than 0 hours ago\n"
    assert _statuses(db) == ["cancelled", "todo"]
    assert "deleted 0 jobs" in _cli("jobs", "prune", "--older-than", "1.5", dsn=dsn).stdout
    assert "shop" not in _cli("jobs", dsn=dsn).stdout  # plain `jobs` still lists


def test_jobs_prune_refuses_negative_hours(dsn: str) -> None:
    result = _cli("jobs", "prune", "--older-than", "-2", dsn=dsn)
    assert result.returncode == 2
    assert "argument --older-than: expected a number of hours >= 0, got '-2'" in result.stderr


# -- the flush stays linear in its outcomes ------------------------------------


def _explain_finish_generic(dsn: str, delete_jobs: str, held: int) -> str:
    """EXPLAIN ANALYZE of one flush of ``held`` outcomes, under the generic plan a
    prepared statement gets after its fifth run (what every driver reaches)."""
    call = finish_call(
        [Outcome(i, Status.SUCCEEDED) for i in range(1, held + 1)],
        1,
        DeleteJobCondition.parse(delete_jobs),
    )
    names: list[str] = []

    def positional(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    sql = re.sub(r"%\((\w+)\)s", positional, call.query.sql)
    with psycopg.ClientCursor(psycopg.connect(dsn, autocommit=True)) as cur:
        cur.execute("INSERT INTO pgqueue_jobs (task_name, status, worker_id) "
                    "SELECT 'noop', 'doing', 1 FROM generate_series(1, %s)", [held])  # fmt: skip
        cur.execute(f"PREPARE flush AS {sql}")
        cur.execute("SET plan_cache_mode = force_generic_plan")
        values = ", ".join(["%s"] * len(names))
        cur.execute(f"EXPLAIN ANALYZE EXECUTE flush({values})", [call.params[n] for n in names])
        plan = "\n".join(row[0] for row in cur.fetchall())
        cur.connection.close()
    return plan


@pytest.mark.parametrize("delete_jobs", ["never", "successful"])
def test_a_flush_looks_each_job_up_once(dsn: str, db: Db, delete_jobs: str) -> None:
    # A flush of n outcomes used to rescan all n for each job the worker held
    # (a nested loop over the CTE `done`): 20,000 outcomes took minutes.
    plan = _explain_finish_generic(dsn, delete_jobs, held=3000)

    rescans = [int(m) for m in re.findall(r"CTE Scan on done .*loops=(\d+)", plan)]
    assert rescans and max(rescans) == 1, plan
    assert "Join Filter: (job" not in plan, plan
    assert db("SELECT count(*) FROM pgqueue_jobs WHERE status = 'doing'") == [(0,)]


# -- what the table costs ------------------------------------------------------


async def test_table_stats_show_dead_rows_until_vacuum(app: pgqueue_ref.App, dsn: str) -> None:
    ok, _, _ = _tasks(app)
    with psycopg.connect(dsn, autocommit=True) as conn:  # this test decides when VACUUM runs
        conn.execute("ALTER TABLE pgqueue_jobs SET (autovacuum_enabled = false)")
    empty = await app.job_manager.table_stats_async()
    await ok.batch_defer_async(*({"n": n} for n in range(2000)))
    await app.run_worker_async(wait=False, delete_jobs="successful")
    # Two dead tuples per job: the version the claim replaced, and the deleted row.
    before = await _stats_when(app, lambda s: s.dead_rows >= 4000)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM pgqueue_jobs")
    after = await app.job_manager.table_stats_async()

    assert empty.total_bytes < before.total_bytes  # the rows are gone, their space is not
    assert before.dead_rows == 4000
    assert (after.dead_rows, after.vacuums) == (0, before.vacuums + 1)
    assert after.heap_bytes < before.heap_bytes  # VACUUM cut the empty pages at the end
    assert after.total_mb == after.total_bytes / 1024 / 1024


async def _stats_when(app: pgqueue_ref.App, ready: Callable[[TableStats], bool]) -> TableStats:
    # An idle connection reports its statistics within about 10 s (PostgreSQL 15).
    for _ in range(150):
        stats = await app.job_manager.table_stats_async()
        if ready(stats):
            return stats
        await asyncio.sleep(0.1)
    raise AssertionError(f"statistics never showed it: {stats}")


def test_table_stats_blocking_twin(dsn: str) -> None:
    app = pgqueue_ref.App(connector=pgqueue_ref.SyncPsycopgConnector(conninfo=dsn))
    with app.open():
        app.configure_task("noop").batch_defer(*({"n": n} for n in range(100)))
        for _ in range(150):  # statistics: see _stats_when
            stats = app.job_manager.table_stats()
            if stats.live_rows:
                break
            time.sleep(0.1)
    assert (stats.live_rows, stats.dead_rows, stats.vacuum_running) == (100, 0, False)
    assert stats.heap_bytes > 0 and stats.total_bytes > stats.heap_bytes + stats.index_bytes - 1
