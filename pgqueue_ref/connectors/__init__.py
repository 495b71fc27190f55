"""The driver layer: the connector contract, and one module per database driver.

======================  =====================================================  ==============
module                  what it holds                                          needs
======================  =====================================================  ==============
:mod:`.base`            the contract: async and blocking connectors, pools     (core)
                        adopted or owned, ``require_async``, error mapping
:mod:`.driver`          the Queue face's drivers' base, ``Driver``, and        (core)
                        PgQueuer's driver protocol on it
:mod:`.custom`          your own driver, written against that protocol         (core)
:mod:`.bridge`          blocking code on an async connector, without deadlock  (core)
:mod:`.kept`            one pooled connection kept at hand for statements      (core)
:mod:`.psycopg`         ``PsycopgConnector``, ``PsycopgDriver``,               (core)
                        ``PsycopgPoolDriver``: psycopg 3, asyncio
:mod:`.psycopg_sync`    ``SyncPsycopgConnector``, ``SyncPsycopgDriver``:       (core)
                        psycopg 3, blocking
:mod:`.asyncpg`         ``AsyncpgConnector``, ``AsyncpgDriver``,               ``[asyncpg]``
                        ``AsyncpgPoolDriver``
:mod:`.aiopg`           ``AiopgConnector``                                     ``[aiopg]``
:mod:`.psycopg2`        ``Psycopg2Connector``                                  ``[psycopg2]``
:mod:`.sqlalchemy`      ``SQLAlchemyPsycopg2Connector``                        ``[sqlalchemy]``
======================  =====================================================  ==============

Each driver module is named after the package it drives and holds only I/O and
that driver's own quirks, for both faces: the App face's connector and the
Queue face's drivers over one library share their I/O functions there. A new
driver is one new module here, one line in :data:`OPTIONAL` if it is an extra,
and one line in the conformance suite's fixture.

Only psycopg 3 is a core dependency. The other modules import their driver, so
they are imported on first use, through :func:`load`: ``pgqueue_ref.AsyncpgConnector``
imports asyncpg then, not at ``import pgqueue_ref``, and without asyncpg
installed it raises :class:`~pgqueue_ref.exceptions.DriverNotInstalled` (an
``ImportError``) naming the extra to install.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any

from ..exceptions import DriverNotInstalled
from .base import (
    AsyncConnector,
    AsyncPoolConnector,
    BaseConnector,
    Params,
    Row,
    SyncConnector,
    SyncPoolConnector,
    require_async,
    translated_errors,
)
from .driver import Driver

__all__ = [
    "EXTRAS",
    "OPTIONAL",
    "AsyncConnector",
    "AsyncPoolConnector",
    "BaseConnector",
    "Driver",
    "Params",
    "Row",
    "SyncConnector",
    "SyncPoolConnector",
    "load",
    "module_getattr",
    "require_async",
    "translated_errors",
]

#: Extra -> the packages it installs that its module imports (aiopg drives psycopg2).
EXTRAS: dict[str, frozenset[str]] = {
    "asyncpg": frozenset({"asyncpg"}),
    "aiopg": frozenset({"aiopg", "psycopg2"}),
    "psycopg2": frozenset({"psycopg2"}),
    "sqlalchemy": frozenset({"sqlalchemy", "psycopg2"}),
}

#: Each class whose driver is optional -> (its module here, the extra that installs the driver).
OPTIONAL: dict[str, tuple[str, str]] = {
    "AsyncpgConnector": ("asyncpg", "asyncpg"),
    "AsyncpgDriver": ("asyncpg", "asyncpg"),
    "AsyncpgPoolDriver": ("asyncpg", "asyncpg"),
    "AiopgConnector": ("aiopg", "aiopg"),
    "Psycopg2Connector": ("psycopg2", "psycopg2"),
    "SQLAlchemyPsycopg2Connector": ("sqlalchemy", "sqlalchemy"),
}


def load(name: str) -> Any:
    """The class ``name`` of :data:`OPTIONAL`, importing its module (and driver) now.

    A driver that is not installed raises :class:`~pgqueue_ref.exceptions.DriverNotInstalled`,
    which says which extra brings it; any other import error propagates as it is.
    """
    module_name, extra = OPTIONAL[name]
    try:
        module = importlib.import_module(f"{__name__}.{module_name}")
    except ModuleNotFoundError as error:
        missing = error.name or ""
        if missing not in EXTRAS[extra]:  # the driver is there, and broken: say so as it is
            raise
        raise DriverNotInstalled(
            f"{name} needs the {missing!r} package, which is not installed: "
            f'pip install "pgqueue_ref[{extra}]"'
        ) from error
    return getattr(module, name)


def module_getattr(module: str, names: frozenset[str]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` (PEP 562) for re-exporting optional classes:
    each of ``names`` is loaded on first access, then kept in ``module``."""

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        value = load(name)
        setattr(sys.modules[module], name, value)
        return value

    return __getattr__
