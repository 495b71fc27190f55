"""How fast can a drain go with our statements, and how much of that do we reach? (issue 17)

    python tools/drain_ceiling.py [--jobs 20000] [--repeat 3]

Issue 17 asks the App face to drain at >= 0.8x the minimal loop. The bench's
second limit (the minimal loop on ``pgqueue_jobs``) already shows that our
table costs the loop nothing; what it does not show is what our *statements*
cost. The minimal loop locks 100 jobs, runs them and deletes them in one
transaction, with nothing written until the delete. We commit a claim first
(``fetch_jobs``: status 'doing', our worker_id, so that no job is held by an open
transaction while it runs, and a crashed worker's jobs can be found), then
write the outcome (``finish_jobs``: the job is kept, with its status). Each job
is written twice, and neither write is HOT: the status is in the partial
indexes' predicates.

This runs, in one run on one fresh embedded server, each in turn ``--repeat``
times, on a table freshly filled with ``--jobs`` no-op jobs and vacuumed:

* the bench's **minimal loop on our table** (``pgqueue_ref.bench.minimal``), the
  bench's drain limit: 4 connections, 100 jobs per transaction, lock and delete;
* **our statements, bare**: the same 4 connections and 100 jobs, but each round
  is our ``fetch_jobs`` then our ``finish_jobs`` (every job 'succeeded'), sent
  straight through asyncpg: no library code, no job object, no runner. No drain
  that keeps its claims and outcomes as ours do can go faster here;
* the same with ``finish_jobs``' retention on (``delete_statuses = {succeeded}``:
  the outcome is a delete, ``delete_jobs="successful"``);
* the **App face's drain** (``AsyncpgConnector`` with its default pool, the bench's
  concurrency of 16), and the same with ``delete_jobs="successful"``.

Then, on one connection, the wall time per 100 jobs of each statement alone
(medians of 15 rounds): where the difference between the first two comes from.
It prints the medians in jobs/s, each over the minimal loop on our table, with this
process's CPU per job (the client's: the App face's worker runs in it), and checks
after every run that each job ran (or was claimed) exactly once and none is left.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import _rounds as shared
import asyncpg

import pgqueue_ref
from pgqueue_ref.bench.app_api import CONCURRENCY
from pgqueue_ref.bench.minimal import (
    BATCH,
    CLAIM_ON_OUR_TABLE,
    CONNECTIONS,
    DELETE_ON_OUR_TABLE,
    schema_loop,
)
from pgqueue_ref.embedded import EmbeddedPostgres
from pgqueue_ref.jobs import Status
from pgqueue_ref.manager import DeleteJobCondition, Outcome, finish_call
from pgqueue_ref.sql import QUERIES, to_numbered

FINISH, FINISH_NAMES = to_numbered(str(QUERIES["finish_jobs"]))
LIMIT = "minimal loop on our table (lock, run, delete: one transaction)"


def _succeeded(ids: list[int], worker_id: int, *, delete: bool) -> list[Any]:
    """``finish_jobs``' parameters in ``$n`` order, as the worker's flush builds them
    (``finish_call``): every one of these jobs succeeded."""
    outcomes = [Outcome(job_id, Status.SUCCEEDED) for job_id in ids]
    retention = DeleteJobCondition.SUCCESSFUL if delete else DeleteJobCondition.NEVER
    params = finish_call(outcomes, worker_id, retention).params
    return [params[name] for name in FINISH_NAMES]


async def minimal_on_our_table(dsn: str, jobs: int) -> float:
    await shared.fresh_jobs(dsn, "app", jobs)
    ran: list[int] = []
    worker_of = schema_loop().worker
    assert worker_of is not None  # the limits run a worker
    async with worker_of(dsn, ran.append) as worker:
        started = time.perf_counter()
        await worker.drain()
        elapsed = time.perf_counter() - started
    shared.exactly_once(ran, jobs)
    await shared.none_left(dsn)
    return jobs / elapsed


def our_statements(*, delete: bool) -> shared.Measure:
    async def measure(dsn: str, jobs: int) -> float:
        await shared.fresh_jobs(dsn, "app", jobs)
        claimed: list[int] = []
        async with asyncpg.create_pool(dsn, min_size=CONNECTIONS, max_size=CONNECTIONS) as pool:
            worker_id = await pool.fetchval(
                "INSERT INTO pgqueue_workers (name) VALUES ('drain_ceiling') RETURNING id"
            )
            args = shared.claim_args(worker_id, face="app", limit=BATCH)

            async def loop() -> None:
                async with pool.acquire() as conn:
                    while rows := await conn.fetch(shared.FETCH, *args):
                        ids = [row["id"] for row in rows]
                        claimed.extend(ids)
                        await conn.fetch(FINISH, *_succeeded(ids, worker_id, delete=delete))

            started = time.perf_counter()
            await asyncio.gather(*(loop() for _ in range(CONNECTIONS)))
            elapsed = time.perf_counter() - started
        shared.exactly_once(claimed, jobs)
        await shared.none_left(dsn)
        return jobs / elapsed

    return measure


def app_face(*, delete: bool) -> shared.Measure:
    async def measure(dsn: str, jobs: int) -> float:
        await shared.fresh_jobs(dsn, "app", jobs)
        app = pgqueue_ref.App(connector=pgqueue_ref.AsyncpgConnector(dsn=dsn))
        ran: list[int] = []

        @app.task(name="noop")
        async def noop(n: int) -> None:
            ran.append(n)

        options: dict[str, Any] = {"delete_jobs": "successful"} if delete else {}
        async with app.open_async():
            started = time.perf_counter()
            await app.run_worker_async(wait=False, concurrency=CONCURRENCY, **options)
            elapsed = time.perf_counter() - started
        shared.exactly_once(ran, jobs)
        await shared.none_left(dsn)
        return jobs / elapsed

    return measure


async def statement_costs(dsn: str, rounds: int) -> dict[str, float]:
    """Wall µs per 100 jobs of each statement alone, on one connection, taking turns."""
    conn = await asyncpg.connect(dsn)
    worker_id = await conn.fetchval(
        "INSERT INTO pgqueue_workers (name) VALUES ('costs') RETURNING id"
    )
    times: dict[str, list[float]] = {
        "minimal loop: lock 100, delete them, commit": [],
        "our fetch_jobs: claim 100 (commits)": [],
        "our finish_jobs: 100 outcomes (commits)": [],
    }
    names = list(times)
    try:
        for _ in range(rounds):
            await shared.fresh_jobs(dsn, "app", 20 * BATCH)
            lock_and_delete = fetch = finish = 0.0
            for _ in range(10):
                started = time.perf_counter()
                async with conn.transaction():
                    rows = await conn.fetch(CLAIM_ON_OUR_TABLE)
                    await conn.execute(DELETE_ON_OUR_TABLE, [r["id"] for r in rows])
                lock_and_delete += time.perf_counter() - started
                started = time.perf_counter()
                rows = await conn.fetch(
                    shared.FETCH, *shared.claim_args(worker_id, face="app", limit=BATCH)
                )
                fetch += time.perf_counter() - started
                ids = [row["id"] for row in rows]
                started = time.perf_counter()
                await conn.fetch(FINISH, *_succeeded(ids, worker_id, delete=False))
                finish += time.perf_counter() - started
            for name, total in zip(names, (lock_and_delete, fetch, finish), strict=True):
                times[name].append(total / 10 * 1e6)
    finally:
        await conn.close()
    return {name: statistics.median(values) for name, values in times.items()}


async def main(jobs: int, repeat: int) -> None:
    subjects: dict[str, shared.Measure] = {
        LIMIT: minimal_on_our_table,
        "our fetch_jobs + finish_jobs, bare (claim commits, outcome kept)": our_statements(
            delete=False
        ),
        "the same, the outcome a delete (delete_statuses = {succeeded})": our_statements(
            delete=True
        ),
        "App face drain (AsyncpgConnector, its default pool)": app_face(delete=False),
        "App face drain, delete_jobs='successful'": app_face(delete=True),
    }
    with EmbeddedPostgres() as server:  # stopped on the way out
        await schema_loop().setup(server.dsn_url)  # our schema and the minimal loop's trigger
        rates, cpu = await shared.round_robin(subjects, server.dsn_url, jobs, repeat)
        costs = await statement_costs(server.dsn_url, 15)
    print(f"\n{jobs} jobs each, {CONNECTIONS} connections x {BATCH} jobs per claim for the bare")
    print(f"loops, median of {repeat}, in one run:\n")
    shared.print_rates(rates, LIMIT, "the minimal loop on our table", cpu)
    print(f"\nOne connection, wall time per {BATCH} jobs (µs, median of 15 rounds of 10):\n")
    print("| statement | µs |")
    print("| --- | ---: |")
    for name, micros in costs.items():
        print(f"| {name} | {micros:,.0f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    options = parser.parse_args()
    asyncio.run(main(options.jobs, options.repeat))
