"""The Queue face's settings: :class:`Channel`, :class:`DBSettings`, :class:`QueueExecutionMode`.

PgQueuer names these; pgqueue_ref keeps the names and says exactly what they do here.

**Channels.** Every statement that inserts jobs notifies the channel ``pgqueue_ref``
with the payload ``'<face>:<queue>'`` while a consumer of that face sleeps on it
(see ``sql/queries.sql`` and ``pgqueue_wake`` in ``sql/schema.sql``).
``DBSettings().channel`` is that channel unless the environment variable
``PGQUEUE_REF_CHANNEL`` names another. A :class:`~pgqueue_ref.queuer.PgQueuer` LISTENs
on its channel; a :class:`~pgqueue_ref.queries.Queries` built with a channel
other than ``pgqueue_ref`` also sends ``pg_notify(<channel>, 'queue:default')``,
every time, in the same statement as its insert (so the notification goes out when the
insert commits, and never after a rollback). So producers and consumers that
agree on a channel wake each other at once; a consumer on a custom channel
still finds jobs enqueued any other way (the App face, a ``Queries`` on another
channel, plain SQL) by polling, ``dequeue_timeout`` seconds at most.

Channel names are checked when they are made: a plain identifier, at most 63
bytes (PostgreSQL's limit), so a name is never truncated and never needs quoting.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass, field
from typing import Self

from .exceptions import InvalidChannel
from .names import identifier
from .sql import CHANNEL

__all__ = ["CHANNEL_ENV", "Channel", "DBSettings", "QueueExecutionMode"]

#: The environment variable that overrides the default channel.
CHANNEL_ENV = "PGQUEUE_REF_CHANNEL"


class Channel(str):
    """A LISTEN/NOTIFY channel name, checked at construction."""

    __slots__ = ()

    def __new__(cls, name: str) -> Self:
        identifier("channel", name, InvalidChannel, "orders_queue")
        return super().__new__(cls, name)


def _channel_from_environment() -> Channel:
    name = os.environ.get(CHANNEL_ENV, CHANNEL)
    try:
        return Channel(name)
    except InvalidChannel as error:
        raise InvalidChannel(f"{CHANNEL_ENV}={name!r}: {error}") from None


@dataclass(frozen=True, slots=True)
class DBSettings:
    """Database names the Queue face uses; read from the environment when made."""

    channel: Channel = field(default_factory=_channel_from_environment)

    def __post_init__(self) -> None:
        # DBSettings(channel="x") checks its name too.
        object.__setattr__(self, "channel", Channel(self.channel))


class QueueExecutionMode(enum.Enum):
    """How ``PgQueuer.run()`` ends."""

    #: Run until stopped (``pgq.stop()``, cancellation): LISTEN, and poll as a fallback.
    continuous = "continuous"
    #: Run the jobs that are ready, then return: for scripts, notebooks and tests.
    drain = "drain"
