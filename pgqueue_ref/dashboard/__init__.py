"""The dashboard: the queue's live state in a browser, and ``/metrics`` for Prometheus.

Start it from the command line (``python -m pgqueue_ref dashboard --port 8000``)
or from Python, in the background, e.g. in a notebook::

    from pgqueue_ref.dashboard import serve_in_background

    dashboard = serve_in_background(dsn)  # a free port on 127.0.0.1
    dashboard.url  # 'http://127.0.0.1:41234/'
    dashboard.stop()

The figures of ``/metrics`` are also a Python call, which needs no web server:
:func:`~pgqueue_ref.dashboard.reads.read_figures_async`. The pieces, one module each:

=============  ==============================================================
``reads``      what the page and ``/metrics`` read (``dashboard_*`` named queries)
``actions``    retry, cancel, abort: the same from the page and the CLI
``metrics``    the figures in Prometheus' text format (prometheus-client)
``server``     the Starlette application and its guards; the templates and
               the script are in ``templates/`` and ``static/``
``serving``    uvicorn, in the foreground or from a thread
=============  ==============================================================

``reads`` and ``actions`` need nothing but the core; ``metrics``, ``server``
and ``serving`` need the ``dashboard`` extra (``pip install "pgqueue_ref[dashboard]"``),
and name it in a :class:`~pgqueue_ref.exceptions.DashboardNotInstalled` when it
is missing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ..exceptions import DashboardNotInstalled
from .actions import ACTIONS, ActionResult, run_action_async
from .reads import DurationHistogram, Figures, Overview, read_figures, read_figures_async

if TYPE_CHECKING:
    from .metrics import metrics_text
    from .server import Settings, create_app
    from .serving import DashboardServer, run, serve_in_background

__all__ = [
    "ACTIONS",
    "ActionResult",
    "DashboardServer",
    "DurationHistogram",
    "Figures",
    "Overview",
    "Settings",
    "create_app",
    "metrics_text",
    "read_figures",
    "read_figures_async",
    "run",
    "run_action_async",
    "serve_in_background",
]

#: The packages of the ``dashboard`` extra, as imported.
EXTRA_PACKAGES = frozenset({"starlette", "uvicorn", "jinja2", "prometheus_client"})
_LAZY = {"metrics_text": "metrics", "Settings": "server", "create_app": "server",
         "DashboardServer": "serving", "run": "serving", "serve_in_background": "serving"}  # fmt: skip


def load(module: str) -> Any:
    """``pgqueue_ref.dashboard.<module>``, or DashboardNotInstalled naming the extra."""
    try:
        return importlib.import_module(f"{__name__}.{module}")
    except ModuleNotFoundError as error:
        if (error.name or "").partition(".")[0] not in EXTRA_PACKAGES:
            raise
        raise DashboardNotInstalled(
            f"the dashboard needs the {error.name!r} package, which is not installed: "
            'pip install "pgqueue_ref[dashboard]"'
        ) from error


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(load(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
