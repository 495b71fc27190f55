"""Serving the dashboard with uvicorn: in the foreground (the CLI) or from a thread.

:func:`run` serves until SIGINT or SIGTERM; :func:`serve_in_background` returns a
:class:`DashboardServer` once it answers, for a notebook or a test. Both bind the
socket first, in the caller's thread, so that a port already taken fails at
once, then open the App in the event loop that serves, check that the schema
is there, and hand uvicorn the application of :mod:`pgqueue_ref.dashboard.server`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, Self
from urllib.parse import urlsplit

import uvicorn

from ..app import App
from ..connectors.psycopg import PsycopgConnector
from ..exceptions import PgQueueError
from .server import Settings, create_app, database_name

__all__ = ["JUPYTERHUB_PREFIX_ENV", "DashboardServer", "Settings", "run", "serve_in_background"]

#: Set by JupyterHub (and so Binder) in each user's server: the server's path prefix.
JUPYTERHUB_PREFIX_ENV = "JUPYTERHUB_SERVICE_PREFIX"


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError:
        sock.close()
        raise
    sock.listen(128)
    sock.setblocking(False)
    return sock


def _url(settings: Settings, sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


async def _serve(app: App, settings: Settings, sock: socket.socket,
                 started: Callable[[uvicorn.Server], None]) -> None:  # fmt: skip
    async with app.open_async():
        missing = await app.schema_manager.missing_tables_async()
        if missing:
            raise PgQueueError(
                f"the database has no pgqueue_ref schema (missing: {', '.join(missing)}): "
                "run 'python -m pgqueue_ref schema apply' first"
            )
        asgi = create_app(app, settings, await database_name(app))
        config = uvicorn.Config(asgi, log_level="warning", access_log=False, lifespan="off")
        server = uvicorn.Server(config)
        started(server)
        await server.serve(sockets=[sock])


def _the_app(target: App | str) -> App:
    return target if isinstance(target, App) else App(connector=PsycopgConnector(conninfo=target))


def run(target: App | str, settings: Settings, port: int,
        ready: Callable[[str], None] = lambda url: None) -> None:  # fmt: skip
    """Serve in the foreground until SIGINT or SIGTERM (the CLI's ``dashboard``).

    ``target``: an App, not open yet (it is opened here), or a DSN. ``ready`` is
    called with the address once the socket listens.
    """
    sock = _bind(settings.host, port)
    url = _url(settings, sock)
    # uvicorn stops gracefully on SIGINT and SIGTERM, then puts back the handlers it
    # found and sends the signal again, for them: ours make that a normal return (exit
    # code 0, as the worker command), and stop a start that is still connecting.
    previous = {signum: signal.signal(signum, _stop) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        with sock:
            asyncio.run(_serve(_the_app(target), settings, sock, lambda server: ready(url)))
    except SystemExit as stop:
        if stop is not _STOP:
            raise
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


_STOP = SystemExit(0)  # raised by the signal handlers of run(), and caught there


def _stop(signum: int, frame: object) -> None:
    raise _STOP


class DashboardServer:
    """A dashboard serving from a thread of its own (:func:`serve_in_background`)."""

    def __init__(self, url: str, thread: threading.Thread, server: uvicorn.Server) -> None:
        self.url = url
        self._thread = thread
        self._server = server

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving and close the dashboard's connections; idempotent."""
        self._server.should_exit = True
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"the dashboard at {self.url} did not stop within {timeout} s")

    def jupyter_url(self) -> str | None:
        """This dashboard through jupyter-server-proxy, on a JupyterHub such as Binder:
        the path ``<the hub's prefix for this server>proxy/<port>/`` (on the hub's own
        address, behind its login). None outside a JupyterHub."""
        prefix = os.environ.get(JUPYTERHUB_PREFIX_ENV)
        return f"{prefix.rstrip('/')}/proxy/{urlsplit(self.url).port}/" if prefix else None

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<DashboardServer {self.url} {'running' if self.running else 'stopped'}>"


def serve_in_background(
    target: App | str,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    read_only: bool = False,
    token: str | None = None,
    refresh: float = 1.0,
    allowed_hosts: tuple[str, ...] = (),
    timeout: float = 30.0,
) -> DashboardServer:
    """Start a dashboard in a background thread, with its own event loop and its own
    connections; return once it answers. ``port=0``: a free port (see ``.url``).

    ``target`` is a DSN, or an App that is not open (the dashboard opens it in its
    own loop, so not the App a notebook uses: give that one's DSN instead).
    ``allowed_hosts``: see :class:`Settings`; on a JupyterHub (``$JUPYTERHUB_SERVICE_PREFIX``
    set) every name, since jupyter-server-proxy forwards the hub's. Errors at start
    (no server, no schema, port taken) are raised here.
    """
    if os.environ.get(JUPYTERHUB_PREFIX_ENV) and not allowed_hosts:
        # Behind a hub, the browser reaches this machine only through the hub's proxy,
        # which forwards the hub's own name as the Host header (see jupyter_url).
        allowed_hosts = ("*",)
    settings = Settings(host=host, read_only=read_only, token=token, refresh=refresh,
                        allowed_hosts=allowed_hosts)  # fmt: skip
    sock = _bind(host, port)
    url = _url(settings, sock)
    holder: dict[str, Any] = {}

    def main() -> None:
        try:
            asyncio.run(_serve(_the_app(target), settings, sock,
                               lambda server: holder.setdefault("server", server)))  # fmt: skip
        except BaseException as error:  # noqa: BLE001  (re-raised in the caller's thread)
            holder["error"] = error
        finally:
            sock.close()

    thread = threading.Thread(target=main, name=f"pgqueue_ref dashboard {url}", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not (holder.get("server") and holder["server"].started):
        if "error" in holder:
            raise holder["error"]
        if not thread.is_alive() or time.monotonic() > deadline:
            raise TimeoutError(f"the dashboard at {url} did not start within {timeout} s")
        time.sleep(0.02)
    return DashboardServer(url, thread, holder["server"])
