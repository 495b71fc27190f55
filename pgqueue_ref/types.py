"""PgQueuer's type names (``pgqueuer.types``), for code moved over with its imports.

================================  ==========================================================
``pgqueuer.types``                here
================================  ==========================================================
``QueueExecutionMode``            :class:`pgqueue_ref.settings.QueueExecutionMode` (same members)
``Channel``                       :class:`pgqueue_ref.settings.Channel`: a ``str`` subclass
                                  that checks the name, where PgQueuer's is a ``NewType``
``JobId``, ``QueueEntrypoint``    ``NewType`` over ``int`` and ``str``, as in PgQueuer
``OnConflict``                    ``Literal["raise", "skip"]``: PgQueuer's
                                  ``"update_priority"`` is not supported
``OnFailure``                     ``Literal["delete", "hold"]``, as in PgQueuer
``JOB_STATUS``,                   not here: our statuses are procrastinate's (``todo``,
cron and event names              ``doing``...), and there is no cron or event table
================================  ==========================================================
"""

from __future__ import annotations

from typing import NewType

from .queries import OnConflict
from .queuer import OnFailure
from .settings import Channel, QueueExecutionMode

__all__ = ["Channel", "JobId", "OnConflict", "OnFailure", "QueueEntrypoint", "QueueExecutionMode"]

#: A job's id (``Job.id``).
JobId = NewType("JobId", int)
#: An entrypoint's name (``Job.entrypoint``).
QueueEntrypoint = NewType("QueueEntrypoint", str)
