"""What the jobs table costs on disk: :class:`TableStats`, read by
``app.job_manager.table_stats_async()`` (blocking twin ``table_stats()``).

A queue's table churns: every job is inserted, updated when claimed and
updated (or, with retention, deleted) when it ends. PostgreSQL never
overwrites a row in place: each of those writes leaves a *dead tuple* behind,
in the heap and in the indexes, until VACUUM (autovacuum, by default) marks
its space reusable. So the size on disk is set by how much is kept (the
retention) **and** by how many dead tuples pile up between two vacuums. See
"Retention soak" in docs/benchmarks.md for the figures over 2M jobs, and
notebook 11 for a table before and after a VACUUM.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from .connectors import Row

__all__ = ["TableStats", "stats_from_row"]

MB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class TableStats:
    """One look at ``pgqueue_jobs`` (the named query ``jobs_table_stats``)."""

    #: ``pg_total_relation_size``: heap, indexes and TOAST, what fills a disk.
    total_bytes: int
    #: ``pg_relation_size``: the heap alone.
    heap_bytes: int
    #: ``pg_indexes_size``: every index of the table.
    index_bytes: int
    #: Estimates from PostgreSQL's statistics (``n_live_tup``, ``n_dead_tup``):
    #: each connection reports its counts about once a second while busy, and
    #: up to 10 s after it goes idle (PostgreSQL 15), or when it closes.
    live_rows: int
    dead_rows: int
    #: Manual VACUUMs and autovacuums of the table since its statistics began.
    vacuums: int
    autovacuums: int
    last_autovacuum: datetime.datetime | None
    #: A VACUUM (manual or auto) is working on the table right now.
    vacuum_running: bool

    @property
    def total_mb(self) -> float:
        """``total_bytes`` in MiB."""
        return self.total_bytes / MB


def stats_from_row(rows: list[Row]) -> TableStats:
    row = rows[0]
    return TableStats(
        total_bytes=int(row["total_bytes"]),
        heap_bytes=int(row["heap_bytes"]),
        index_bytes=int(row["index_bytes"]),
        live_rows=int(row["live_rows"]),
        dead_rows=int(row["dead_rows"]),
        vacuums=int(row["vacuums"]),
        autovacuums=int(row["autovacuums"]),
        last_autovacuum=row["last_autovacuum"],
        vacuum_running=bool(row["vacuum_running"]),
    )
