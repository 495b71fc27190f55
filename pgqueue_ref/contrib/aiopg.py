"""``AiopgConnector``, asyncio over aiopg (psycopg2 underneath).

Defined in :mod:`pgqueue_ref.connectors.aiopg`; this is its public path, as
procrastinate 3.10's is ``procrastinate.contrib.aiopg``. ``pgqueue_ref.AiopgConnector``
keeps working too. aiopg is imported when the class is first used
(``pip install "pgqueue_ref[aiopg]"``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..connectors import module_getattr

if TYPE_CHECKING:
    from ..connectors.aiopg import AiopgConnector

__all__ = ["AiopgConnector"]

__getattr__ = module_getattr(__name__, frozenset(__all__))
