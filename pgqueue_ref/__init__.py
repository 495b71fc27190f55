"""pgqueue_ref: a PostgreSQL job queue for Python, written to be read.

Two faces over one schema and one worker engine:

* the App face (procrastinate's API): :class:`App`, ``@app.task``, ``defer``;
* the Queue face (PgQueuer's API): ``pgqueue_ref.db`` drivers, ``Queries``, ``PgQueuer``.

Layers, top to bottom: faces (``app``, ``tasks``) → engine (``worker``) →
queries (``manager``, ``sql/*.sql``) → one module per driver (``*_connector``).
"""

from __future__ import annotations

from . import exceptions
from .app import App
from .asyncpg_connector import AsyncpgConnector
from .connector import AsyncConnector, BaseConnector, SyncConnector
from .jobs import Job, Status
from .psycopg_connector import PsycopgConnector
from .queuer import PgQueuer
from .retry import RetryStrategy
from .settings import Channel, DBSettings, QueueExecutionMode
from .tasks import JobContext, Task
from .worker import Worker, WorkerStats

__all__ = [
    "App",
    "AsyncConnector",
    "AsyncpgConnector",
    "BaseConnector",
    "Channel",
    "DBSettings",
    "Job",
    "JobContext",
    "PgQueuer",
    "PsycopgConnector",
    "QueueExecutionMode",
    "RetryStrategy",
    "Status",
    "SyncConnector",
    "Task",
    "Worker",
    "WorkerStats",
    "exceptions",
]
