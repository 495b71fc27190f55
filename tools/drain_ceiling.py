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
* the **App face's drain** (``AsyncpgConnector``, the bench's concurrency of 16),
  and the same with ``delete_jobs="successful"``.

Then, on one connection, the wall time per 100 jobs of each statement alone
(medians of 15 rounds): where the difference between the first two comes from.
It prints the medians in jobs/s, each over the minimal loop on our table, and
checks after every run that each job ran (or was claimed) exactly once.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections import Counter
from typing import Any

import asyncpg
from _rounds import Measure, print_rates, round_robin

import pgqueue_ref
from pgqueue_ref.bench.app_api import CONCURRENCY
from pgqueue_ref.bench.minimal import BATCH, CONNECTIONS, schema_loop
from pgqueue_ref.embedded import EmbeddedPostgres
from pgqueue_ref.sql import QUERIES, to_numbered

FETCH, FETCH_NAMES = to_numbered(str(QUERIES["fetch_jobs"]))
FINISH, FINISH_NAMES = to_numbered(str(QUERIES["finish_jobs"]))
FILL = (
    "INSERT INTO pgqueue_jobs (task_name, args) "
    "SELECT 'noop', jsonb_build_object('n', n) FROM generate_series(1, $1) AS n"
)
LIMIT = "minimal loop on our table (lock, run, delete: one transaction)"


async def _fresh(dsn: str, jobs: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("TRUNCATE pgqueue_jobs, pgqueue_workers CASCADE")
        await conn.execute(FILL, jobs)
        await conn.execute("VACUUM ANALYZE pgqueue_jobs")
    finally:
        await conn.close()


async def _left(dsn: str) -> int:
    """Jobs not finished: waiting, or claimed and never given an outcome."""
    conn = await asyncpg.connect(dsn)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM pgqueue_jobs WHERE status IN ('todo', 'doing')"
            )
        )
    finally:
        await conn.close()


def _claim(worker_id: int) -> list[Any]:
    """``fetch_jobs``' parameters, in ``$n`` order: ``BATCH`` App-face jobs of any queue."""
    claim = {
        "face": "app",
        "queues": None,
        "task_names": None,
        "limit": BATCH,
        "worker_id": worker_id,
    }
    return [claim[name] for name in FETCH_NAMES]


def _succeeded(ids: list[int], worker_id: int, *, delete: bool) -> list[Any]:
    """``finish_jobs``' parameters, in ``$n`` order: every one of these jobs succeeded."""
    outcome = {
        "ids": ids,
        "statuses": ["succeeded"] * len(ids),
        "errors": [None] * len(ids),
        "retry_ins": [None] * len(ids),
        "handed_backs": [False] * len(ids),
        "delete_statuses": ["succeeded"] if delete else [],
        "worker_id": worker_id,
    }
    return [outcome[name] for name in FINISH_NAMES]


def _exactly_once(runs: Counter[int], jobs: int) -> None:
    repeated = sum(1 for times in runs.values() if times > 1)
    assert len(runs) == jobs and not repeated, (
        f"{len(runs)} of {jobs} jobs ran, {repeated} more than once"
    )


async def minimal_on_our_table(dsn: str, jobs: int) -> float:
    await _fresh(dsn, jobs)
    runs: Counter[int] = Counter()
    worker_of = schema_loop().worker
    assert worker_of is not None
    async with worker_of(dsn, lambda n: runs.update((n,))) as worker:
        started = time.perf_counter()
        await worker.drain()
        elapsed = time.perf_counter() - started
    _exactly_once(runs, jobs)
    return jobs / elapsed


def our_statements(*, delete: bool) -> Measure:
    async def measure(dsn: str, jobs: int) -> float:
        await _fresh(dsn, jobs)
        runs: Counter[str] = Counter()  # by the args' text, one per job
        async with asyncpg.create_pool(dsn, min_size=CONNECTIONS, max_size=CONNECTIONS) as pool:
            worker_id = await pool.fetchval(
                "INSERT INTO pgqueue_workers (name) VALUES ('drain_ceiling') RETURNING id"
            )
            claim_args = _claim(worker_id)

            async def loop() -> None:
                async with pool.acquire() as conn:
                    while rows := await conn.fetch(FETCH, *claim_args):
                        ids = [row["id"] for row in rows]
                        runs.update(row["args"] for row in rows)
                        await conn.fetch(FINISH, *_succeeded(ids, worker_id, delete=delete))

            started = time.perf_counter()
            await asyncio.gather(*(loop() for _ in range(CONNECTIONS)))
            elapsed = time.perf_counter() - started
        assert await _left(dsn) == 0
        assert len(runs) == jobs and max(runs.values()) == 1, "a job was claimed twice, or never"
        return jobs / elapsed

    return measure


def app_face(*, delete: bool) -> Measure:
    async def measure(dsn: str, jobs: int) -> float:
        await _fresh(dsn, jobs)
        app = pgqueue_ref.App(connector=pgqueue_ref.AsyncpgConnector(dsn=dsn))
        runs: Counter[int] = Counter()

        @app.task(name="noop")
        async def noop(n: int) -> None:
            runs[n] += 1

        options: dict[str, Any] = {"delete_jobs": "successful"} if delete else {}
        async with app.open_async():
            started = time.perf_counter()
            await app.run_worker_async(wait=False, concurrency=CONCURRENCY, **options)
            elapsed = time.perf_counter() - started
        _exactly_once(runs, jobs)
        assert await _left(dsn) == 0
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
            await _fresh(dsn, 20 * BATCH)
            lock_and_delete = fetch = finish = 0.0
            for _ in range(10):
                started = time.perf_counter()
                async with conn.transaction():
                    rows = await conn.fetch(
                        "SELECT id, args FROM pgqueue_jobs WHERE status = 'todo' AND face = 'app' "
                        f"ORDER BY priority DESC, id LIMIT {BATCH} FOR UPDATE SKIP LOCKED"
                    )
                    await conn.execute(
                        "DELETE FROM pgqueue_jobs WHERE id = ANY($1::bigint[])",
                        [r["id"] for r in rows],
                    )
                lock_and_delete += time.perf_counter() - started
                started = time.perf_counter()
                rows = await conn.fetch(FETCH, *_claim(worker_id))
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
    subjects: dict[str, Measure] = {
        LIMIT: minimal_on_our_table,
        "our fetch_jobs + finish_jobs, bare (claim commits, outcome kept)": our_statements(
            delete=False
        ),
        "the same, the outcome a delete (delete_statuses = {succeeded})": our_statements(
            delete=True
        ),
        "App face drain (AsyncpgConnector)": app_face(delete=False),
        "App face drain, delete_jobs='successful'": app_face(delete=True),
    }
    with EmbeddedPostgres() as server:  # stopped on the way out
        await schema_loop().setup(server.dsn_url)  # our schema and the minimal loop's trigger
        rates = await round_robin(subjects, server.dsn_url, jobs, repeat)
        costs = await statement_costs(server.dsn_url, 15)
    print(f"\n{jobs} jobs each, {CONNECTIONS} connections x {BATCH} jobs per claim for the bare")
    print(f"loops, median of {repeat}, in one run:\n")
    print_rates(rates, LIMIT, "the minimal loop on our table")
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
