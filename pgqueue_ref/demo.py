"""``python -m pgqueue_ref demo``: the whole life of a queue in a few seconds.

Starts a throwaway PostgreSQL (unless PGQUEUE_REF_DSN or the libpq ``PG*``
variables name one), applies the schema in a fresh database, defers a few
hundred jobs one by one and in a batch, runs a worker until they are done,
and prints what happened.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from typing import TextIO

from . import embedded
from ._table import format_table
from .app import App
from .connectors.psycopg import PsycopgConnector
from .worker import Worker

__all__ = ["run_demo"]


def _build_app(dsn: str) -> App:
    app = App(connector=PsycopgConnector(conninfo=dsn))

    @app.task(name="demo.resize_image", queue="images")
    async def resize_image(image_id: int, width: int) -> None:
        await asyncio.sleep(random.uniform(0, 0.002))  # pretend to work

    @app.task(name="demo.send_email", queue="emails", retry=2)
    def send_email(to: str, attempt_fails: bool) -> None:
        if attempt_fails and random.random() < 0.5:
            raise ConnectionError(f"SMTP server hung up while sending to {to}")

    @app.task(name="demo.charge_card", queue="payments")
    async def charge_card(order_id: int) -> None:
        if order_id % 25 == 0:
            raise ValueError(f"card declined for order {order_id}")

    return app


async def _demo(dsn: str, out: TextIO, jobs: int) -> None:
    app = _build_app(dsn)
    tasks = app.tasks
    async with app.open_async():
        await app.schema_manager.apply_schema_async()

        started = time.perf_counter()
        one_by_one = jobs // 3
        for n in range(one_by_one):
            await tasks["demo.charge_card"].defer_async(order_id=n)
        deferred_single = time.perf_counter()
        batch = [{"image_id": n, "width": 640} for n in range(jobs - one_by_one - 20)]
        await tasks["demo.resize_image"].batch_defer_async(*batch)
        await tasks["demo.send_email"].batch_defer_async(
            *({"to": f"user{n}@example.com", "attempt_fails": n % 2 == 0} for n in range(20))
        )
        deferred_all = time.perf_counter()
        print(
            f"deferred {one_by_one} jobs one by one in {deferred_single - started:.2f} s "
            f"and {jobs - one_by_one} in two batches in {deferred_all - deferred_single:.3f} s",
            file=out,
        )

        worker = app.worker(wait=False, concurrency=8)
        progress = asyncio.create_task(_show_progress(worker, jobs, out))
        stats = await worker.run()
        progress.cancel()
        finished = time.perf_counter()
        print(
            f"\rworker: {stats.succeeded} succeeded, {stats.failed} failed, {stats.retried} retried, "
            f"in {finished - deferred_all:.2f} s{' ' * 20}",
            file=out,
        )

        counts = await app.job_manager.status_counts_async()
        print(
            "\n"
            + format_table(
                ["queue", "status", "jobs"], [[r["queue"], r["status"], r["count"]] for r in counts]
            ),
            file=out,
        )
        failed = [
            r
            for r in await app.job_manager.list_job_rows_async(limit=jobs)
            if r["status"] == "failed"
        ]
        if failed:
            print("\nfailed jobs keep their error, e.g.:", file=out)
            for row in failed[:3]:
                print(f"  job {row['id']} ({row['task_name']}): {row['error']}", file=out)


async def _show_progress(worker: Worker, total: int, out: TextIO) -> None:
    while True:
        done = worker.stats.finished
        print(f"\rrunning: {done}/{total} jobs finished", end="", file=out, flush=True)
        await asyncio.sleep(0.1)


def run_demo(jobs: int = 300, out: TextIO = sys.stdout) -> None:
    """Run the demo on a fresh database of the default server."""
    print("starting PostgreSQL (or using PGQUEUE_REF_DSN) ...", file=out, flush=True)
    started = time.perf_counter()
    dsn = embedded.scratch_database("demo")
    print(f"database ready in {time.perf_counter() - started:.1f} s", file=out)
    try:
        asyncio.run(_demo(dsn, out, jobs))
    finally:
        embedded.stop_default_server()
