"""One pooled connection kept at hand, so most statements skip the pool.

Borrowing a connection from asyncpg's pool or from psycopg_pool costs the
client 40 to 70 µs of CPU per statement (futures, a task for
``asyncio.shield``, an idle timer re-armed...), measured beside a bare
connection: a sixth of a one-job defer, which is one statement. A connector
that owns its pool keeps one connection out of it and runs each statement on
that one when it is free; a statement that finds it busy (another is in
flight) borrows from the pool as before. Only for a pool the connector made
itself, in autocommit: a pool of the caller's is theirs to share, and a
statement on the kept connection is committed by the server as it ends.

Why this cannot starve or deadlock the pool: nobody ever waits for the kept
connection, so a statement waits only for pooled connections, which their
statements give back. The pool has one connection fewer for them, so the
connector keeps one only if its pool is big enough to spare it (each connector
says how big, since its LISTEN may hold a pooled connection too).

Why nothing is lost: after an error or a cancellation the connection is not
kept but given back to the pool, which checks it (rolls back, closes a broken
one); the next statement borrows one and keeps it instead.

The pools also retire connections that have served long (asyncpg after
``max_queries``, psycopg_pool after ``max_lifetime``): so that the kept one
does not escape that, every ``RENEW_AFTER``-th statement gives its
connection back and the next one borrowed is kept.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

__all__ = ["RENEW_AFTER", "KeptConnection"]

RENEW_AFTER = 10_000

C = TypeVar("C")
T = TypeVar("T")


class KeptConnection(Generic[C]):
    """Runs work on the kept connection when free, else on one borrowed from the pool."""

    def __init__(
        self,
        borrow: Callable[[], Awaitable[C]],
        give_back: Callable[[C], Awaitable[object]],
    ) -> None:
        self._borrow = borrow
        self._give_back = give_back
        self._keep = True  # until closed
        self._kept: C | None = None
        self._runs = 0

    async def run(self, work: Callable[[C], Awaitable[T]]) -> T:
        conn, self._kept = self._kept, None  # taken: a concurrent statement borrows
        if conn is None:
            conn = await self._borrow()
        try:
            result = await work(conn)
        except BaseException:
            await self._give_back(conn)  # the pool checks or replaces it
            raise
        self._runs += 1
        if self._keep and self._kept is None and self._runs % RENEW_AFTER:
            self._kept = conn
        else:  # busy (another was kept meanwhile), closing, or time to renew
            await self._give_back(conn)
        return result

    async def close(self) -> None:
        """Give the kept connection back (before the pool closes: a pool waits
        for its connections); statements still running give theirs back."""
        self._keep = False
        conn, self._kept = self._kept, None
        if conn is not None:
            await self._give_back(conn)
