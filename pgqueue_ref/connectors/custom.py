"""Your own driver, written against PgQueuer's driver protocol, as one of ours.

``Queries(x)`` and ``PgQueuer(x)`` take any object with PgQueuer's driver
methods (``fetch``, ``execute``, ``add_listener``; see
:mod:`~pgqueue_ref.connectors.driver`): :func:`as_connector` wraps it in a
:class:`ProtocolDriver`, and from there on it is a
:class:`~pgqueue_ref.connectors.driver.Driver` like ours.
"""

from __future__ import annotations

from typing import Any

from .base import BaseConnector
from .driver import Driver, NotifyCallback, PgQueuerDriver

__all__ = ["ProtocolDriver", "as_connector"]


class ProtocolDriver(Driver):
    """An object with PgQueuer's driver methods, as one of our drivers."""

    def __init__(self, driver: PgQueuerDriver) -> None:
        super().__init__()
        self.driver = driver

    def __repr__(self) -> str:
        return f"ProtocolDriver({self.driver!r})"

    async def fetch(self, query: str, *args: Any) -> list[dict[str, Any]]:
        return await self.driver.fetch(query, *args)

    async def execute(self, query: str, *args: Any) -> str:  # type: ignore[override]
        return await self.driver.execute(query, *args)

    async def add_listener(self, channel: str, callback: NotifyCallback) -> None:
        await self.driver.add_listener(channel, callback)

    async def remove_listener(self, channel: str, callback: NotifyCallback) -> None:
        remove = getattr(self.driver, "remove_listener", None)
        if remove is not None:
            await remove(channel, callback)


def as_connector(driver: object) -> BaseConnector:
    """``driver`` if it is one of ours; a :class:`ProtocolDriver` around it if it has
    PgQueuer's driver methods (``fetch``, ``execute``, ``add_listener``); else TypeError."""
    if isinstance(driver, BaseConnector):
        return driver
    if isinstance(driver, PgQueuerDriver):
        return ProtocolDriver(driver)
    raise TypeError(
        f"expected a driver or connector; got {type(driver).__name__}, which has neither our "
        "connector methods nor PgQueuer's driver protocol (async fetch, execute, add_listener)"
    )
