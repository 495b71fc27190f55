"""Tasks every App has, as procrastinate's ``builtin_tasks`` module has them.

:func:`remove_old_jobs` deletes finished jobs, through
``JobManager.delete_old_jobs``. Every App registers it under the name
:data:`REMOVE_OLD_JOBS` (procrastinate's name is
``builtin:procrastinate.builtin_tasks.remove_old_jobs``; ours names our
module the same way), so it can be deferred by name::

    await app.configure_task(REMOVE_OLD_JOBS).defer_async(max_hours=72)

or called from a task of your own, as procrastinate's docs show::

    @app.task(pass_context=True)
    async def nightly_cleanup(context):
        await builtin_tasks.remove_old_jobs(context, max_hours=72, remove_failed=True)

Builtin tasks are not listed in ``app.tasks`` (your tasks) but in
``app.builtin_tasks``.
"""

from __future__ import annotations

from .tasks import JobContext, TaskDefinition

__all__ = ["BUILTIN_TASKS", "REMOVE_OLD_JOBS", "remove_old_jobs"]

#: The name a worker knows remove_old_jobs by.
REMOVE_OLD_JOBS = "builtin:pgqueue_ref.builtin_tasks.remove_old_jobs"


async def remove_old_jobs(
    context: JobContext,
    *,
    max_hours: float,
    queue: str | None = None,
    remove_failed: bool = False,
    remove_cancelled: bool = False,
    remove_aborted: bool = False,
) -> int:
    """Delete jobs that finished more than ``max_hours`` ago (succeeded ones,
    and failed, cancelled or aborted ones when asked); returns how many."""
    return await context.app.job_manager.delete_old_jobs(
        nb_hours=max_hours,
        queue=queue,
        include_failed=remove_failed,
        include_cancelled=remove_cancelled,
        include_aborted=remove_aborted,
    )


#: Every builtin task, by the name its jobs carry.
BUILTIN_TASKS: dict[str, TaskDefinition] = {
    REMOVE_OLD_JOBS: TaskDefinition(func=remove_old_jobs, name=REMOVE_OLD_JOBS, pass_context=True),
}
