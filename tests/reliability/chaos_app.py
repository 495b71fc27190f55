"""The app that reliability tests and tools/chaos.py run in worker processes.

Each run of ``record`` inserts a row into ``runs`` (job id, pid, start and end
time), so a test can check afterwards that every job ran exactly once, and
that no two runs of one job overlapped in time.
"""

from __future__ import annotations

import asyncio
import os

import pgqueue_ref
from pgqueue_ref.connectors import require_async
from pgqueue_ref.exceptions import ConnectorException

RUNS_TABLE = """
CREATE TABLE IF NOT EXISTS runs (
    job_id   bigint NOT NULL,
    pid      integer NOT NULL,
    started  timestamptz NOT NULL,
    finished timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""

# Worker processes get the DSN in their environment; importing RUNS_TABLE needs none.
app = pgqueue_ref.App(
    connector=pgqueue_ref.PsycopgConnector(conninfo=os.environ.get("PGQUEUE_REF_DSN", ""))
)


# Like any task that writes to the database, it retries when its own
# connection is killed under it (which tools/chaos.py does on purpose).
@app.task(
    name="record",
    pass_context=True,
    retry=pgqueue_ref.RetryStrategy(
        max_retries=50, wait=0.05, retry_exceptions=(ConnectorException,)
    ),
)
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
