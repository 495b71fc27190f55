"""The app that reliability tests and tools/chaos.py run in worker processes.

Each run of ``record`` inserts a row into ``runs`` (job id, pid, start and end
time), so a test can check afterwards that every job ran exactly once, and
that no two runs of one job overlapped in time.
"""

from __future__ import annotations

import asyncio
import os

import pgqueue_ref
from pgqueue_ref.connector import require_async

app = pgqueue_ref.App(
    connector=pgqueue_ref.PsycopgConnector(conninfo=os.environ["PGQUEUE_REF_DSN"])
)


@app.task(name="record", pass_context=True)
async def record(context: pgqueue_ref.JobContext, seconds: float = 0.0) -> None:
    connector = require_async(app.connector)
    started = await connector.fetch_one_async("SELECT clock_timestamp() AS now")
    if seconds:
        await asyncio.sleep(seconds)
    await connector.execute_async(
        "INSERT INTO runs (job_id, pid, started) VALUES (%(job_id)s, %(pid)s, %(started)s)",
        {
            "job_id": context.job.id,
            "pid": os.getpid(),
            "started": started["now"] if started else None,
        },
    )
