"""Several apps over one set of tasks: with_connector and replace_connector.

procrastinate's with_connector shared the task *objects*, which kept a
reference to the first app: deferring through the second app silently used
the first app's connector. Here the second app shares the task *definitions*
and binds them to itself, so it defers through its own connector.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import pgqueue_ref
from pgqueue_ref.exceptions import ConnectorNotOpen

Db = Callable[..., list[tuple[Any, ...]]]


def _apps(dsn: str) -> tuple[pgqueue_ref.App, pgqueue_ref.App]:
    first = pgqueue_ref.App(
        connector=pgqueue_ref.PsycopgConnector(conninfo=dsn), worker_defaults={"concurrency": 3}
    )

    @first.task(name="process_order")
    def process_order(order_id: int) -> None: ...

    second = first.with_connector(pgqueue_ref.AsyncpgConnector(dsn=dsn))
    return first, second


async def test_the_second_app_defers_through_its_own_connector_only(dsn: str, db: Db) -> None:
    _first, second = _apps(dsn)
    async with second.open_async():  # the first app is never opened
        await second.tasks["process_order"].defer_async(order_id=1)
        await second.configure_task("process_order").defer_async(order_id=2)
    assert db("SELECT args->>'order_id' FROM pgqueue_jobs ORDER BY id") == [("1",), ("2",)]


async def test_tasks_registered_on_either_app_are_seen_by_both(dsn: str, db: Db) -> None:
    first, second = _apps(dsn)

    @second.task(name="late")
    def late() -> None: ...

    assert set(first.tasks) == set(second.tasks) == {"process_order", "late"}
    async with second.open_async():
        await late.defer_async()  # registered on the second app: bound to it
    with pytest.raises(ConnectorNotOpen):
        await first.tasks["late"].defer_async()  # bound to the first app, which is closed
    assert db("SELECT task_name FROM pgqueue_jobs") == [("late",)]


async def test_a_task_object_belongs_to_the_app_that_made_it(dsn: str) -> None:
    # The decorated name is the first app's task: reach tasks through the app
    # you mean to defer with (app.tasks[...] or app.configure_task(...)).
    first, second = _apps(dsn)
    process_order = first.tasks["process_order"]
    async with second.open_async():
        with pytest.raises(ConnectorNotOpen, match="PsycopgConnector is not open"):
            await process_order.defer_async(order_id=1)


async def test_jobs_deferred_by_one_app_are_run_by_the_others_worker(dsn: str, db: Db) -> None:
    first, second = _apps(dsn)
    async with second.open_async():
        await second.tasks["process_order"].defer_async(order_id=1)
    async with first.open_async():
        stats = await first.run_worker_async(wait=False)
    assert stats.succeeded == 1


def test_settings_carry_over(dsn: str) -> None:
    _first, second = _apps(dsn)
    assert second.worker_defaults == {"concurrency": 3}
    assert second.worker().concurrency == 3


async def test_replace_connector_swaps_in_place_and_restores(dsn: str, db: Db) -> None:
    app = pgqueue_ref.App(connector=pgqueue_ref.PsycopgConnector(conninfo=dsn))

    @app.task(name="t")
    def t() -> None: ...

    original = app.connector
    other = pgqueue_ref.AsyncpgConnector(dsn=dsn)
    with app.replace_connector(other) as same_app:
        assert same_app is app and app.connector is other
        async with app.open_async():
            await t.defer_async()  # the same task object now defers through `other`
    assert app.connector is original
    assert db("SELECT count(*) FROM pgqueue_jobs") == [(1,)]
