"""The conformance fixture: every connector and driver, one line each.

Behaviour shared by connectors is tested once, in this folder, on the
``subject`` fixture below; each connector's own quirks live in its own test
file. A new connector or driver is one new module plus one line in
:data:`CONNECTORS`.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from pgqueue_ref import App, AsyncConnector, AsyncpgConnector, BaseConnector, PsycopgConnector

from . import queue_drivers

# What an async factory returns: the connector, and how to clean up after it.
Made = tuple[BaseConnector, Callable[[], Awaitable[None]]]

# name -> factory(dsn) of an unopened connector, or an async factory of (connector, cleanup)
# for drivers that wrap a connection the factory opens.
CONNECTORS: dict[str, Callable[[str], BaseConnector | Awaitable[Made]]] = {
    "PsycopgConnector": lambda dsn: PsycopgConnector(conninfo=dsn),
    "AsyncpgConnector": lambda dsn: AsyncpgConnector(dsn=dsn),
    "AsyncpgDriver": queue_drivers.asyncpg_driver,
    "AsyncpgPoolDriver": queue_drivers.asyncpg_pool_driver,
    "PsycopgDriver": queue_drivers.psycopg_driver,
    "SyncPsycopgDriver": queue_drivers.sync_psycopg_driver,
    "PsycopgPoolDriver": queue_drivers.psycopg_pool_driver,
}


@dataclass
class Subject:
    """An app opened on one connector, with each operation callable from async
    tests whatever the connector's kind: blocking connectors run in a thread."""

    name: str
    connector: BaseConnector
    app: App

    @property
    def is_async(self) -> bool:
        return isinstance(self.connector, AsyncConnector)

    async def call(
        self,
        method: Callable[..., Any],
        async_method: Callable[..., Any],
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        if self.is_async:
            return await async_method(*args, **kwargs)
        return await asyncio.to_thread(method, *args, **kwargs)

    async def defer_job(
        self, task_name: str, options: dict[str, Any] | None = None, **task_kwargs: Any
    ) -> int:
        deferrer = self.app.configure_task(task_name, **(options or {}))
        result: int = await self.call(deferrer.defer, deferrer.defer_async, **task_kwargs)
        return result

    async def batch_defer(
        self, task_name: str, *task_kwargs: dict[str, Any], options: dict[str, Any] | None = None
    ) -> list[int]:
        deferrer = self.app.configure_task(task_name, **(options or {}))
        result: list[int] = await self.call(
            deferrer.batch_defer, deferrer.batch_defer_async, *task_kwargs
        )
        return result

    async def list_jobs(self) -> list[dict[str, Any]]:
        manager = self.app.job_manager
        result: list[dict[str, Any]] = await self.call(manager.list_jobs, manager.list_jobs_async)
        return result


@pytest.fixture(params=sorted(CONNECTORS))
async def subject(request: pytest.FixtureRequest, dsn: str) -> AsyncIterator[Subject]:
    made = CONNECTORS[request.param](dsn)
    connector, cleanup = await made if inspect.isawaitable(made) else (made, None)
    app = App(connector=connector)
    if isinstance(connector, AsyncConnector):
        await connector.open_async()
    else:
        await asyncio.to_thread(connector.open)
    try:
        yield Subject(request.param, connector, app)
    finally:
        if isinstance(connector, AsyncConnector):
            await connector.close_async()
        else:
            await asyncio.to_thread(connector.close)
        if cleanup is not None:
            await cleanup()
