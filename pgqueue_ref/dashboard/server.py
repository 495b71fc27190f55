"""The dashboard's web application: Starlette, Jinja2 templates, 75 lines of plain JavaScript.

Routes::

    GET  /                              the page (rendered whole on the server)
    GET  /state?queue=Q&task=T          the page's live part, which the script fetches every second
    POST /api/jobs/{id}/{action}        retry | cancel | abort (not with read_only)
    GET  /metrics                       Prometheus' text format
    GET  /static/...                    the script and the style sheet

Every value reaches the page through Jinja2 with autoescaping on, on the
server, so a task argument or an error holding ``<script>`` arrives as text;
the script swaps in HTML the server escaped and nothing else, and the
Content-Security-Policy allows no inline script at all (a second wall).

Safe by default:

* it listens on 127.0.0.1; on any other address it refuses to start without
  a token (:class:`~pgqueue_ref.exceptions.UnsafeDashboard`);
* with a token, every request needs it: ``Authorization: Bearer TOKEN`` (what
  Prometheus sends with ``authorization: {credentials: TOKEN}``), or once
  ``?token=TOKEN``, answered with a redirect that drops it from the address and
  sets an HttpOnly, SameSite=Strict cookie;
* on 127.0.0.1 the ``Host`` header must name a local host, so a web page cannot
  reach the dashboard by pointing a name of its own at 127.0.0.1 (DNS rebinding);
* an action is a POST that carries the header ``X-Pgqueue-Ref: action``, which a
  form on another site cannot send (and a script there could only after a CORS
  preflight that is never answered), from this page's own origin;
* ``read_only`` leaves the actions off the page and refuses them (403);
* the page shows the database as the server names it (user, host, port,
  database), never a DSN, and the access log is the method, the path without
  its query string, and the status.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlencode, urlsplit

import jinja2
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..app import App
from ..exceptions import PgQueueError, UnsafeDashboard
from ..manager import Call, JobManager
from ..sql import QUERIES
from .actions import ACTIONS, run_action_async
from .metrics import CONTENT_TYPE, metrics_text
from .reads import OUTCOMES, STALLED_AFTER, STATUSES, read_figures_async, read_overview_async

__all__ = ["Settings", "create_app", "database_name", "is_local"]

logger = logging.getLogger("pgqueue_ref.dashboard")

#: A token shorter than this is refused: it could be guessed.
MIN_TOKEN_LENGTH = 16
#: The header an action must carry (see the module docstring), as Starlette spells it.
ACTION_HEADER = "x-pgqueue-ref"
COOKIE = "pgqueue_ref_dashboard"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """How a dashboard behaves; checked when made."""

    host: str = "127.0.0.1"
    read_only: bool = False
    token: str | None = None
    #: Seconds between the page's refreshes.
    refresh: float = 1.0
    #: /metrics' finished-per-second window, and when a worker counts as dead.
    window: float = 60.0
    stalled_after: float = STALLED_AFTER
    #: Host header names accepted besides the local ones (a proxy's, say);
    #: ignored with a token, which guards on its own.
    allowed_hosts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.token is not None and len(self.token) < MIN_TOKEN_LENGTH:
            raise UnsafeDashboard(
                f"the dashboard's token is {len(self.token)} characters long; use at least "
                f"{MIN_TOKEN_LENGTH}, e.g. python -c 'import secrets; print(secrets.token_urlsafe())'"
            )
        if not is_local(self.host) and self.token is None:
            raise UnsafeDashboard(
                f"the dashboard would listen on {self.host!r}, which other machines can reach, "
                "and anyone there could act on your jobs: give it a token (--token, or "
                "PGQUEUE_REF_DASHBOARD_TOKEN), or listen on 127.0.0.1 (the default)"
            )
        if not self.refresh > 0:
            raise ValueError(f"refresh={self.refresh!r}: expected seconds > 0")


def is_local(host: str) -> bool:
    """Whether ``host`` is an address only this machine reaches (loopback)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


# -- the page ----------------------------------------------------------------------


def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("pgqueue_ref.dashboard", "templates"),
        autoescape=True,  # every {{ value }} is escaped: the point of it all
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["age"] = _age
    env.filters["clock"] = lambda moment: "-" if moment is None else moment.strftime("%H:%M:%S")
    env.filters["short"] = lambda text, width=60: (
        text if len(text) <= width else text[: width - 1] + "…"
    )
    env.globals.update(STATUSES=STATUSES, OUTCOMES=OUTCOMES, ACTIONS=ACTIONS, chart=_chart,
                       select=_select_link)  # fmt: skip
    return env


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.0f} h"


def _select_link(queue: str | None = None, task: str | None = None) -> str:
    """The page's own address for one queue's or task's jobs (relative: works behind a proxy)."""
    params = {k: v for k, v in (("queue", queue), ("task", task)) if v is not None}
    return "?" + urlencode(params) if params else "."


@dataclasses.dataclass(frozen=True, slots=True)
class _Bar:
    x: float
    width: float
    parts: list[tuple[str, float, float]]  # (outcome, y, height)
    title: str


def _chart(
    rows: list[dict[str, Any]], height: float = 90.0, width: float = 600.0
) -> dict[str, Any]:
    """The throughput rows as stacked SVG bars (numbers only: nothing to escape)."""
    top = max([sum(int(r[o]) for o in OUTCOMES) for r in rows] + [1])
    step = width / max(len(rows), 1)
    bars = []
    for i, row in enumerate(rows):
        y, parts = height, []
        for outcome in OUTCOMES:
            h = height * int(row[outcome]) / top
            if h:
                y -= h
                parts.append((outcome, y, h))
        counts = ", ".join(f"{row[o]} {o}" for o in OUTCOMES if row[o])
        title = f"{row['start']:%H:%M:%S}: {counts or 'none finished'}"
        bars.append(_Bar(i * step + 1, max(step - 2, 1), parts, title))
    return {"bars": bars, "top": top, "height": height, "width": width}


# -- the guards ----------------------------------------------------------------------

_HEADERS = [
    (b"content-security-policy",
     (b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
      b"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]  # fmt: skip


class _Guard:
    """Outermost: security headers on every response, and an access log that
    names the path without its query string (where a token could be)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_with_headers(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), *_HEADERS]
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            logger.info("%s %s %s", scope["method"], scope["path"], status)


class _TokenGate:
    """With a token, lets through only requests that carry it (see the module docstring)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token

    def _matches(self, given: str | None) -> bool:
        return given is not None and secrets.compare_digest(given.encode(), self.token.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        given = request.query_params.get("token")
        if given is not None and self._matches(given):
            rest = urlencode(
                [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            )
            here = scope["path"].rsplit("/", 1)[-1] or "."
            response: Response = Response(status_code=303,
                                          headers={"location": here + (f"?{rest}" if rest else "")})  # fmt: skip
            response.set_cookie(COOKIE, self.token, httponly=True, samesite="strict")
            await response(scope, receive, send)
            return
        bearer = request.headers.get("authorization", "")
        if self._matches(bearer.removeprefix("Bearer ")) or self._matches(
            request.cookies.get(COOKIE)
        ):
            await self.app(scope, receive, send)
            return
        await PlainTextResponse(
            "401: this dashboard needs its token: open it once as ...?token=TOKEN, "
            "or send the header 'Authorization: Bearer TOKEN'",
            status_code=401,
        )(scope, receive, send)


# -- the application -----------------------------------------------------------------


def create_app(app: App, settings: Settings, database: str) -> Starlette:
    """The dashboard as an ASGI application, on an App that is open (and stays open
    while it serves). ``database`` is the header's name of the database."""
    jobs = JobManager(app.connector)
    env = _templates()

    def render(name: str, overview: Any) -> HTMLResponse:
        page = env.get_template(name).render(o=overview, s=settings, database=database)
        return HTMLResponse(page)

    async def overview(request: Request) -> Any:
        return await read_overview_async(
            jobs, queue=request.query_params.get("queue"), task=request.query_params.get("task")
        )

    async def page(request: Request) -> Response:
        return render("page.html", await overview(request))

    async def state(request: Request) -> Response:
        return render("state.html", await overview(request))

    async def action(request: Request) -> Response:
        if settings.read_only:
            return _refuse(403, "this dashboard is read-only")
        if request.headers.get(ACTION_HEADER) != "action":
            return _refuse(403, "an action needs the header 'X-Pgqueue-Ref: action' "
                                "(the page's script sends it)")  # fmt: skip
        # The host, not the scheme: a proxy that ends TLS (Jupyter's, say) forwards
        # https as http. Another site's page has another host.
        origin = request.headers.get("origin")
        if origin is not None and urlsplit(origin).netloc != request.url.netloc:
            return _refuse(403, "an action from another site's page is refused")
        name, job_id = request.path_params["action"], request.path_params["job_id"]
        if name not in ACTIONS:
            return _refuse(404, f"no action {name!r}: the actions are {', '.join(ACTIONS)}")
        result = await run_action_async(jobs, name, job_id)
        logger.info("%s job %s: %s", name, job_id, result.message)
        return JSONResponse({"done": result.done, "message": result.message},
                            status_code=200 if result.done else 409)  # fmt: skip

    async def metrics(request: Request) -> Response:
        figures = await read_figures_async(
            jobs, window=settings.window, stalled_after=settings.stalled_after
        )
        return Response(metrics_text(figures), media_type=CONTENT_TYPE)

    async def database_error(request: Request, error: Exception) -> Response:
        logger.warning("%s %s: %s", request.method, request.url.path, error)
        return PlainTextResponse(f"503: the database did not answer: {error}", status_code=503)

    routes = [
        Route("/", page),
        Route("/state", state),
        Route("/api/jobs/{job_id:int}/{action}", action, methods=["POST"]),
        Route("/metrics", metrics),
        Mount("/static", StaticFiles(packages=[("pgqueue_ref.dashboard", "static")])),
    ]
    middleware = [Middleware(_Guard)]
    if settings.token is None:
        hosts = [*LOCAL_HOSTS, *settings.allowed_hosts]
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=hosts))
    else:
        middleware.append(Middleware(_TokenGate, token=settings.token))
    return Starlette(routes=routes, middleware=middleware,
                     exception_handlers={PgQueueError: database_error})  # fmt: skip


def _refuse(status: int, message: str) -> Response:
    return JSONResponse({"done": False, "message": message}, status_code=status)


async def database_name(app: App) -> str:
    """``user@host:port/dbname`` as the server names them: never a DSN, never a password."""
    rows = await JobManager(app.connector).run_async(Call(QUERIES["dashboard_database"], {}, list))
    row = rows[0]
    where = f"{row['host']}:{row['port']}" if row["host"] else "local socket"
    return f"{row['user']}@{where}/{row['dbname']} (PostgreSQL {row['server_version']})"
