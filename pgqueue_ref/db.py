"""The Queue face's drivers (PgQueuer's ``pgqueuer.db``), one import away.

| driver | wraps | consumes? | joins your transaction? |
| --- | --- | --- | --- |
| :class:`AsyncpgDriver` | one ``asyncpg.Connection`` | yes | yes |
| :class:`AsyncpgPoolDriver` | an ``asyncpg.Pool`` (``max_size >= 2`` to consume) | yes | no |
| :class:`PsycopgDriver` | one ``psycopg.AsyncConnection``, autocommit | yes | yes |
| :class:`SyncPsycopgDriver` | one ``psycopg.Connection``, autocommit | no: enqueue only | yes |
| :class:`PsycopgPoolDriver` | a ``psycopg_pool.AsyncConnectionPool`` (``max_size >= 2``) | yes | no |

Each is a connector of :mod:`pgqueue_ref.connector` (async ones through
:class:`Driver`), so :class:`~pgqueue_ref.queries.Queries`, the worker engine,
the App face and the conformance suite use them unchanged. You open the
connection or pool, and you close it: a driver never does.

**Autocommit.** Every driver needs a connection that commits each statement
by itself. psycopg connections start with autocommit off, so the psycopg
drivers check it and refuse one without it
(:class:`~pgqueue_ref.exceptions.AutocommitRequired`: connect with
``autocommit=True``). asyncpg has no such flag and needs none: it commits
each statement unless you opened a transaction yourself. The I/O and each
driver's quirks are in :mod:`pgqueue_ref.asyncpg_drivers` and
:mod:`pgqueue_ref.psycopg_drivers`; the whole story is in ``docs/queue-face.md``.
"""

from __future__ import annotations

from .asyncpg_drivers import AsyncpgDriver, AsyncpgPoolDriver
from .driver import Driver
from .psycopg_drivers import PsycopgDriver, PsycopgPoolDriver, SyncPsycopgDriver

__all__ = [
    "AsyncpgDriver",
    "AsyncpgPoolDriver",
    "Driver",
    "PsycopgDriver",
    "PsycopgPoolDriver",
    "SyncPsycopgDriver",
]
