"""``SQLAlchemyPsycopg2Connector``, which defers through an SQLAlchemy engine.

Defined in :mod:`pgqueue_ref.connectors.sqlalchemy`; this is its public path, as
procrastinate's is ``procrastinate.contrib.sqlalchemy``. SQLAlchemy is imported
when the class is first used (``pip install "pgqueue_ref[sqlalchemy]"``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..connectors import module_getattr

if TYPE_CHECKING:
    from ..connectors.sqlalchemy import SQLAlchemyPsycopg2Connector

__all__ = ["SQLAlchemyPsycopg2Connector"]

__getattr__ = module_getattr(__name__, frozenset(__all__))
