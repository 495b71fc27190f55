"""A database restart under a running worker: it reconnects and loses no job."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

import pgqueue_ref
from pgqueue_ref.embedded import EmbeddedPostgres
from pgqueue_ref.sql import SCHEMA

CONNECTORS: dict[str, Callable[[str], pgqueue_ref.BaseConnector]] = {
    "PsycopgConnector": lambda dsn: pgqueue_ref.PsycopgConnector(conninfo=dsn),
    "AsyncpgConnector": lambda dsn: pgqueue_ref.AsyncpgConnector(dsn=dsn),
}


async def _until(predicate: Callable[[], Any], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"waited {seconds} s for {what}"
        await asyncio.sleep(0.05)


def _pg_ctl(server: EmbeddedPostgres, action: str) -> None:
    data = f"{server.base_dir}/data"
    command = [str(server.bindir / "pg_ctl"), action, "-D", data, "-l", f"{server.base_dir}/tmp/pg_ctl.log",
               "-m", "fast", "-w", "-t", "30"]  # fmt: skip
    # No pipes: the new postmaster would inherit them and run() would wait for it to exit.
    subprocess.run(server._as_server_user(command), check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=60)  # fmt: skip


@pytest.mark.parametrize("name", list(CONNECTORS))
async def test_worker_survives_a_database_restart(name: str) -> None:
    with EmbeddedPostgres(fast=True) as server:  # our own server: we restart it
        dsn = server.dsn_url
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(SCHEMA)
        app = pgqueue_ref.App(connector=CONNECTORS[name](dsn))
        ran: list[int] = []

        @app.task(name="n")
        async def n(i: int) -> None:
            ran.append(i)

        async with app.open_async():
            worker = app.worker(polling_interval=0.2, heartbeat_interval=0.2)
            running = asyncio.create_task(worker.run())
            await asyncio.wait_for(worker.listening.wait(), 10)
            await app.tasks["n"].batch_defer_async(*({"i": i} for i in range(20)))
            await _until(lambda: len(ran) == 20, 20, "the jobs before the restart")

            await asyncio.to_thread(_pg_ctl, server, "restart")

            with psycopg.connect(dsn, autocommit=True) as conn:  # deferred from elsewhere
                conn.execute("INSERT INTO pgqueue_jobs (task_name, args) "
                             "SELECT 'n', jsonb_build_object('i', i) FROM generate_series(20, 39) i")  # fmt: skip
            await _until(lambda: len(ran) == 40, 30, "the jobs after the restart")
            await _until(worker.listening.is_set, 20, "LISTEN to be back")
            worker.stop()
            stats = await asyncio.wait_for(running, 30)
        _pg_ctl(server, "stop")  # the restarted postmaster is not the one the fixture started
        assert sorted(ran) == list(range(40))
        assert stats.succeeded == 40
