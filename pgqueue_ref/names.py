"""Names that end up in SQL as identifiers, or next to them: checked once, here.

A channel name goes into ``LISTEN <name>``; a queue name travels in NOTIFY
payloads and in logs. Both must be plain identifiers: letters, digits and
underscores, starting with a letter or an underscore, at most 63 bytes
(PostgreSQL silently cuts longer identifiers). Anything else is refused up
front with a named error, before any SQL is sent.
"""

from __future__ import annotations

import re

from .exceptions import InvalidIdentifier

__all__ = ["MAX_IDENTIFIER_BYTES", "identifier"]

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: Longest identifier PostgreSQL keeps (NAMEDATALEN - 1 bytes); it silently
#: truncates longer ones.
MAX_IDENTIFIER_BYTES = 63


def identifier(kind: str, name: object, error: type[InvalidIdentifier], example: str) -> str:
    """``name`` if it is a plain identifier, else ``error`` saying what ``kind`` of name
    it is and giving an ``example`` of a good one."""
    if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name):
        raise error(
            f"{kind} {name!r} is not a valid {kind} name: use letters, digits and "
            f"underscores, starting with a letter or underscore (e.g. {example!r})"
        )
    if len(name.encode()) > MAX_IDENTIFIER_BYTES:
        raise error(
            f"{kind} {name!r} is {len(name.encode())} bytes long; PostgreSQL would cut it "
            f"to {MAX_IDENTIFIER_BYTES}: use a shorter name"
        )
    return name
