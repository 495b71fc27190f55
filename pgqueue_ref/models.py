"""PgQueuer's model names (``pgqueuer.models``), for code moved over with its imports.

====================================  ======================================================
``pgqueuer.models``                   here
====================================  ======================================================
``Job``                               :class:`pgqueue_ref.jobs.Job`: ``id``, ``payload``,
                                      ``priority``, ``entrypoint`` and ``dedupe_key`` as
                                      PgQueuer's; ``status``, ``headers`` and the
                                      timestamps other than ``created_at`` are not there
``Context``                           :class:`pgqueue_ref.queuer.Context`: ``resources``
                                      only, no ``cancellation`` scope
``QueueStatistics``                   :class:`pgqueue_ref.queries.QueueStatistics`
                                      (``entrypoint``, ``priority``, ``status``, ``count``)
``Channel``, ``JobId``,               as in :mod:`pgqueue_ref.types`
``QueueEntrypoint``
``Log``, ``LogStatistics``,           not here: pgqueue_ref keeps no queue log, no
``Schedule``, events, ``Slot``...     schedules and no event table
====================================  ======================================================
"""

from __future__ import annotations

from .jobs import Job
from .queries import QueueStatistics
from .queuer import Context
from .settings import Channel
from .types import JobId, QueueEntrypoint

__all__ = ["Channel", "Context", "Job", "JobId", "QueueEntrypoint", "QueueStatistics"]
