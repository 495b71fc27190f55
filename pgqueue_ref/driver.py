"""What the Queue face's async drivers share: they wrap what the caller opened.

PgQueuer's drivers take a connection (or pool) that the caller has already
opened and will close. So a :class:`Driver` is an :class:`~pgqueue_ref.connector.AsyncConnector`
that is open from birth and never closes what it was given. Everything else
(error translation, the blocking twins, the queries) is the connector
contract's, so JobManager, the worker and the conformance suite use a driver
exactly like a connector.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from .connector import AsyncConnector
from .exceptions import ConfigurationError

__all__ = ["Driver"]


class Driver(AsyncConnector):
    """Base of the async drivers (``pgqueue_ref.db``)."""

    opens_connections = False

    def __init__(self) -> None:
        super().__init__()
        self._is_open = True  # the caller opened the connection
        # Remember the loop the connection lives in, so that blocking code in
        # other threads (a sync entrypoint, say) can still use the driver.
        with contextlib.suppress(RuntimeError):
            self._bridge.loop = asyncio.get_running_loop()

    async def _open(self, pool: Any) -> None:
        if pool is not None:
            raise ConfigurationError(
                f"{type(self).__name__} already wraps the connection or pool it was built on; "
                "build another driver for another pool"
            )

    async def _close(self) -> None:
        """Nothing to close: the connection is the caller's, and so is closing it."""

    def check_room_for_listen(self) -> None:
        """Raise ConfigurationError if a consumer's LISTEN would leave no connection for
        queries. One connection carries both; pool drivers override this."""
