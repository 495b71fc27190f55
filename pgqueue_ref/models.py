"""PgQueuer's model names (``pgqueuer.models``), for code moved over with its imports.

====================================  ======================================================
``pgqueuer.models``                   here
====================================  ======================================================
``Job``                               :class:`pgqueue_ref.jobs.Job`: ``id``, ``payload``,
                                      ``priority``, ``entrypoint``, ``dedupe_key`` and
                                      ``headers`` as PgQueuer's; ``status`` in
                                      procrastinate's names; timestamps other than
                                      ``created_at`` are not there
``Context``                           :class:`pgqueue_ref.queuer.Context`: ``resources``
                                      only, no ``cancellation`` scope
``QueueStatistics``                   :class:`pgqueue_ref.queries.QueueStatistics`
                                      (``entrypoint``, ``priority``, ``status``, ``count``)
``Channel``, ``JobId``,               as in :mod:`pgqueue_ref.types`
``QueueEntrypoint``
``Log``, ``LogStatistics``            :class:`pgqueue_ref.queue_log.Log` and ``LogStatistics``:
                                      read from the jobs (see :mod:`pgqueue_ref.queue_log`)
``Schedule``, events, ``Slot``...     not here: no event table
====================================  ======================================================
"""

from __future__ import annotations

from .jobs import Job
from .queries import QueueStatistics
from .queue_log import Log, LogStatistics
from .queuer import Context
from .settings import Channel
from .types import JobId, QueueEntrypoint

__all__ = [
    "Channel",
    "Context",
    "Job",
    "JobId",
    "Log",
    "LogStatistics",
    "QueueEntrypoint",
    "QueueStatistics",
]
