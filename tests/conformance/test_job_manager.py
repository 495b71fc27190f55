"""procrastinate's job-manager listing on every connector and driver, tested once for all.

``app.job_manager.list_jobs[_async]`` returns procrastinate 3.10's ``Job``
objects (``job.status``, ``job.task_kwargs``...), every match, oldest first;
``list_job_rows[_async]`` is ours, rows (dicts) newest first. The first line of
each docstring is its row in ``docs/connectors.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pgqueue_ref.jobs import Job, Status

from .conftest import Subject

Db = Callable[..., list[tuple[Any, ...]]]


async def test_list_jobs_gives_procrastinates_job_objects(subject: Subject, db: Db) -> None:
    """App face: `job_manager.list_jobs[_async]` gives procrastinate's `Job` objects, filtered, oldest first"""
    first = await subject.defer_job("a", {"queue": "q1", "lock": "L"}, n=1, word="été")
    second = await subject.defer_job("b", {"priority": 3})
    db("UPDATE pgqueue_jobs SET status = 'failed' WHERE id = %s", second)
    jobs: list[Job] = await subject.call(subject.app.job_manager, "list_jobs")
    assert [type(job) for job in jobs] == [Job, Job]
    one, two = jobs
    assert (one.id, one.task_name, one.queue, one.lock, one.task_kwargs) == (
        first,
        "a",
        "q1",
        "L",
        {"n": 1, "word": "été"},
    )
    assert (one.status, two.status, two.priority) == (Status.TODO, Status.FAILED, 3)
    assert (one.abort_requested, one.worker_id, one.attempts) == (False, None, 0)
    failed = await subject.call(subject.app.job_manager, "list_jobs", status="failed")
    assert [job.id for job in failed] == [second]
    assert await subject.call(subject.app.job_manager, "list_jobs", first, task="b") == []
    rows = await subject.call(subject.app.job_manager, "list_job_rows")
    assert [row["id"] for row in rows] == [second, first]  # ours: rows, the newest first
