"""What an operator may do to one job, the same from the page and from the CLI.

``retry`` puts a failed job back to wait, ``cancel`` cancels a waiting one,
``abort`` asks a running one to stop (its task sees the flag when it next
looks, ``context.should_abort_async()``, and ends it
``aborted`` by raising ``JobAborted``). Each sends the
statement the App face sends for it (``retry_failed_job``, ``cancel_job``), and
says in one sentence what happened, including when nothing could be done: the
job moved on between the moment the page showed it and the click.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..exceptions import JobNotRetryable
from ..jobs import Status
from ..manager import JobManager

__all__ = ["ACTIONS", "ActionResult", "run_action_async"]

#: The actions, and the verb the confirmation asks about.
ACTIONS = {"retry": "Retry", "cancel": "Cancel", "abort": "Request abort of"}


@dataclass(frozen=True, slots=True)
class ActionResult:
    """Whether the action was done, and a sentence saying what happened."""

    done: bool
    message: str


async def run_action_async(jobs: JobManager, action: str, job_id: int) -> ActionResult:
    """Run ``action`` (a key of :data:`ACTIONS`) on job ``job_id``."""
    if action == "retry":
        try:
            await jobs.retry_job_by_id_async(job_id)
        except JobNotRetryable:
            return ActionResult(False, await _not_done(jobs, job_id, "retried", "failed"))
        return ActionResult(True, f"job {job_id} is waiting again")
    if action == "cancel":
        status = await jobs.cancel_async(job_id)
        if status is Status.CANCELLED:
            return ActionResult(True, f"job {job_id} is cancelled")
        return ActionResult(False, await _not_done(jobs, job_id, "cancelled", "waiting"))
    if action == "abort":
        # cancel_job with abort: a job still waiting is cancelled outright, a running
        # one flagged. Only a running job is asked here, so a waiting one is left be.
        if await jobs.job_status_async(job_id) is Status.DOING:
            status = await jobs.cancel_async(job_id, abort=True)
            if status is Status.DOING:
                return ActionResult(True, f"job {job_id} is asked to abort")
            if status is Status.CANCELLED:  # it was handed back meanwhile, and waited
                return ActionResult(True, f"job {job_id} was waiting again, and is cancelled")
        return ActionResult(False, await _not_done(jobs, job_id, "asked to abort", "running"))
    raise ValueError(f"action {action!r}: expected one of {', '.join(ACTIONS)}")


async def _not_done(jobs: JobManager, job_id: int, done: str, needed: str) -> str:
    status = await jobs.job_status_async(job_id)
    if status is None:
        return f"job {job_id} cannot be {done}: there is no such job"
    return f"job {job_id} cannot be {done}: it is {status.value!r}, not {needed}"
