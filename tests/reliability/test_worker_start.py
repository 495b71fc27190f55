"""A worker process started while the database is down waits for it, as supervisors
(systemd, Kubernetes, supervisord) expect, instead of exiting with an error."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg

from pgqueue_ref.embedded import EmbeddedPostgres
from pgqueue_ref.sql import SCHEMA

from .chaos_app import RUNS_TABLE
from .conftest import HERE, wait_until


def _stop(server: EmbeddedPostgres) -> None:
    """A clean stop (``pg_ctl stop -m fast``); ``server.start()`` starts it again."""
    command = [str(server.bindir / "pg_ctl"), "stop", "-D", f"{server.base_dir}/data",
               "-m", "fast", "-w", "-t", "30"]  # fmt: skip
    subprocess.run(server._as_server_user(command), check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=60)  # fmt: skip
    assert server.child_process is not None
    server.child_process.wait(30)
    server.child_process = None
    if server._watchdog is not None:
        server._watchdog.wait(10)  # it ends with its server; start() makes a new one


def _worker(dsn: str, *options: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PGQUEUE_REF_DSN": dsn, "PYTHONPATH": str(HERE)}
    command = [sys.executable, "-m", "pgqueue_ref", "--app", "chaos_app:app", "worker", *options]
    return subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)


def _lines_until(process: subprocess.Popen[str], needle: str, seconds: float) -> list[str]:
    """stderr lines up to the first containing ``needle``."""
    assert process.stderr is not None
    lines: list[str] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        lines.append(line)
        if needle in line:
            return lines
    raise AssertionError(f"no {needle!r} within {seconds} s; stderr: {''.join(lines)}")


def test_a_worker_started_during_an_outage_waits_for_the_database() -> None:
    with EmbeddedPostgres(fast=True) as server:
        dsn = server.dsn_url
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(SCHEMA)
            conn.execute(RUNS_TABLE)
        _stop(server)
        worker = _worker(dsn, "--heartbeat-interval", "0.5")
        try:
            waits = _lines_until(worker, "waiting for the database", 60)
            waits += _lines_until(worker, "waiting for the database", 60)  # a second try
            time.sleep(1)
            assert worker.poll() is None, "the worker exited instead of waiting"
            server.start()
            _lines_until(worker, "worker started", 60)
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("INSERT INTO pgqueue_jobs (task_name) SELECT 'record' "
                             "FROM generate_series(1, 5)")  # fmt: skip

                def done() -> bool:
                    row = conn.execute(
                        "SELECT count(*) FROM pgqueue_jobs WHERE status = 'succeeded'"
                    ).fetchone()
                    return row is not None and row[0] == 5

                wait_until(done, 60, "the 5 jobs deferred once the server was back")
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(30) == 0
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait(10)
    # What it waited for, and how long it will wait: in its own words.
    assert "connection" in waits[-1].lower() or "refused" in waits[-1].lower(), waits[-1]
    assert "trying again in" in waits[-1]


def test_waiting_is_bounded_by_wait_for_database(tmp_path: Path) -> None:
    with EmbeddedPostgres(fast=True) as server:
        dsn = server.dsn_url
        _stop(server)
        try:
            started = time.monotonic()
            worker = _worker(dsn, "--wait-for-database", "2")
            _, stderr = worker.communicate(timeout=60)
            took = time.monotonic() - started
        finally:
            server.start()  # as the context manager expects to find it
    assert worker.returncode == 1, stderr
    assert "waiting for the database" in stderr
    assert "giving up after 2 s" in stderr
    assert 1.5 < took < 30, took


def test_a_wrong_database_name_is_not_waited_for(server_dsn: str) -> None:
    params = psycopg.conninfo.conninfo_to_dict(server_dsn)
    params["dbname"] = "no_such_database"
    worker = _worker(psycopg.conninfo.make_conninfo(**params))  # type: ignore[arg-type]
    _, stderr = worker.communicate(timeout=60)
    assert worker.returncode == 1, stderr
    assert "does not exist" in stderr
    assert "waiting for the database" not in stderr
