"""Names that procrastinate 3.10 and PgQueuer 1.6 code uses, beside ours (issue 21).

Each test is code written against the anchor's public API, with only the import
changed, run against the real database.
"""

from __future__ import annotations

import importlib
import typing

import psycopg
import pytest

import pgqueue_ref
from pgqueue_ref import exceptions
from pgqueue_ref.db import PsycopgDriver
from pgqueue_ref.queries import Queries

# -- errors -------------------------------------------------------------------


async def test_autocommit_required_is_the_runtime_error_pgqueuer_raises(dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        with pytest.raises(RuntimeError) as caught:  # how PgQueuer code catches it
            PsycopgDriver(conn)
    assert type(caught.value) is exceptions.AutocommitRequired


async def test_pgqueuer_error_names_catch_ours(dsn: str) -> None:
    from pgqueue_ref.errors import DuplicateJobError, PgqException

    assert DuplicateJobError is exceptions.DuplicateJobError
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        queries = Queries(PsycopgDriver(conn))
        await queries.enqueue("sync", b"", dedupe_key="user-1")
        with pytest.raises(PgqException) as caught:  # PgQueuer's base class, so ours
            await queries.enqueue("sync", b"", dedupe_key="user-1")
    assert isinstance(caught.value, DuplicateJobError)
    assert caught.value.dedupe_key == ["user-1"]


# -- import paths ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("pgqueue_ref.contrib.aiopg", "AiopgConnector"),
        ("pgqueue_ref.contrib.psycopg2", "Psycopg2Connector"),
    ],
)
def test_procrastinate_3_10_contrib_paths_are_the_top_level_classes(module: str, name: str) -> None:
    assert getattr(importlib.import_module(module), name) is getattr(pgqueue_ref, name)


def test_pgqueuer_models_and_types_modules() -> None:
    from pgqueue_ref import jobs, queries, queuer, settings
    from pgqueue_ref.models import Channel, Context, Job, JobId, QueueEntrypoint, QueueStatistics
    from pgqueue_ref.types import OnConflict, QueueExecutionMode

    assert (Job, Context, QueueStatistics) == (jobs.Job, queuer.Context, queries.QueueStatistics)
    assert (Channel, QueueExecutionMode) == (settings.Channel, settings.QueueExecutionMode)
    assert JobId(3) == 3 and QueueEntrypoint("fetch") == "fetch"
    assert typing.get_args(OnConflict) == ("raise", "skip")
