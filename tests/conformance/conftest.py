"""The conformance fixture: every connector and driver, one line each, in two topologies.

Behaviour shared by connectors is tested once, in this folder, on the
``subject`` fixture below; each connector's own quirks live in its own test
file. Every test runs on every connector twice: ``direct`` to the server, and
``pgbouncer``, its statements through a real PgBouncer in transaction mode (the
``pgbouncer`` fixture), built with the one setting its driver needs there and,
when async, ``listen_dsn=`` the server itself (see :class:`Route`). A new connector or driver is one new module plus one line in
:data:`CONNECTORS` (and one in :data:`EXTERNAL_CONNECTIONS` if it defers on
the caller's own connection, or in :data:`WRAPPED_CONNECTIONS` if it is a
Queue-face driver over one connection of the caller's).

The suite's results are also the table of what each connector supports,
``docs/connectors.md``: see :mod:`.support_table`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, NoReturn

import psycopg
import pytest
import sqlalchemy
from psycopg.conninfo import conninfo_to_dict

from pgqueue_ref import (
    AiopgConnector,
    App,
    AsyncConnector,
    AsyncpgConnector,
    BaseConnector,
    Psycopg2Connector,
    PsycopgConnector,
    SyncPsycopgConnector,
)
from pgqueue_ref.contrib.sqlalchemy import SQLAlchemyPsycopg2Connector
from pgqueue_ref.db import AsyncpgDriver, PsycopgDriver, SyncPsycopgDriver
from pgqueue_ref.pooler import PgBouncer

from . import queue_drivers, support_table
from .queue_drivers import Made, Route

# name -> factory(route) of an unopened connector, or an async factory of (connector,
# cleanup) for drivers that wrap a connection the factory opens.
CONNECTORS: dict[str, Callable[[Route], BaseConnector | Awaitable[Made]]] = {
    "PsycopgConnector": lambda r: PsycopgConnector(
        conninfo=r.dsn, kwargs=r.psycopg, listen_dsn=r.listen_dsn
    ),
    "AsyncpgConnector": lambda r: AsyncpgConnector(dsn=r.dsn, listen_dsn=r.listen_dsn, **r.asyncpg),
    "AiopgConnector": lambda r: AiopgConnector(dsn=r.dsn, listen_dsn=r.listen_dsn),
    "SyncPsycopgConnector": lambda r: SyncPsycopgConnector(conninfo=r.dsn, kwargs=r.psycopg),
    "Psycopg2Connector": lambda r: Psycopg2Connector(dsn=r.dsn),  # psycopg2 never prepares
    "SQLAlchemyPsycopg2Connector": lambda r: SQLAlchemyPsycopg2Connector(dsn=r.dsn),
    "AsyncpgDriver": queue_drivers.asyncpg_driver,
    "AsyncpgPoolDriver": queue_drivers.asyncpg_pool_driver,
    "PsycopgDriver": queue_drivers.psycopg_driver,
    "SyncPsycopgDriver": queue_drivers.sync_psycopg_driver,
    "PsycopgPoolDriver": queue_drivers.psycopg_pool_driver,
}


@dataclass
class CallerConnection:
    """The caller's own connection, in a transaction that the caller ends.

    ``execute`` runs the caller's own SQL (``%s`` placeholders); ``savepoint()``
    is the driver's savepoint block (psycopg: a nested ``transaction()``;
    SQLAlchemy: ``begin_nested()``), as docs/transactions.md recommends.
    """

    connection: Any
    commit: Callable[[], Awaitable[None]]
    rollback: Callable[[], Awaitable[None]]
    execute: Callable[..., Awaitable[Any]]
    savepoint: Callable[[], AbstractAsyncContextManager[Any]]


@contextlib.asynccontextmanager
async def _psycopg_async(route: Route) -> AsyncIterator[CallerConnection]:
    async with await psycopg.AsyncConnection.connect(route.dsn, **route.psycopg) as conn:
        yield CallerConnection(
            conn, conn.commit, conn.rollback, lambda sql, *p: conn.execute(sql, p), conn.transaction
        )


@contextlib.asynccontextmanager
async def _in_thread(block: contextlib.AbstractContextManager[Any]) -> AsyncIterator[Any]:
    """A blocking context manager (a savepoint block), entered and left in threads."""
    value = await asyncio.to_thread(block.__enter__)
    try:
        yield value
    except BaseException as error:
        if not await asyncio.to_thread(block.__exit__, type(error), error, error.__traceback__):
            raise
    else:
        await asyncio.to_thread(block.__exit__, None, None, None)


@contextlib.asynccontextmanager
async def _blocking(
    connect: Callable[[], Any], run: str, savepoint: str
) -> AsyncIterator[CallerConnection]:
    """A blocking driver's connection, used from async tests through threads."""
    conn = await asyncio.to_thread(connect)
    try:
        yield CallerConnection(
            conn,
            lambda: asyncio.to_thread(conn.commit),
            lambda: asyncio.to_thread(conn.rollback),
            lambda sql, *p: asyncio.to_thread(getattr(conn, run), sql, p),
            lambda: _in_thread(getattr(conn, savepoint)()),
        )
    finally:
        await asyncio.to_thread(conn.close)


def _sqlalchemy_connection(route: Route) -> sqlalchemy.engine.Connection:
    url = sqlalchemy.engine.make_url(route.dsn).set(drivername="postgresql+psycopg2")
    # NullPool: closing the connection closes the DBAPI connection, nothing lingers.
    return sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool).connect()


# name -> factory(route) of the caller's own connection, for each connector whose
# external_connection_type is set (configure(connection=...)).
EXTERNAL_CONNECTIONS: dict[
    str, Callable[[Route], AbstractAsyncContextManager[CallerConnection]]
] = {
    "PsycopgConnector": _psycopg_async,
    "SyncPsycopgConnector": lambda r: _blocking(
        lambda: psycopg.connect(r.dsn, **r.psycopg), "execute", "transaction"
    ),
    "SQLAlchemyPsycopg2Connector": lambda r: _blocking(
        lambda: _sqlalchemy_connection(r), "exec_driver_sql", "begin_nested"
    ),
    "PsycopgPoolDriver": _psycopg_async,  # a PsycopgConnector over the caller's pool
}


@dataclass
class WrappedConnection:
    """The one connection a Queue-face driver wraps, as its caller uses it: the
    caller's own SQL (no parameters), and the caller's transaction block, which
    the driver's statements join because they run on that same connection."""

    execute: Callable[[str], Awaitable[Any]]
    transaction: Callable[[], AbstractAsyncContextManager[Any]]


def _asyncpg_wrapped(driver: BaseConnector) -> WrappedConnection:
    assert isinstance(driver, AsyncpgDriver)
    return WrappedConnection(driver.connection.execute, driver.connection.transaction)


def _psycopg_wrapped(driver: BaseConnector) -> WrappedConnection:
    assert isinstance(driver, PsycopgDriver)
    return WrappedConnection(driver.connection.execute, driver.connection.transaction)


def _sync_psycopg_wrapped(driver: BaseConnector) -> WrappedConnection:
    assert isinstance(driver, SyncPsycopgDriver)
    conn = driver.connection
    return WrappedConnection(
        lambda sql: asyncio.to_thread(conn.execute, sql),
        lambda: _in_thread(conn.transaction()),
    )


# name -> the connection the driver wraps, for each driver over ONE connection of
# the caller's (a pool driver runs each statement on whichever connection is free).
WRAPPED_CONNECTIONS: dict[str, Callable[[BaseConnector], WrappedConnection]] = {
    "AsyncpgDriver": _asyncpg_wrapped,
    "PsycopgDriver": _psycopg_wrapped,
    "SyncPsycopgDriver": _sync_psycopg_wrapped,
}


@dataclass(frozen=True)
class Topology:
    """How the subject reaches the server: ``direct``, or through ``bouncer``
    (PgBouncer in transaction mode, LISTEN straight to the server)."""

    name: str  # one of support_table.TOPOLOGIES
    bouncer: PgBouncer | None = None

    def route(self, dsn: str) -> Route:
        """Where a connector for the database of ``dsn`` (a direct DSN) sends its statements."""
        if self.bouncer is None:
            return Route(dsn)
        return Route(self.bouncer.dsn_for(dsn), listen_dsn=dsn)


@pytest.fixture(params=support_table.TOPOLOGIES)
def topology(request: pytest.FixtureRequest) -> Topology:
    if request.param == support_table.DIRECT:
        return Topology(request.param)
    return Topology(request.param, request.getfixturevalue("pgbouncer"))


@contextlib.asynccontextmanager
async def built(name: str, route: Route) -> AsyncIterator[BaseConnector]:
    """A fresh, unopened connector of ``CONNECTORS[name]`` on ``route``, cleaned up after."""
    made = CONNECTORS[name](route)
    connector, cleanup = await made if inspect.isawaitable(made) else (made, None)
    try:
        yield connector
    finally:
        if cleanup is not None:
            await cleanup()


@dataclass
class Subject:
    """An app opened on one connector, with each operation callable from async
    tests whatever the connector's kind: blocking connectors run in a thread."""

    name: str
    connector: BaseConnector
    app: App
    node: pytest.Item
    topology: Topology
    route: Route  # where the connector's statements go

    @property
    def is_async(self) -> bool:
        return isinstance(self.connector, AsyncConnector)

    @property
    def pooled(self) -> bool:
        """Its statements go through PgBouncer in transaction mode."""
        return self.topology.bouncer is not None

    def route_to(self, dsn: str) -> Route:
        """The route, in this subject's topology, to another database (a direct DSN)."""
        return self.topology.route(dsn)

    # A test that cannot say "yes" for this connector gives its verdict with one
    # of these; the support table shows it and the reason. The first two record
    # and let the test go on (it has checked something); the skip_ ones end it.

    def unsupported(self, reason: str) -> None:
        """Record that this connector does not do what the test is about; call it
        only after checking that the connector refuses clearly. The support table
        shows "no" and the reason."""
        self.node.user_properties.append((support_table.NO, reason))

    def not_applicable(self, reason: str) -> None:
        """Record that the test's question does not arise for this connector; call
        it only after checking what the connector does instead."""
        self.node.user_properties.append((support_table.NOT_APPLICABLE, reason))

    def skip_unsupported(self, reason: str) -> NoReturn:
        """Skip: this connector cannot do it, and offers nothing to ask (no call that
        could refuse). The support table shows "no, skipped" and the reason."""
        __tracebackhide__ = True  # pytest reports the skip at the test's line
        self.node.user_properties.append((support_table.NO, reason))
        pytest.skip(reason)

    def skip_not_applicable(self, reason: str) -> NoReturn:
        """Skip: the test's question does not arise for this connector. The support
        table shows "n/a, skipped" and the reason."""
        __tracebackhide__ = True
        self.node.user_properties.append((support_table.NOT_APPLICABLE, reason))
        pytest.skip(reason)

    async def call(self, obj: Any, method: str, *args: Any, **kwargs: Any) -> Any:
        """``obj.<method>_async(...)`` on an async connector, else ``obj.<method>(...)``
        in a thread (as a blocking application would call it)."""
        if self.is_async:
            return await getattr(obj, f"{method}_async")(*args, **kwargs)
        return await asyncio.to_thread(getattr(obj, method), *args, **kwargs)

    async def defer_job(
        self, task_name: str, options: dict[str, Any] | None = None, **task_kwargs: Any
    ) -> int:
        deferrer = self.app.configure_task(task_name, **(options or {}))
        result: int = await self.call(deferrer, "defer", **task_kwargs)
        return result

    async def batch_defer(
        self, task_name: str, *task_kwargs: dict[str, Any], options: dict[str, Any] | None = None
    ) -> list[int]:
        deferrer = self.app.configure_task(task_name, **(options or {}))
        result: list[int] = await self.call(deferrer, "batch_defer", *task_kwargs)
        return result

    async def list_jobs(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self.call(self.app.job_manager, "list_job_rows")
        return result

    async def fetch_all(self, query: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self.call(self.connector, "fetch_all", query, params)
        return result


@pytest.fixture(params=list(CONNECTORS))
async def subject(
    request: pytest.FixtureRequest, dsn: str, topology: Topology
) -> AsyncIterator[Subject]:
    route = topology.route(dsn)
    async with built(request.param, route) as connector:
        app = App(connector=connector)
        async with _opened(connector):
            subject = Subject(request.param, connector, app, request.node, topology, route)
            if topology.bouncer is not None:
                await _check_it_goes_through(subject, topology.bouncer, dsn)
            yield subject


async def _check_it_goes_through(subject: Subject, bouncer: PgBouncer, dsn: str) -> None:
    """Each test's database is new, so PgBouncer has a pool for it only once a
    client reached it through the pooler: the subject's statement just did."""
    assert await subject.fetch_all("SELECT 1 AS one", {}) == [{"one": 1}]
    dbname = conninfo_to_dict(dsn)["dbname"]
    pools = await asyncio.to_thread(bouncer.show, "POOLS")
    assert dbname in {pool["database"] for pool in pools}, (
        f"{subject.name}'s statements did not go through PgBouncer"
    )


@contextlib.asynccontextmanager
async def _opened(connector: BaseConnector) -> AsyncIterator[None]:
    if isinstance(connector, AsyncConnector):
        await connector.open_async()
    else:
        await asyncio.to_thread(connector.open)
    try:
        yield
    finally:
        if isinstance(connector, AsyncConnector):
            await connector.close_async()
        else:
            await asyncio.to_thread(connector.close)


# -- the support table: record each (test, connector) outcome -----------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    support_table.record(item, report)
    return report


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The support-table check reads every other conformance result: run it last."""
    items.sort(key=support_table.is_table_check)  # stable: the rest keep their order
