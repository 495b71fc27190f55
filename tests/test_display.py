"""The notebooks' display helpers: tables, and recording the statements a connector sends."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import psycopg.rows
import pytest

import pgqueue_ref
from pgqueue_ref.connectors import Params, Row, SyncConnector
from pgqueue_ref.display import Statement, Table, recording, table
from pgqueue_ref.sql import QUERIES

ROWS = [
    {"id": 2, "task": "<greet>", "args": {"name": "Ada"}, "done": True, "error": None},
    {"id": 1234, "task": "add", "args": {"a": 1}, "done": False, "error": "boom"},
]


def test_table_as_text_aligns_numbers_right_and_shows_json() -> None:
    assert repr(table(ROWS, "id", "task", "args", "done", "error")) == (
        "   id  task     args             done   error\n"
        "-----  -------  ---------------  -----  -----\n"
        '    2  <greet>  {"name": "Ada"}  True\n'
        '1,234  add      {"a": 1}         False  boom'
    )


def test_table_as_html_escapes_values_and_marks_numbers() -> None:
    html = table(ROWS, "id", "task")._repr_html_()
    assert html == (
        "<table><thead><tr><th>id</th><th>task</th></tr></thead><tbody>"
        '<tr><td style="text-align: right">2</td><td>&lt;greet&gt;</td></tr>'
        '<tr><td style="text-align: right">1,234</td><td>add</td></tr>'
        "</tbody></table>"
    )


def test_table_defaults_to_every_column_and_says_when_empty() -> None:
    assert table(ROWS).columns == ["id", "task", "args", "done", "error"]
    assert len(table(ROWS)) == 2
    assert repr(Table([])) == "(no rows)"
    assert "(no rows)" in Table([])._repr_html_()


def test_unknown_column_names_the_columns_there_are() -> None:
    with pytest.raises(ValueError) as caught:
        table(ROWS, "id", "status")
    assert str(caught.value) == (
        "no column 'status' in these rows; they have: args, done, error, id, task"
    )


async def test_recording_names_each_statement_with_its_parameters(app: pgqueue_ref.App) -> None:
    @app.task(name="add")
    async def add(a: int, b: int) -> int:
        return a + b

    with recording(app.connector) as sent:
        await add.batch_defer_async({"a": 1, "b": 2}, {"a": 3, "b": 4})
    (statement,) = sent
    assert statement.name == "defer_jobs_alike"
    assert statement.sql == QUERIES["defer_jobs_alike"].sql
    assert statement.params["args"] == '[{"a":1,"b":2},{"a":3,"b":4}]'
    assert 'args           \'[{"a":1,"b":2},{"a":3,"b":4}]\'' in repr(statement)
    assert repr(sent).splitlines()[2].startswith("1  defer_jobs_alike  face='app', queue=")

    with recording(app.connector) as sent:
        await app.run_worker_async(wait=False, name="w", flush_interval=60, prefetch=10)
    assert [s.name for s in sent] == [
        "register_worker",
        "requeue_stalled_jobs",
        "fetch_jobs",
        "fetch_jobs",
        "finish_jobs",
        "announce_finished",
        "fetch_jobs",
        "unregister_worker",
    ]
    assert sent[4].params["ids"] == [1, 2]


async def test_recording_sees_listen_and_ends_with_the_block(app: pgqueue_ref.App) -> None:
    with recording(app.connector) as sent:
        worker = app.worker(name="w")
        running = asyncio.create_task(worker.run())
        await asyncio.wait_for(worker.listening.wait(), 10)
        worker.stop()
        await running
    assert Statement("LISTEN", {"channel": "pgqueue_ref"}, "LISTEN pgqueue_ref") in sent
    count = len(sent)
    await app.job_manager.status_counts_async()
    assert len(sent) == count  # no longer recording
    assert not {"_execute", "_fetch_all", "_listen"} & set(vars(app.connector))


async def test_recording_twice_at_once_is_refused(app: pgqueue_ref.App) -> None:
    refused = pytest.raises(RuntimeError, match="this PsycopgConnector is already being recorded")
    with recording(app.connector), refused, recording(app.connector):
        pass


class _BlockingPsycopg(SyncConnector):
    """The smallest blocking connector: one psycopg connection."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    def _open(self, pool: Any) -> None:
        self.conn = psycopg.connect(self.dsn, autocommit=True, row_factory=psycopg.rows.dict_row)

    def _close(self) -> None:
        self.conn.close()

    def _execute(self, query: str, params: Params, connection: Any) -> None:
        self.conn.execute(query, params)

    def _fetch_all(self, query: str, params: Params, connection: Any) -> list[Row]:
        return self.conn.execute(query, params).fetchall()


def test_recording_a_blocking_connector(dsn: str) -> None:
    connector = _BlockingPsycopg(dsn)
    app = pgqueue_ref.App(connector=connector)
    app.open()
    try:
        with recording(connector) as sent:
            app.configure_task("t").defer(n=1)
            app.job_manager.job_status(1)
    finally:
        app.close()
    assert [s.name for s in sent] == ["defer_job", "job_status"]
