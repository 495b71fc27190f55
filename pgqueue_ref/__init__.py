"""pgqueue_ref: a PostgreSQL job queue for Python, written to be read.

Two faces over one schema and one worker engine:

* the App face (procrastinate's API): :class:`App`, ``@app.task``, ``defer``;
* the Queue face (PgQueuer's API): ``pgqueue_ref.db`` drivers, ``Queries``, ``PgQueuer``.

Layers, top to bottom: faces (``app``, ``tasks``; ``queries``, ``queuer``) →
engine (``worker``) → queries (``manager``, ``sql/*.sql``) → the driver layer
(:mod:`pgqueue_ref.connectors`: the contract, one module per driver).

Only psycopg 3 is needed to import this package. ``AiopgConnector``,
``AsyncpgConnector`` and ``Psycopg2Connector`` import their driver when first
used, and say which extra to install when it is missing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import exceptions
from .app import App
from .connectors import AsyncConnector, BaseConnector, SyncConnector, module_getattr
from .connectors.psycopg import PsycopgConnector
from .connectors.psycopg_sync import SyncPsycopgConnector
from .jobs import Job, Status
from .queries import Queries
from .queuer import PgQueuer
from .retry import RetryStrategy
from .settings import Channel, DBSettings, QueueExecutionMode
from .tasks import JobContext, Task
from .worker import Worker, WorkerStats

if TYPE_CHECKING:
    from .connectors.aiopg import AiopgConnector
    from .connectors.asyncpg import AsyncpgConnector
    from .connectors.psycopg2 import Psycopg2Connector

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
    "Queries",
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


_optional = module_getattr(
    __name__, frozenset({"AiopgConnector", "AsyncpgConnector", "Psycopg2Connector"})
)


def __getattr__(name: str) -> Any:
    # `pgqueue_ref.embedded` without importing it (and testing.postgresql) up front:
    # only the kit's entry points and notebooks need the throwaway server.
    if name == "embedded":
        return importlib.import_module(f"{__name__}.embedded")
    return _optional(name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
