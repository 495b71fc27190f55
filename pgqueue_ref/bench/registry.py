"""Every subject the benchmark knows, one line each; those not installed are left out.

A new connector or driver is one line here: ``app_api(...)`` for a connector
of the App face (procrastinate's API), ``queue_api(...)`` for a driver of the
Queue face (PgQueuer's API). The anchors (procrastinate, PgQueuer) come from
the ``bench`` extra: ``pip install -e ".[bench]"``. Each subject of pgqueue_ref
has a twin behind a transaction pooler (:mod:`.pooled`), which its factory builds.
"""

from __future__ import annotations

from .app_api import app_api
from .minimal import minimal_loop, schema_loop
from .queue_api import queue_api
from .subject import Subject

__all__ = ["POOLED", "SUBJECTS", "find"]

_CANDIDATES = [
    # pgqueue_ref's App face, one line per connector...
    app_api("pgqueue_ref", "PsycopgConnector", "conninfo", driver="psycopg"),
    app_api("pgqueue_ref", "AsyncpgConnector", "dsn", driver="asyncpg"),
    app_api("pgqueue_ref", "AiopgConnector", "dsn", driver="aiopg"),
    app_api("pgqueue_ref", "SyncPsycopgConnector", "conninfo", driver="psycopg", sync=True),
    app_api("pgqueue_ref", "Psycopg2Connector", "dsn", driver="psycopg2", sync=True),
    app_api(
        "pgqueue_ref",
        "contrib.sqlalchemy.SQLAlchemyPsycopg2Connector",
        "dsn",
        driver="psycopg2",
        sync=True,
    ),
    # ...its Queue face, one line per driver...
    queue_api("pgqueue_ref", "AsyncpgDriver"),
    queue_api("pgqueue_ref", "AsyncpgPoolDriver"),
    queue_api("pgqueue_ref", "PsycopgDriver"),
    queue_api("pgqueue_ref", "SyncPsycopgDriver"),
    # ...the anchors, on the drivers they were measured on...
    app_api("procrastinate", "PsycopgConnector", "conninfo", driver="psycopg"),
    queue_api("pgqueuer", "AsyncpgDriver"),
    queue_api("pgqueuer", "PsycopgDriver"),
    # ...and the limits: the least SQL a queue can send, on a two-column table and on ours.
    minimal_loop(),
    schema_loop(),
]

#: name -> subject, in the order above.
SUBJECTS: dict[str, Subject] = {s.name: s for s in _CANDIDATES if s is not None}

#: direct subject's name -> its twin behind a transaction pooler (``bench --pgbouncer``):
#: pgqueue_ref's own subjects only (see :mod:`.pooled` for why).
POOLED: dict[str, Subject] = {
    name: s.pooled() for name, s in SUBJECTS.items() if s.pooled is not None
}


def find(name: str) -> Subject:
    """A subject or a pooled twin, by its name (how a worker process finds its subject)."""
    if name in SUBJECTS:
        return SUBJECTS[name]
    for twin in POOLED.values():
        if twin.name == name:
            return twin
    raise KeyError(f"no subject named {name!r}")
