"""The Queue face's drivers (PgQueuer's ``pgqueuer.db``), one import away.

| driver | wraps | consumes? | joins your transaction? | needs |
| --- | --- | --- | --- | --- |
| :class:`~pgqueue_ref.connectors.asyncpg.AsyncpgDriver` | one ``asyncpg.Connection`` | yes | yes | ``[asyncpg]`` |
| :class:`~pgqueue_ref.connectors.asyncpg.AsyncpgPoolDriver` | an ``asyncpg.Pool`` (``max_size >= 2`` to consume) | yes | no | ``[asyncpg]`` |
| :class:`~pgqueue_ref.connectors.psycopg.PsycopgDriver` | one ``psycopg.AsyncConnection``, autocommit | yes | yes | (core) |
| :class:`~pgqueue_ref.connectors.psycopg_sync.SyncPsycopgDriver` | one ``psycopg.Connection``, autocommit | no: enqueue only | yes | (core) |
| :class:`~pgqueue_ref.connectors.psycopg.PsycopgPoolDriver` | a ``psycopg_pool.AsyncConnectionPool`` (``max_size >= 2``) | yes | no | (core) |

Each is a connector of :mod:`pgqueue_ref.connectors` (async ones through
:class:`~pgqueue_ref.connectors.driver.Driver`), so :class:`~pgqueue_ref.queries.Queries`, the worker engine,
the App face and the conformance suite use them unchanged. You open the
connection or pool, and you close it: a driver never does. The asyncpg ones
import asyncpg when first used (``pip install "pgqueue_ref[asyncpg]"``).

**Autocommit.** Every driver needs a connection that commits each statement
by itself. psycopg connections start with autocommit off, so the psycopg
drivers check it and refuse one without it
(:class:`~pgqueue_ref.exceptions.AutocommitRequired`: connect with
``autocommit=True``). asyncpg has no such flag and needs none: it commits
each statement unless you opened a transaction yourself. The I/O and each
driver's quirks are in :mod:`pgqueue_ref.connectors.asyncpg`,
:mod:`pgqueue_ref.connectors.psycopg` and :mod:`pgqueue_ref.connectors.psycopg_sync`;
the whole story is in ``docs/queue-face.md``.

**PgQueuer's driver protocol.** Each async driver also answers PgQueuer's
``fetch(query, *args)``, ``execute``, ``notify``, ``add_listener`` and
``remove_listener``, with ``$1, $2`` placeholders, and ``async with``; a
driver of your own written against that protocol runs ``Queries`` and
``PgQueuer`` (:mod:`pgqueue_ref.connectors.driver`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .connectors import Driver, module_getattr
from .connectors.psycopg import PsycopgDriver, PsycopgPoolDriver
from .connectors.psycopg_sync import SyncPsycopgDriver

if TYPE_CHECKING:
    from .connectors.asyncpg import AsyncpgDriver, AsyncpgPoolDriver

__all__ = [
    "AsyncpgDriver",
    "AsyncpgPoolDriver",
    "Driver",
    "PsycopgDriver",
    "PsycopgPoolDriver",
    "SyncPsycopgDriver",
]

__getattr__ = module_getattr(__name__, frozenset({"AsyncpgDriver", "AsyncpgPoolDriver"}))
