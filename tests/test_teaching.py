"""pgqueue_ref.teaching, the notebooks' helpers, on the real embedded server; and
the notebooks' own size rule (no code cell over 15 lines)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import psycopg
import pytest

import pgqueue_ref
from pgqueue_ref import teaching
from pgqueue_ref.contrib.sqlalchemy import SQLAlchemyPsycopg2Connector
from pgqueue_ref.db import AsyncpgDriver, SyncPsycopgDriver
from pgqueue_ref.display import recording_each

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb"))
MAX_CELL_LINES = 15


# --------------------------------------------------------------------------
# What another session sees
# --------------------------------------------------------------------------


async def test_notifications_are_the_payloads_that_arrived_in_time(dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as listener:
        await listener.execute("LISTEN pgqueue_ref")
        assert await teaching.notifications(listener, timeout=0.2) == []
        await listener.execute(
            "SELECT pg_notify('pgqueue_ref', 'app:a'), pg_notify('pgqueue_ref', 'app:b')"
        )
        assert await teaching.notifications(listener, timeout=0.2) == ["app:a", "app:b"]


async def test_session_state_is_what_pg_stat_activity_says(dsn: str) -> None:
    async with (
        await psycopg.AsyncConnection.connect(dsn, autocommit=True) as observer,
        await psycopg.AsyncConnection.connect(dsn) as conn,
    ):
        assert await teaching.session_state(observer, conn) == "idle"
        await conn.execute("SELECT 1")  # psycopg opens a transaction, and leaves it open
        assert await teaching.session_state(observer, conn) == "idle in transaction"
        await conn.rollback()
        # A session the server has ended (timeout: wait until it has gone).
        pid = conn.info.backend_pid
        await observer.execute("SELECT pg_terminate_backend(%s, timeout => 5000)", [pid])
        with pytest.raises(LookupError, match=rf"no session with pid {pid}: is it closed\?"):
            await teaching.session_state(observer, conn)


async def test_waiting_jobs_are_written_as_calls(app: pgqueue_ref.App) -> None:
    await app.configure_task("ship").defer_async(order_id=1, to="Ada")
    await app.configure_task("ship").defer_async(order_id=2, to="Bob")
    await app.job_manager.cancel_async(2)
    await app.configure_task("bill").defer_async()
    # The arguments in jsonb's order (shorter keys first), as the table keeps them.
    assert await teaching.waiting_jobs(app.connector) == ["ship(to='Ada', order_id=1)", "bill()"]


# --------------------------------------------------------------------------
# How a connector talks to the server
# --------------------------------------------------------------------------


async def test_how_parameters_travel_is_what_the_server_received(dsn: str) -> None:
    bound = [pgqueue_ref.PsycopgConnector(conninfo=dsn), pgqueue_ref.AsyncpgConnector(dsn=dsn)]
    inlined = [pgqueue_ref.AiopgConnector(dsn=dsn)]
    for connector in bound + inlined:
        await connector.open_async()
    blocking = [pgqueue_ref.Psycopg2Connector(dsn=dsn), SQLAlchemyPsycopg2Connector(dsn=dsn)]
    for connector in blocking:
        connector.open()
    try:
        assert [await teaching.how_parameters_travel(c) for c in bound] == ["$1, value apart"] * 2
        assert [await teaching.how_parameters_travel(c) for c in inlined + blocking] == [
            "inlined by the client"
        ] * 3
    finally:
        for connector in bound + inlined:
            await connector.close_async()
        for connector in blocking:
            connector.close()


async def test_profile_reads_the_connector_and_the_server(dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        import asyncpg

        asyncpg_conn = await asyncpg.connect(dsn)
        try:
            row = await teaching.profile("AsyncpgDriver", AsyncpgDriver(asyncpg_conn))
        finally:
            await asyncpg_conn.close()
    assert row == {
        "connector": "AsyncpgDriver",
        "kind": "async",
        "runs a worker": True,
        "opens connections": False,
        "holds": "asyncpg.Connection",
        "parameters": "$1, value apart",
        "your connection": "is yours",
    }
    with psycopg.connect(dsn, autocommit=True) as sync_conn:
        row = await teaching.profile("SyncPsycopgDriver", SyncPsycopgDriver(sync_conn))
    assert (row["kind"], row["runs a worker"], row["holds"]) == (
        "blocking",
        False,
        "psycopg.Connection",
    )
    assert conn.closed


# --------------------------------------------------------------------------
# Jobs over time
# --------------------------------------------------------------------------


async def test_job_states_tell_scheduled_from_retry_later(app: pgqueue_ref.App) -> None:
    await app.configure_task("t").defer_async()
    await app.configure_task("t", schedule_in={"seconds": 60}).defer_async()
    await app.configure_task("t").defer_async()
    # A job that failed once and waits out its retry delay: todo, later, one attempt.
    await app.connector.execute_async(
        "UPDATE pgqueue_jobs SET attempts = 1, scheduled_at = now() + interval '1 min' WHERE id = 3"
    )
    states = await teaching.job_states(app.connector)
    assert states.rows == [
        {"task_name": "t", "state": "retry later", "jobs": 1},
        {"task_name": "t", "state": "scheduled", "jobs": 1},
        {"task_name": "t", "state": "todo", "jobs": 1},
    ]
    assert set(teaching.STATE_ORDER) == set(teaching.STATE_COLOURS)


async def test_watch_states_samples_until_nothing_waits_or_runs(app: pgqueue_ref.App) -> None:
    @app.task(name="nap")
    async def nap() -> None:
        await asyncio.sleep(0.05)

    await nap.batch_defer_async({}, {}, {})
    worker = asyncio.create_task(app.run_worker_async(wait=False, concurrency=1))
    samples = await teaching.watch_states(app.connector, every=0.02, limit=20)
    await worker
    seconds = [t for t, _ in samples]
    assert seconds == sorted(seconds) and len(samples) >= 2
    assert samples[0][1]["todo"] + samples[0][1]["doing"] == 3
    assert samples[-1][1] == dict.fromkeys(teaching.STATE_ORDER, 0) | {"succeeded": 3}
    figure = teaching.plot_states(samples)
    (axes,) = figure.axes
    assert axes.get_title() == "Job states over time"
    assert [text.get_text() for text in axes.get_legend().get_texts()] == list(teaching.STATE_ORDER)


async def test_watch_states_stops_at_its_limit(app: pgqueue_ref.App) -> None:
    await app.configure_task("t").defer_async()  # nobody runs it
    start = time.monotonic()
    samples = await teaching.watch_states(app.connector, every=0.05, limit=0.3)
    assert 0.3 <= time.monotonic() - start < 5
    assert all(counts["todo"] == 1 for _, counts in samples)


# --------------------------------------------------------------------------
# Recording several connectors, timing
# --------------------------------------------------------------------------


async def test_recording_each_shows_which_connector_sent_what(dsn: str) -> None:
    app = pgqueue_ref.App(connector=pgqueue_ref.PsycopgConnector(conninfo=dsn))
    sync_app = app.with_connector(pgqueue_ref.Psycopg2Connector(dsn=dsn))
    await app.open_async()
    sync_app.open()
    try:
        with recording_each(app.connector, sync_app.connector) as sent:
            sync_app.configure_task("t").defer()
        assert repr(sent) == (
            "connector          sent\n"
            "-----------------  ---------\n"
            "PsycopgConnector   (nothing)\n"
            "Psycopg2Connector  defer_job"
        )
        assert "<td>defer_job</td>" in sent._repr_html_()
        refused = pytest.raises(ValueError, match="two connectors of one class cannot be told")
        with refused, recording_each(app.connector, app.connector):
            pass
    finally:
        sync_app.close()
        await app.close_async()


def test_stopwatch_times_its_block() -> None:
    watch = teaching.Stopwatch()
    assert repr(watch) == "Stopwatch(not started)"
    with pytest.raises(RuntimeError, match="has not been started: use it in a with block"):
        _ = watch.seconds
    with watch:
        time.sleep(0.05)
        assert "running" in repr(watch)
    assert 0.05 <= watch.seconds < 2
    assert watch.seconds == watch.seconds  # stopped: it no longer moves


# --------------------------------------------------------------------------
# The support table
# --------------------------------------------------------------------------

SUPPORT = """\
# What each connector supports

<div class="support-table">

| behaviour | `A` | `B` | through PgBouncer |
| --- | :-: | :-: | :-: |
| Defers a job: `defer()` | ✔ | ✘¹ | = |
| Runs a <worker> | n/a² | ✔ | ✘³ |

</div>

Notes:

1. no: `configure(connection=...)` raises
2. n/a: blocking
3. no: through PgBouncer
"""


def test_support_table_reads_the_generated_markdown() -> None:
    table = teaching.SupportTable(SUPPORT)
    assert table.columns == ["behaviour", "A", "B", "through PgBouncer"]
    assert table.rows == [
        ["Defers a job: `defer()`", "✔", "✘¹", "="],
        ["Runs a <worker>", "n/a²", "✔", "✘³"],
    ]
    assert repr(table).splitlines() == [
        "columns: 1 A, 2 B, 3 through PgBouncer",
        "",
        "behaviour              1     2   3",
        "---------------------  ----  --  --",
        "Defers a job: defer()  ✔     ✘¹  =",
        "Runs a <worker>        n/a²  ✔   ✘³",
        "",
        "1. no: `configure(connection=...)` raises",
        "2. n/a: blocking",
        "3. no: through PgBouncer",
    ]
    html = table._repr_html_()
    assert "writing-mode: vertical-rl" in html  # the connector names stand upright
    assert '<td style="text-align: left">Runs a &lt;worker&gt;</td>' in html
    assert "<li>no: <code>configure(connection=...)</code> raises</li>" in html


def test_support_table_of_the_docs_names_every_connector() -> None:
    from tests.conformance.conftest import CONNECTORS

    table = teaching.support_table(ROOT / "docs" / "connectors.md")
    assert table.columns == ["behaviour", *CONNECTORS, "through PgBouncer"]
    assert all(len(row) == len(table.columns) for row in table.rows)


def test_support_table_says_when_there_is_none() -> None:
    with pytest.raises(
        ValueError, match=r"no support table here: no line starts with '\| behaviour \|'"
    ):
        teaching.SupportTable("# nothing\n")


# --------------------------------------------------------------------------
# The notebooks' size rule
# --------------------------------------------------------------------------


def test_there_are_notebooks_to_check() -> None:
    assert len(NOTEBOOKS) >= 10


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_no_code_cell_is_over_15_lines(path: Path) -> None:
    """A lesson's cells are small: what a cell needs that is not the lesson lives in
    the library (pgqueue_ref.teaching, pgqueue_ref.display), tested there."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    long = {
        number: len("".join(cell["source"]).splitlines())
        for number, cell in enumerate(cells)
        if cell["cell_type"] == "code"
        and len("".join(cell["source"]).splitlines()) > MAX_CELL_LINES
    }
    assert long == {}, (
        f"{path.name}: cells over {MAX_CELL_LINES} lines (cell number: lines): {long}"
    )
