"""PgQueuer's error names (``pgqueuer.errors``), for code moved over with its imports.

=========================  ==================================================================
``pgqueuer.errors``        here
=========================  ==================================================================
``PgqException``           :class:`~pgqueue_ref.exceptions.PgQueueError`, the base of all ours
``DuplicateJobError``      :class:`~pgqueue_ref.exceptions.DuplicateJobError` (``dedupe_key``)
``RetryException``,        not here: pgqueue_ref retries by a task's ``retry=`` strategy, not
``RetryRequested``         by an exception an entrypoint raises
``FailingListenerError``   not here: a listener that fails makes the worker poll (see the
                           worker's LISTEN check), it raises nothing
=========================  ==================================================================

The classes are ours, defined in :mod:`pgqueue_ref.exceptions`: these are other
names for them, so ``except pgqueue_ref.errors.PgqException`` catches every
error pgqueue_ref raises, as ``except pgqueuer.errors.PgqException`` catches PgQueuer's.
"""

from __future__ import annotations

from .exceptions import DuplicateJobError, PgQueueError

__all__ = ["DuplicateJobError", "PgqException"]

#: PgQueuer's base class name, for ours.
PgqException = PgQueueError
