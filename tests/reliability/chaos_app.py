"""The app that reliability tests and tools/chaos.py run in worker processes.

Each run of ``record`` inserts a row into ``runs`` (its run id, job id, pid,
start time, and the server's time of the insert), so a test can check
afterwards that every job ran exactly once, and that no two runs of one job
overlapped in time.

A run cancelled under a worker (a fence, or a shutdown that ran out of time)
writes nothing to the database, and a run cut off by a partition cannot.
So with ``PGQUEUE_REF_CHAOS_ATTEMPTS`` set to a folder, every run also appends
one line to ``<folder>/<pid>.tsv`` as it ends, however it ends: run id, job id,
pid, start, end (this machine's clock, which is also the server's) and
``ok``, ``error`` or ``cancelled``. tools/chaos.py checks those intervals.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from datetime import UTC, datetime
from pathlib import Path

import pgqueue_ref
from pgqueue_ref.connectors import require_async
from pgqueue_ref.exceptions import ConnectorException

RUNS_TABLE = """
CREATE TABLE IF NOT EXISTS runs (
    run_id   text,
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
ATTEMPTS = os.environ.get("PGQUEUE_REF_CHAOS_ATTEMPTS")


def _note(run_id: str, job_id: int, started: datetime, how: str) -> None:
    if ATTEMPTS:
        ended = datetime.now(UTC)
        line = f"{run_id}\t{job_id}\t{os.getpid()}\t{started.isoformat()}\t{ended.isoformat()}\t{how}\n"
        with (Path(ATTEMPTS) / f"{os.getpid()}.tsv").open("a") as log:
            log.write(line)


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
    run_id, started, how = secrets.token_hex(8), datetime.now(UTC), "error"
    try:
        if seconds:
            await asyncio.sleep(seconds)
        await connector.execute_async(
            "INSERT INTO runs (run_id, job_id, pid, started) "
            "VALUES (%(run_id)s, %(job_id)s, %(pid)s, %(started)s)",
            {"run_id": run_id, "job_id": context.job.id, "pid": os.getpid(), "started": started},
        )
        how = "ok"
    except asyncio.CancelledError:
        how = "cancelled"
        raise
    finally:
        _note(run_id, context.job.id, started, how)
