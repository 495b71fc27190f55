"""pgqueue_ref: a PostgreSQL job queue for Python, written to be read.

Two faces over one schema and one worker engine:

* the App face (procrastinate's API): :class:`App`, ``@app.task``, ``defer``;
* the Queue face (PgQueuer's API): ``pgqueue_ref.db`` drivers, ``Queries``, ``PgQueuer``.

Layers, top to bottom: faces (``app``, ``tasks``) → engine (``worker``) →
queries (``manager``, ``sql/*.sql``) → one module per driver (``*_connector``).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from . import exceptions
from .aiopg_connector import AiopgConnector
from .app import App
from .asyncpg_connector import AsyncpgConnector
from .connector import AsyncConnector, BaseConnector, SyncConnector
from .jobs import Job, Status
from .psycopg2_connector import Psycopg2Connector
from .psycopg_connector import PsycopgConnector
from .queuer import PgQueuer
from .retry import RetryStrategy
from .settings import Channel, DBSettings, QueueExecutionMode
from .sync_psycopg_connector import SyncPsycopgConnector
from .tasks import JobContext, Task
from .worker import Worker, WorkerStats

__all__ = [
    "AiopgConnector",
    "App",
    "AsyncConnector",
    "AsyncpgConnector",
    "BaseConnector",
    "Channel",
    "DBSettings",
    "Job",
    "JobContext",
    "PgQueuer",
    "Psycopg2Connector",
    "PsycopgConnector",
    "QueueExecutionMode",
    "RetryStrategy",
    "Status",
    "SyncConnector",
    "SyncPsycopgConnector",
    "Task",
    "Worker",
    "WorkerStats",
    "exceptions",
]


def __getattr__(name: str) -> ModuleType:
    # `pgqueue_ref.embedded` without importing it (and testing.postgresql) up front:
    # only the kit's entry points and notebooks need the throwaway server.
    if name == "embedded":
        return importlib.import_module(f"{__name__}.embedded")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
