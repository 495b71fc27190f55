"""Each command of ``python -m pgqueue_ref``, run as a subprocess against a real database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

Db = Callable[..., list[tuple[Any, ...]]]


def _without_a_database(key: str) -> bool:
    """Keep the variable *key* in a command's environment? Not if it names a database:
    PGQUEUE_REF_DSN and libpq's PG* variables. PGQUEUE_REF_PG_BINDIR stays, so that the
    embedded server is the one the test run uses (PostgreSQL 18 in CI's second leg)."""
    if key == "PGQUEUE_REF_DSN":
        return False
    return key.startswith("PGQUEUE_REF_") or not key.startswith("PG")


def run(
    *args: str,
    dsn: str | None = None,
    cwd: Path | None = None,
    timeout: float = 60,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if _without_a_database(k)} | (env or {})
    if dsn is not None:
        env["PGQUEUE_REF_DSN"] = dsn
    return subprocess.run([sys.executable, "-m", "pgqueue_ref", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=timeout, check=False)  # fmt: skip


@pytest.fixture
def app_module(tmp_path: Path, dsn: str) -> Path:
    """A user's module with an app and two tasks; each run is recorded in a table."""
    (tmp_path / "shop.py").write_text(
        textwrap.dedent(f"""
        import time
        import psycopg
        import pgqueue_ref

        app = pgqueue_ref.App(connector=pgqueue_ref.PsycopgConnector(conninfo={dsn!r}))

        @app.task(name="shop.ship", queue="orders")
        def ship(order_id):
            with psycopg.connect({dsn!r}, autocommit=True) as conn:
                conn.execute("INSERT INTO shipped VALUES (%s)", [order_id])

        @app.task(name="shop.slow")
        def slow(seconds):
            time.sleep(seconds)
    """)
    )
    return tmp_path


def test_help_lists_every_command() -> None:
    result = run("--help")
    assert result.returncode == 0
    for command in ("schema", "defer", "worker", "status", "jobs", "failed", "requeue",
                    "embedded", "demo", "bench"):  # fmt: skip
        assert command in result.stdout


def test_schema_check_then_apply(empty_dsn: str) -> None:
    before = run("schema", "check", dsn=empty_dsn)
    assert (before.returncode, before.stdout.strip()) == (
        1,
        (
            "schema missing: pgqueue_jobs, pgqueue_workers, pgqueue_jobs_fetch_idx, "
            "pgqueue_jobs_queueing_lock_idx, pgqueue_jobs_lock_idx, pgqueue_jobs_worker_idx, "
            "pgqueue_periodic_defers, pgqueue_schedules, pgqueue_queue_log, pgqueue_watchers, "
            "pgqueue_listeners (run 'schema apply')"
        ),
    )
    assert run("schema", "apply", dsn=empty_dsn).stdout.strip() == "schema applied"
    assert run("schema", "apply", dsn=empty_dsn).returncode == 0  # idempotent
    assert run("schema", "check", dsn=empty_dsn).stdout.strip() == "schema ok"


def test_defer_status_and_jobs(dsn: str, db: Db) -> None:
    result = run(
        "defer", "shop.ship", '{"order_id": 7}', "--queue", "orders", "--priority", "5", dsn=dsn
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("job 1 deferred: shop.ship(order_id=7)")
    assert db("SELECT queue, priority, args FROM pgqueue_jobs") == [("orders", 5, {"order_id": 7})]

    status = run("status", dsn=dsn).stdout.splitlines()
    assert status[0].split() == ["face", "queue", "status", "jobs"]
    assert status[2].split() == ["app", "orders", "todo", "1"]
    jobs = run("jobs", dsn=dsn).stdout
    assert "shop.ship" in jobs and '{"order_id": 7}' in jobs


def test_status_shows_the_queue_faces_schedules(dsn: str, db: Db) -> None:
    db(
        "INSERT INTO pgqueue_schedules (entrypoint, expression, next_run, last_run) "
        "VALUES ('cleanup', '*/5 * * * *', '2026-01-01 00:05:00+00', '2026-01-01 00:00:00+00')"
    )
    status = run("status", dsn=dsn).stdout.splitlines()
    assert status[-3].split() == ["schedule", "expression", "status", "last_run", "next_run"]
    assert status[-1].split() == [
        "cleanup", "*/5", "*", "*", "*", "*", "queued",
        "2026-01-01", "00:00:00", "2026-01-01", "00:05:00",
    ]  # fmt: skip


def test_failed_lists_the_queue_faces_failed_jobs_and_requeue_runs_them_again(
    dsn: str, db: Db
) -> None:
    assert run("failed", dsn=dsn).stdout.strip() == "No failed jobs."
    db(
        "INSERT INTO pgqueue_jobs (face, task_name, payload, status, attempts, error, finished_at) "
        "VALUES ('queue', 'charge', 'ab', 'failed', 3, 'ValueError: card declined', now()), "
        "('app', 'shop.ship', NULL, 'failed', 1, 'not the Queue face', now())"
    )
    lines = run("failed", dsn=dsn).stdout.splitlines()
    assert lines[0].split() == ["id", "entrypoint", "attempts", "finished", "payload", "bytes",
                                "error"]  # fmt: skip
    assert len(lines) == 3 and lines[2].split()[:3] == ["1", "charge", "3"]
    assert lines[2].split()[-3:] == ["ValueError:", "card", "declined"]
    result = run("requeue", "1", "2", "99", dsn=dsn)
    assert (result.returncode, result.stdout.strip()) == (
        0,
        "Re-queued 1 job(s). Not failed Queue-face jobs, left alone: 2, 99.",
    )
    assert db("SELECT id, status, attempts FROM pgqueue_jobs ORDER BY id") == [
        (1, "todo", 0),
        (2, "failed", 1),
    ]
    assert run("requeue", "x", dsn=dsn).returncode == 2


def test_defer_refuses_bad_json_with_a_usage_error(dsn: str) -> None:
    result = run("defer", "t", "{oops", dsn=dsn)
    assert result.returncode == 2
    assert "error: arguments '{oops' are not JSON" in result.stderr
    assert "Traceback" not in result.stderr


def test_without_a_database_says_how_to_get_one() -> None:
    result = run("status")
    assert result.returncode == 2
    assert "no database configured: pass --dsn, set PGQUEUE_REF_DSN" in result.stderr


def test_worker_drains_with_the_apps_tasks(dsn: str, db: Db, app_module: Path) -> None:
    db("CREATE TABLE shipped (order_id int)")
    for n in (1, 2, 3):
        run("defer", "shop.ship", f'{{"order_id": {n}}}', "--queue", "orders", dsn=dsn)
    result = run("--app", "shop:app", "worker", "--drain", "--concurrency", "2", cwd=app_module)
    assert result.returncode == 0, result.stderr
    assert "worker stopped: 3 succeeded, 0 failed" in result.stderr
    assert db("SELECT order_id FROM shipped ORDER BY 1") == [(1,), (2,), (3,)]


def test_worker_stops_gracefully_on_sigterm(dsn: str, db: Db, app_module: Path) -> None:
    run("defer", "shop.slow", '{"seconds": 1}', dsn=dsn)
    env = {k: v for k, v in os.environ.items() if k != "PGQUEUE_REF_DSN"}
    worker = subprocess.Popen([sys.executable, "-m", "pgqueue_ref", "--app", "shop:app", "worker"],
                              cwd=app_module, env=env, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 20
    while db("SELECT status FROM pgqueue_jobs") != [("doing",)] and time.monotonic() < deadline:
        time.sleep(0.05)
    worker.send_signal(signal.SIGTERM)
    _, stderr = worker.communicate(timeout=20)
    assert worker.returncode == 0, stderr
    assert "worker stopped: 1 succeeded" in stderr  # the running job was allowed to finish
    assert db("SELECT status FROM pgqueue_jobs") == [("succeeded",)]


def test_worker_needs_an_app(dsn: str) -> None:
    result = run("worker", dsn=dsn)
    assert result.returncode == 2
    assert "worker needs --app package.module:app" in result.stderr


def test_app_that_cannot_be_imported(dsn: str) -> None:
    result = run("--app", "no_such_module:app", "status", dsn=dsn)
    assert result.returncode == 2
    assert "cannot import 'no_such_module'" in result.stderr


def test_embedded_prints_a_dsn_and_stops_on_sigterm() -> None:
    env = {k: v for k, v in os.environ.items() if k != "PGQUEUE_REF_DSN"}
    server = subprocess.Popen([sys.executable, "-m", "pgqueue_ref", "embedded"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert server.stdout is not None
    dsn = server.stdout.readline().strip()
    assert dsn.startswith("postgresql://postgres@127.0.0.1:")
    assert run("schema", "apply", dsn=dsn).returncode == 0
    server.send_signal(signal.SIGTERM)
    server.wait(30)
    assert server.returncode == 0
    assert run("schema", "check", dsn=dsn, timeout=30).returncode != 0  # gone


def test_demo_runs_on_its_own_server() -> None:
    result = run("demo", "--jobs", "60", timeout=120)
    assert result.returncode == 0, result.stderr
    assert "worker: " in result.stdout and "succeeded" in result.stdout


def test_a_server_that_cannot_start_is_an_error_message_not_a_traceback() -> None:
    # EmbeddedPostgresError is a PgQueueError: main() prints it and exits with 1.
    result = run("demo", env={"PGQUEUE_REF_PG_BINDIR": "/nonexistent"})
    assert result.returncode == 1
    assert "error: PGQUEUE_REF_PG_BINDIR='/nonexistent' does not contain" in result.stderr
    assert "Traceback" not in result.stderr


def test_bench_measures_and_writes_its_results(dsn: str, tmp_path: Path) -> None:
    output, plot = tmp_path / "bench.json", tmp_path / "bench.png"
    result = run("bench", "--repeat", "1", "--jobs", "200", "--one-by-one-jobs", "20",
                 "--operations", "enqueue_one", "enqueue_batch", "--subjects", "pgqueue_ref PsycopgConnector",
                 "--output", str(output), "--plot", str(plot), dsn=dsn, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert output.exists() and plot.exists()
    assert "PsycopgConnector" in result.stdout


def test_bench_puts_its_plot_beside_its_output_unless_told(dsn: str, tmp_path: Path) -> None:
    output = tmp_path / "elsewhere" / "bench.json"
    result = run("bench", "--repeat", "1", "--one-by-one-jobs", "5", "--operations", "enqueue_one",
                 "--subjects", "pgqueue_ref PsycopgConnector", "--output", str(output),
                 dsn=dsn, timeout=300, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert (output.parent / "benchmarks.png").exists()
    assert not (tmp_path / "bench-results").exists()  # the default folder stays untouched
