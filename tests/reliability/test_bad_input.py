"""Nothing a caller passes in can break in, and each misuse gets a named error."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import pgqueue_ref
from pgqueue_ref.exceptions import (
    InvalidChannel,
    InvalidQueueName,
    UnserializableArguments,
)

Db = Callable[..., list[tuple[Any, ...]]]

NASTY = "x'); DROP TABLE pgqueue_jobs; -- %(name)s $1 %s \\ \" \u0000-free"
NASTY = NASTY.replace("\u0000-free", "end")  # PostgreSQL text cannot hold NUL; everything else goes


async def test_sql_metacharacters_are_stored_verbatim_never_executed(
    app: pgqueue_ref.App, db: Db
) -> None:
    deferrer = app.configure_task(NASTY, lock=NASTY, queueing_lock=NASTY)
    job_id = await deferrer.defer_async(**{NASTY: NASTY})
    assert db(
        "SELECT task_name, lock, queueing_lock, args FROM pgqueue_jobs WHERE id = %s", job_id
    ) == [(NASTY, NASTY, NASTY, {NASTY: NASTY})]
    stats = await app.run_worker_async(wait=False)  # no such task: it fails, with the name as text
    assert stats.failed == 1
    assert db("SELECT count(*) FROM pgqueue_jobs") == [(1,)]  # the table is still there


@pytest.mark.parametrize("bad", ["", "emails high", "emails;--", "x" * 64, "café_ü_" * 6, 42])
async def test_queue_names_must_be_identifiers(app: pgqueue_ref.App, db: Db, bad: Any) -> None:
    with pytest.raises(InvalidQueueName) as caught:
        await app.configure_task("t", queue=bad).defer_async()
    assert str(caught.value).startswith(f"queue {bad!r} is ")
    with pytest.raises(InvalidQueueName):
        app.task(name="t", queue=bad)(lambda: None)
    with pytest.raises(InvalidQueueName):
        app.worker(queues=["fine", bad])
    assert db("SELECT count(*) FROM pgqueue_jobs") == [(0,)]


def test_queue_name_message() -> None:
    app = pgqueue_ref.App(connector=pgqueue_ref.PsycopgConnector())
    with pytest.raises(InvalidQueueName) as caught:
        app.configure_task("t", queue="emails high")
    assert str(caught.value) == (
        "queue 'emails high' is not a valid queue name: use letters, digits and underscores, "
        "starting with a letter or underscore (e.g. 'emails')"
    )
    assert isinstance(caught.value, ValueError)


def test_channel_names_must_be_identifiers() -> None:
    with pytest.raises(InvalidChannel, match="channel 'a;b' is not a valid channel name"):
        pgqueue_ref.Channel("a;b")


async def test_non_json_arguments_write_nothing(app: pgqueue_ref.App, db: Db) -> None:
    with pytest.raises(UnserializableArguments, match="argument 'when' of task 't'"):
        await app.configure_task("t").batch_defer_async({"when": 1}, {"when": object()})
    assert db("SELECT count(*) FROM pgqueue_jobs") == [(0,)]


@pytest.mark.parametrize(
    ("text", "found"),
    [("null\x00byte", "a NUL character"), ("lone \ud800", "a surrogate code point")],
)
async def test_text_the_server_would_refuse_is_a_named_error_at_defer(
    app: pgqueue_ref.App, db: Db, text: str, found: str
) -> None:
    # The server's own error would be a generic ConnectorException, after a round trip.
    with pytest.raises(
        UnserializableArguments, match=f"^argument 'note' of task 't' holds {found}"
    ):
        await app.configure_task("t").defer_async(note=text)
    with pytest.raises(
        UnserializableArguments, match=f"^argument 'note' of task 't' holds {found}"
    ):
        await app.configure_task("t").batch_defer_async({"note": "fine"}, {"note": text})
    assert db("SELECT count(*) FROM pgqueue_jobs") == [(0,)]
    # What only looks like it goes through, as text.
    job_id = await app.configure_task("t").defer_async(note="\\u0000 \U0001f600")
    assert db("SELECT args FROM pgqueue_jobs WHERE id = %s", job_id) == [
        ({"note": "\\u0000 \U0001f600"},)
    ]
