"""What a benchmark subject is: a queue library on one driver, seen through five doors.

Every subject answers the same questions, so the runner measures them all with
the same code:

* ``setup(dsn)``: install its schema on a fresh, empty database;
* a *client* (async or blocking) that defers no-op jobs numbered ``n``, one
  by one (``defer_one``) or in one batch (``defer_batch``);
* a *worker* (async only; ``None`` for blocking connectors, which cannot run
  one) that runs those jobs in a separate process: each job calls the hook
  with its number as it starts, which is how the runner checks that every job
  ran exactly once and times defer→start latency;
* ``unfinished(dsn)``: how many jobs the queue still holds undone.

A subject is described once and built by a factory (``app_api``,
``queue_api``, ``minimal_loop``); adding a connector or driver to the
benchmark is one line in :mod:`pgqueue_ref.bench.registry`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

import psycopg

__all__ = ["AsyncClient", "BenchWorker", "JobHook", "Subject", "SyncClient", "count", "execute"]

#: Called by a no-op job, first thing when it starts, with the job's number.
JobHook = Callable[[int], None]


class AsyncClient(Protocol):
    async def defer_one(self, n: int) -> None: ...

    async def defer_batch(self, numbers: Sequence[int]) -> None: ...


class SyncClient(Protocol):
    def defer_one(self, n: int) -> None: ...

    def defer_batch(self, numbers: Sequence[int]) -> None: ...


class BenchWorker(Protocol):
    async def drain(self) -> None:
        """Run the waiting jobs; return once none is left."""

    async def serve(self) -> None:
        """Run jobs as they come (LISTEN), until cancelled."""


@dataclass(frozen=True)
class Subject:
    """One queue library on one driver. Give exactly one of the two clients."""

    name: str
    #: The database driver underneath ("psycopg", "asyncpg"...): drains compare per driver.
    driver: str
    #: Who wrote it: "pgqueue_ref", an anchor ("procrastinate", "pgqueuer"), or "reference".
    family: str
    #: The settings its worker runs with, shown in the table.
    settings: str
    setup: Callable[[str], Awaitable[None]]
    unfinished: Callable[[str], Awaitable[int]]
    async_client: Callable[[str], AbstractAsyncContextManager[AsyncClient]] | None = None
    sync_client: Callable[[str], AbstractContextManager[SyncClient]] | None = None
    worker: Callable[[str, JobHook], AbstractAsyncContextManager[BenchWorker]] | None = None
    #: Builds this subject's twin behind a transaction pooler (:mod:`.pooled`); None: it has none.
    pooled: Callable[[], Subject] | None = None
    #: For a pooled twin: the name of the subject it is the twin of.
    direct: str | None = None

    def __post_init__(self) -> None:
        if (self.async_client is None) == (self.sync_client is None):
            raise ValueError(
                f"subject {self.name!r}: give exactly one of async_client, sync_client"
            )

    @property
    def can_run_worker(self) -> bool:
        return self.worker is not None


async def count(dsn: str, query: str) -> int:
    """The one number a ``SELECT count(*) ...`` returns."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        row = await (await conn.execute(query.encode())).fetchone()
    assert row is not None
    return int(row[0])


async def execute(dsn: str, statements: str) -> None:
    """Run ``statements`` (no parameters), e.g. a schema."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(statements.encode())
