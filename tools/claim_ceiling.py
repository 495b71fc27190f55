"""How fast can a drain go when every round trip claims ``batch_size`` jobs? (issue 16)

    python tools/claim_ceiling.py [--jobs 30000] [--repeat 3] [--batch 10]

The Queue face keeps PgQueuer's rule: one claim takes at most ``batch_size`` jobs
(10 by default). The App face claims adaptively, hundreds at a time. This measures,
in one run on one fresh embedded server, each in turn ``--repeat`` times:

* the App face's drain (``AsyncpgConnector``, the bench's concurrency of 16);
* the Queue face's drain (``PgQueuer.from_asyncpg_pool``, PgQueuer's defaults);
* **claims alone**: our ``fetch_jobs`` statement with ``limit = batch`` sent back to
  back on 1, 2 and 4 connections, rows decoded and dropped: no job run, no outcome
  recorded, no heartbeat. No queue that claims ``batch`` jobs per round trip on
  this machine can drain faster than this;
* claims alone with ``limit = 800``, about what the App face's claims take.

Both drains run on pools of 2 to 4 connections: the bench's Queue-face pool (the
bench's App-face connector keeps asyncpg's default pool size). It prints the
medians in jobs/s, each over the App face's drain. Every drain and every claim run
starts on a freshly filled, vacuumed table.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import asyncpg
from _rounds import (
    FETCH,
    Measure,
    claim_args,
    exactly_once,
    fresh_jobs,
    none_left,
    print_rates,
    round_robin,
)

import pgqueue_ref
from pgqueue_ref import PgQueuer, QueueExecutionMode
from pgqueue_ref.bench.app_api import CONCURRENCY
from pgqueue_ref.embedded import EmbeddedPostgres
from pgqueue_ref.sql import SCHEMA


async def app_drain(dsn: str, jobs: int) -> float:
    await fresh_jobs(dsn, "app", jobs)
    app = pgqueue_ref.App(connector=pgqueue_ref.AsyncpgConnector(dsn=dsn, min_size=2, max_size=4))
    ran: list[int] = []

    @app.task(name="noop")
    async def noop(n: int) -> None:
        ran.append(n)

    async with app.open_async():
        started = time.perf_counter()
        await app.run_worker_async(wait=False, concurrency=CONCURRENCY)
        elapsed = time.perf_counter() - started
    exactly_once(ran, jobs)
    await none_left(dsn)
    return jobs / elapsed


async def queue_drain(dsn: str, jobs: int) -> float:
    await fresh_jobs(dsn, "queue", jobs)
    ran: list[int] = []
    async with asyncpg.create_pool(dsn, min_size=2, max_size=4) as pool:
        pgq = PgQueuer.from_asyncpg_pool(pool)

        @pgq.entrypoint("noop")
        async def noop(job: Any) -> None:
            ran.append(job.id)

        started = time.perf_counter()
        await pgq.run(mode=QueueExecutionMode.drain)
        elapsed = time.perf_counter() - started
    exactly_once(ran, jobs)
    await none_left(dsn)
    return jobs / elapsed


def claims_alone(limit: int, connections: int) -> Measure:
    async def measure(dsn: str, jobs: int) -> float:
        await fresh_jobs(dsn, "queue", jobs)
        conns = [await asyncpg.connect(dsn) for _ in range(connections)]
        try:
            worker_id = await conns[0].fetchval(
                "INSERT INTO pgqueue_workers (name) VALUES ('claim_ceiling') RETURNING id"
            )
            args = claim_args(worker_id, face="queue", limit=limit, task_names=["noop"])
            claimed: list[int] = []

            async def loop(conn: Any) -> None:
                while rows := await conn.fetch(FETCH, *args):
                    claimed.extend(row["id"] for row in rows)

            started = time.perf_counter()
            await asyncio.gather(*(loop(conn) for conn in conns))
            elapsed = time.perf_counter() - started
        finally:
            for conn in conns:
                await conn.close()
        exactly_once(claimed, jobs)
        return jobs / elapsed

    return measure


async def main(jobs: int, repeat: int, batch: int) -> None:
    subjects: dict[str, Measure] = {
        "App face drain (AsyncpgConnector)": app_drain,
        f"Queue face drain (AsyncpgPoolDriver, batch_size={batch})": queue_drain,
        f"claims alone, {batch} per round trip, 1 connection": claims_alone(batch, 1),
        f"claims alone, {batch} per round trip, 2 connections": claims_alone(batch, 2),
        f"claims alone, {batch} per round trip, 4 connections": claims_alone(batch, 4),
        "claims alone, 800 per round trip, 1 connection": claims_alone(800, 1),
    }
    if batch != 10:
        print("note: the Queue face drain runs with PgQueuer's default batch_size=10")
    with EmbeddedPostgres() as server:  # stopped on the way out
        conn = await asyncpg.connect(server.dsn_url)
        await conn.execute(SCHEMA)
        await conn.close()
        rates, _ = await round_robin(subjects, server.dsn_url, jobs, repeat)
    print(f"\n{jobs} jobs each, median of {repeat}, in one run:\n")
    print_rates(rates, "App face drain (AsyncpgConnector)", "the App face's drain")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=30_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch", type=int, default=10)
    options = parser.parse_args()
    asyncio.run(main(options.jobs, options.repeat, options.batch))
