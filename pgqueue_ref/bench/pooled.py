"""Subjects through a transaction pooler: ``python -m pgqueue_ref bench --pgbouncer``.

With ``--pgbouncer`` the run starts a :class:`~pgqueue_ref.pooler.PgBouncer`
(transaction mode) in front of its throwaway server, and measures each chosen
subject of pgqueue_ref twice, side by side in the same round-robin: as it is,
and as its *pooled twin* (``"<name> via PgBouncer"``). The twin sends every
statement, the client's and the worker's, through PgBouncer, with the one
setting its driver needs there (``prepare_threshold=None`` for psycopg,
``statement_cache_size=0`` for asyncpg), and gives its worker
``listen_dsn=`` the direct DSN, so that latency measures a real wake-up, not
the polling a deaf LISTEN would fall back to. Schemas are installed and
leftovers counted directly: neither is measured.

The anchors (procrastinate, PgQueuer) have no ``listen_dsn``: behind the
pooler their LISTEN goes deaf and their latency would measure their polling
interval, not the pooler. The minimal loop is the limit of a direct
connection (its worker holds a transaction per claim and LISTENs on a pool
connection); neither has a twin.

Where the pooler is travels in :data:`POOLER_ENV` (its DSN), set by
:func:`running_pgbouncer` for the run, so the worker processes, which inherit
the environment, reach the same PgBouncer.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from psycopg.conninfo import conninfo_to_dict

from ..embedded import _with_dbname
from ..pooler import PgBouncer, PgBouncerError, find_pgbouncer

__all__ = ["POOLER_ENV", "SUFFIX", "pooled_dsn", "require_pgbouncer", "running_pgbouncer"]

#: The DSN of the run's PgBouncer (the server's user and database through it).
POOLER_ENV = "PGQUEUE_REF_BENCH_PGBOUNCER"

#: Appended to a subject's name for its pooled twin.
SUFFIX = " via PgBouncer"


def pooled_dsn(direct: str) -> str:
    """The database of ``direct``, through the run's PgBouncer."""
    through = os.environ.get(POOLER_ENV)
    if not through:
        raise PgBouncerError(
            f"a pooled subject needs the run's PgBouncer (${POOLER_ENV}): "
            "run it with `python -m pgqueue_ref bench --pgbouncer`"
        )
    dbname = conninfo_to_dict(direct).get("dbname")
    return _with_dbname(through, str(dbname)) if dbname else through


def require_pgbouncer() -> None:
    """Fail at once, naming how to install it, when ``pgbouncer`` is missing."""
    if find_pgbouncer() is None:
        raise PgBouncerError(
            "--pgbouncer: the pgbouncer program is not installed (Debian/Ubuntu: "
            "apt-get install pgbouncer; macOS: brew install pgbouncer; there is no wheel "
            "of it on PyPI). Run the benchmark without --pgbouncer to measure direct "
            "connections only."
        )


@contextlib.contextmanager
def running_pgbouncer(server_dsn: str) -> Iterator[PgBouncer]:
    """A PgBouncer in transaction mode in front of ``server_dsn``, announced in
    :data:`POOLER_ENV` while it runs."""
    require_pgbouncer()
    previous = os.environ.get(POOLER_ENV)
    with PgBouncer(server_dsn) as bouncer:
        os.environ[POOLER_ENV] = bouncer.dsn
        try:
            yield bouncer
        finally:
            if previous is None:
                os.environ.pop(POOLER_ENV, None)
            else:
                os.environ[POOLER_ENV] = previous
