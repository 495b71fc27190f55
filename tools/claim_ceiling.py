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
from _rounds import Measure, print_rates, round_robin

import pgqueue_ref
from pgqueue_ref import PgQueuer, QueueExecutionMode
from pgqueue_ref.bench.app_api import CONCURRENCY
from pgqueue_ref.embedded import EmbeddedPostgres
from pgqueue_ref.sql import QUERIES, SCHEMA, to_numbered

FETCH, FETCH_NAMES = to_numbered(str(QUERIES["fetch_jobs"]))
FILL = (
    "INSERT INTO pgqueue_jobs (face, queue, task_name, args) "
    "SELECT $1, 'default', 'noop', '{\"n\": 1}'::jsonb FROM generate_series(1, $2)"
)


async def _fresh(dsn: str, face: str, jobs: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("TRUNCATE pgqueue_jobs")
        await conn.execute(FILL, face, jobs)
        await conn.execute("VACUUM ANALYZE pgqueue_jobs")
    finally:
        await conn.close()


async def app_drain(dsn: str, jobs: int) -> float:
    await _fresh(dsn, "app", jobs)
    app = pgqueue_ref.App(connector=pgqueue_ref.AsyncpgConnector(dsn=dsn, min_size=2, max_size=4))

    @app.task(name="noop")
    async def noop(n: int) -> None:
        pass

    async with app.open_async():
        started = time.perf_counter()
        stats = await app.run_worker_async(wait=False, concurrency=CONCURRENCY)
        elapsed = time.perf_counter() - started
    assert stats.succeeded == jobs, stats
    return jobs / elapsed


async def queue_drain(dsn: str, jobs: int) -> float:
    await _fresh(dsn, "queue", jobs)
    async with asyncpg.create_pool(dsn, min_size=2, max_size=4) as pool:
        pgq = PgQueuer.from_asyncpg_pool(pool)

        @pgq.entrypoint("noop")
        async def noop(job: Any) -> None:
            pass

        started = time.perf_counter()
        stats = await pgq.run(mode=QueueExecutionMode.drain)
        elapsed = time.perf_counter() - started
    assert stats.succeeded == jobs, stats
    return jobs / elapsed


def claims_alone(limit: int, connections: int) -> Measure:
    async def measure(dsn: str, jobs: int) -> float:
        await _fresh(dsn, "queue", jobs)
        conns = [await asyncpg.connect(dsn) for _ in range(connections)]
        try:
            worker_id = await conns[0].fetchval(
                "INSERT INTO pgqueue_workers (name) VALUES ('claim_ceiling') RETURNING id"
            )
            values = {
                "face": "queue",
                "queues": None,
                "task_names": ["noop"],
                "limit": limit,
                "worker_id": worker_id,
            }
            args = [values[name] for name in FETCH_NAMES]
            claimed = 0

            async def loop(conn: Any) -> None:
                nonlocal claimed
                while rows := await conn.fetch(FETCH, *args):
                    claimed += len(rows)

            started = time.perf_counter()
            await asyncio.gather(*(loop(conn) for conn in conns))
            elapsed = time.perf_counter() - started
            await conns[0].execute("DELETE FROM pgqueue_workers WHERE id = $1", worker_id)
        finally:
            for conn in conns:
                await conn.close()
        assert claimed == jobs, claimed
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
        rates = await round_robin(subjects, server.dsn_url, jobs, repeat)
    print(f"\n{jobs} jobs each, median of {repeat}, in one run:\n")
    print_rates(rates, "App face drain (AsyncpgConnector)", "the App face's drain")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=30_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch", type=int, default=10)
    options = parser.parse_args()
    asyncio.run(main(options.jobs, options.repeat, options.batch))
