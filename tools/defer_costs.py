"""Where the time of a one-job defer goes, side by side with the minimal loop.

    python tools/defer_costs.py [--rounds 12] [--per-round 250]

On a fresh database of the embedded server (or PGQUEUE_REF_DSN's), over
asyncpg, two tables of figures:

1. Wall time per statement, for statements sent in turn in the same rounds
   (so the machine's load touches them alike): the minimal loop's insert,
   the producers scenario's two limits with no NOTIFY (a bare INSERT into a
   two-column table, and a plain one into ``pgqueue_jobs``), pgqueue_ref's
   ``defer_job`` without its wake-up check (``pgqueue_wake``), and as sent. The
   differences are the server's and the protocol's: the second and third differ by
   our table, the third and fourth by our statement, the last two by the check.
2. Client CPU per defer (``time.process_time``, which other processes disturb
   far less than wall time), layer by layer, from a bare ``conn.fetch`` of
   ``defer_job`` up to ``task.defer_async()``. The differences are our layers.

Medians over the rounds. docs/benchmarks.md quotes a run of it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

import pgqueue_ref
from pgqueue_ref.bench.minimal import INSERT_ONE
from pgqueue_ref.bench.minimal import SCHEMA as MINIMAL_SCHEMA
from pgqueue_ref.bench.producers import BARE_INSERT, BARE_SCHEMA, PLAIN_INSERT
from pgqueue_ref.embedded import scratch_database
from pgqueue_ref.jobs import Face
from pgqueue_ref.manager import defer_call
from pgqueue_ref.sql import QUERIES, to_numbered

Step = Callable[[int], Awaitable[Any]]

WITHOUT_WAKE = """INSERT INTO pgqueue_jobs
    (face, queue, task_name, args, payload, priority, lock, queueing_lock, scheduled_at)
VALUES ($1::text, $2::text, $3::text, $4::text::jsonb, $5::bytea, $6::integer, $7::text,
        $8::text, coalesce($9::timestamptz, now() + make_interval(secs => $10::float8)))
RETURNING id"""


async def rounds(
    steps: dict[str, Step], count: int, per_round: int, clock: Any
) -> dict[str, float]:
    """Median µs per call of each step, the steps taking turns round after round."""
    for step in steps.values():  # warm up: prepared statements, pools
        for n in range(20):
            await step(n)
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(count):
        for name, step in steps.items():
            started = clock()
            for n in range(per_round):
                await step(n)
            times[name].append((clock() - started) / per_round * 1e6)
    return {name: statistics.median(values) for name, values in times.items()}


async def main(count: int, per_round: int) -> None:
    dsn = scratch_database("costs")
    app = pgqueue_ref.App(connector=pgqueue_ref.AsyncpgConnector(dsn=dsn))
    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        await app.connector.execute_async(MINIMAL_SCHEMA + BARE_SCHEMA)

        @app.task(name="noop")
        async def noop(n: int) -> None: ...

        conns = [await asyncpg.connect(dsn) for _ in range(5)]
        deferrer = noop.configure()
        params = defer_call(Face.APP, [deferrer.job_spec({"n": 0})]).params  # what is sent
        defer_job, names = to_numbered(QUERIES["defer_job"].sql)
        values = [params[name] for name in names]

        def args(n: int) -> str:
            return json.dumps({"n": n})

        wall = await rounds(
            {
                "minimal loop: INSERT (its trigger notifies)": lambda n: conns[0].execute(
                    INSERT_ONE, args(n)
                ),
                "bare INSERT into a two-column table, no NOTIFY": lambda n: conns[3].fetch(
                    BARE_INSERT, args(n)
                ),
                "plain INSERT into pgqueue_jobs, no NOTIFY": lambda n: conns[4].fetch(
                    PLAIN_INSERT, args(n)
                ),
                "defer_job without pgqueue_wake": lambda n: conns[2].fetch(WITHOUT_WAKE, *values),
                "defer_job, as sent": lambda n: conns[1].fetch(defer_job, *values),
            },
            count,
            per_round,
            time.perf_counter,
        )
        cpu = await rounds(
            {
                "asyncpg conn.fetch(defer_job)": lambda n: conns[1].fetch(defer_job, *values),
                "+ connector (dispatch, errors, kept connection)": lambda n: (
                    app.connector.fetch_all_async(QUERIES["defer_job"].sql, params)
                ),
                "+ JobManager.defer_async": lambda n: app.job_manager.defer_async(
                    Face.APP, [deferrer.job_spec({"n": n})]
                ),
                "+ task.defer_async (the App face)": lambda n: noop.defer_async(n=n),
            },
            count,
            per_round,
            time.process_time,
        )
        for conn in conns:
            await conn.close()
    for title, figures in (("wall time per statement", wall), ("client CPU per defer", cpu)):
        print(f"\n{title} (µs, median of {count} rounds of {per_round})")
        for name, value in figures.items():
            print(f"  {value:7.1f}  {name}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--per-round", type=int, default=250)
    options = parser.parse_args()
    asyncio.run(main(options.rounds, options.per_round))
