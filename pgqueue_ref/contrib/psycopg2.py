"""``Psycopg2Connector``, blocking, over a psycopg2 connection pool.

Defined in :mod:`pgqueue_ref.connectors.psycopg2`; this is its public path, as
procrastinate 3.10's is ``procrastinate.contrib.psycopg2``. ``pgqueue_ref.Psycopg2Connector``
keeps working too. psycopg2 is imported when the class is first used
(``pip install "pgqueue_ref[psycopg2]"``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..connectors import module_getattr

if TYPE_CHECKING:
    from ..connectors.psycopg2 import Psycopg2Connector

__all__ = ["Psycopg2Connector"]

__getattr__ = module_getattr(__name__, frozenset(__all__))
