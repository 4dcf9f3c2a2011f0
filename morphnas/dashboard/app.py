"""The dashboard's web app (Starlette) and a way to run it on a thread (uvicorn).

Pages (HTML shells that ``static/dashboard.js`` fills from the JSON API)::

    /                      every search                 /api/searches
    /search/{id}           one search, live             /api/search/{id}  (ETag; polled)
                                                        /api/search/{id}/curves?trials=a,b
    /trial/{id}            one trial                    /api/trial/{id}
                                                        /api/trial/{id}/onnx  (the ONNX file)

Read-only: every route is a GET. Live updates are polling with ETags: the page asks for the
search every second and gets ``304 Not Modified`` unless a trial changed, so an idle search
costs one small request a second.

Bearer tokens. With ``tokens``, every route but ``/static`` and ``/healthz`` needs one of them:
an ``Authorization: Bearer <token>`` header, or the ``morphnas_token`` cookie that opening any
page once with ``?token=<token>`` sets (HttpOnly, SameSite=Strict; the URL is then redirected
without the token, so it stays out of the history). Tokens are compared in constant time and
never logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from string import Template
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from morphnas.core.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    MorphnasError,
    NotFoundError,
    UnavailableError,
)
from morphnas.dashboard import payload
from morphnas.dashboard.data import Source, flops_of, ids_in

log = logging.getLogger(__name__)

COOKIE = "morphnas_token"
#: Most trials one curves request may name.
MAX_CURVES = 50
_STATUS = {
    NotFoundError: 404,
    InvalidArgumentError: 400,
    FailedPreconditionError: 409,
    UnavailableError: 503,
}
_OPEN_PREFIXES = ("/static/", "/healthz")


def _template(name: str) -> Template:
    text = resources.files("morphnas.dashboard").joinpath("templates", name).read_text("utf-8")
    return Template(text)


def page_html(kind: str, ident: str = "", title: str = "morphnas") -> str:
    """The HTML shell of a page: ``kind`` is searches, search or trial."""
    return _template("page.html").substitute(
        kind=kind,
        ident=_attr(ident),
        title=_attr(title),
        head='<link rel="stylesheet" href="/static/uPlot.min.css">'
        '<link rel="stylesheet" href="/static/dashboard.css">',
        scripts='<script src="/static/uPlot.iife.min.js"></script>'
        '<script src="/static/dashboard.js"></script>',
        data="",
    )


def _attr(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")
    )


def token_ok(presented: str | None, tokens: Sequence[str]) -> bool:
    """Whether ``presented`` is one of ``tokens``, every one compared in constant time."""
    if not presented:
        return False
    given = presented.encode("utf-8")
    found = False
    for token in tokens:
        found |= hmac.compare_digest(given, token.encode("utf-8"))
    return found


def _presented(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.cookies.get(COOKIE)


_LOGIN = """<!doctype html><meta charset="utf-8"><title>morphnas dashboard: token</title>
<body style="font:15px system-ui,sans-serif;margin:3em"><h1>morphnas dashboard</h1>
<p>This server needs a bearer token.</p><form method="get">
<input type="password" name="token" autofocus placeholder="token" size="40">
<button>open</button></form>"""


class _TokenGate:
    """ASGI middleware: refuse requests without a valid token (see the module docstring)."""

    def __init__(self, app: Any, tokens: Sequence[str]) -> None:
        self.app = app
        self.tokens = tuple(tokens)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not self.tokens:
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        path = request.url.path
        if path.startswith(_OPEN_PREFIXES):
            await self.app(scope, receive, send)
            return
        query = request.query_params
        if (
            "token" in query
        ):  # a page opened with ?token=: keep it in a cookie, drop it from the URL
            if token_ok(query["token"], self.tokens):
                rest = urlencode([(k, v) for k, v in query.multi_items() if k != "token"])
                response: Response = RedirectResponse(path + (f"?{rest}" if rest else ""), 303)
                response.set_cookie(
                    COOKIE, query["token"], httponly=True, samesite="strict", path="/"
                )
                await response(scope, receive, send)
                return
        elif token_ok(_presented(request), self.tokens):
            await self.app(scope, receive, send)
            return
        log.info("dashboard: refused %s (missing or wrong token)", path)
        if path.startswith("/api/"):
            response = JSONResponse({"error": "a bearer token is required"}, 401)
        else:
            response = HTMLResponse(_LOGIN, 401)
        response.headers["www-authenticate"] = "Bearer"
        await response(scope, receive, send)


def _errors(
    endpoint: Callable[[Request], Response],
) -> Callable[[Request], Awaitable[Response]]:
    """Run a blocking endpoint on a thread; domain errors become JSON with their status."""

    async def wrapped(request: Request) -> Response:
        try:
            return await asyncio.to_thread(endpoint, request)
        except MorphnasError as err:
            status = next((s for cls, s in _STATUS.items() if isinstance(err, cls)), 500)
            if status == 500:
                log.exception("dashboard: %s failed", request.url.path)
            return JSONResponse({"error": str(err)}, status)

    return wrapped


def _json(request: Request, data: Any, etag: bool = False) -> Response:
    body = payload.to_json(data).encode("utf-8")
    headers = {"cache-control": "no-cache"}
    if etag:
        tag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        headers["etag"] = tag
        if request.headers.get("if-none-match") == tag:
            return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)


def build_app(source: Source, tokens: Sequence[str] = ()) -> Any:
    """The dashboard as an ASGI app reading ``source``; ``tokens`` (if any) guard it."""

    def searches_page(request: Request) -> Response:
        return HTMLResponse(page_html("searches", title="morphnas: searches"))

    def search_page(request: Request) -> Response:
        ident = request.path_params["ident"]
        return HTMLResponse(page_html("search", ident, f"morphnas: search {ident[:8]}"))

    def trial_page(request: Request) -> Response:
        ident = request.path_params["ident"]
        return HTMLResponse(page_html("trial", ident, f"morphnas: trial {ident[:8]}"))

    def api_searches(request: Request) -> Response:
        rows = [payload.search_summary(s, source.trials(s.id)) for s in source.searches()]
        return _json(request, {"searches": rows}, etag=True)

    def api_search(request: Request) -> Response:
        search_id = request.path_params["ident"]
        search = source.search(search_id)
        trials = source.trials(search_id)
        fronts = payload.pareto_fronts(source, search_id, trials)
        return _json(request, payload.search_payload(search, trials, fronts=fronts), etag=True)

    def api_curves(request: Request) -> Response:
        search_id = request.path_params["ident"]
        wanted = ids_in(request.query_params.get("trials", "").split(","), MAX_CURVES)
        if not wanted:
            wanted = payload.curve_ids(source.trials(search_id))
        return _json(request, payload.curves_payload(source.curves(search_id, wanted)))

    def api_trial(request: Request) -> Response:
        search, trial = source.trial(request.path_params["ident"])
        trials = source.trials(search.id)
        curves = source.curves(search.id, [trial.id])
        return _json(request, payload.trial_payload(search, trial, trials, curves))

    def api_onnx(request: Request) -> Response:
        search, trial = source.trial(request.path_params["ident"])
        blob = source.onnx(trial.id)
        name = f"{search.name[:40]}-trial-{trial.number}.onnx"
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        return Response(
            blob,
            media_type="application/octet-stream",
            headers={"content-disposition": f'attachment; filename="{safe}"'},
        )

    def healthz(request: Request) -> Response:
        return Response("ok", media_type="text/plain")

    static = str(resources.files("morphnas.dashboard").joinpath("static"))
    routes = [
        Route("/", _errors(searches_page)),
        Route("/search/{ident}", _errors(search_page)),
        Route("/trial/{ident}", _errors(trial_page)),
        Route("/api/searches", _errors(api_searches)),
        Route("/api/search/{ident}", _errors(api_search)),
        Route("/api/search/{ident}/curves", _errors(api_curves)),
        Route("/api/trial/{ident}", _errors(api_trial)),
        Route("/api/trial/{ident}/onnx", _errors(api_onnx)),
        Route("/healthz", healthz),
        Mount("/static", StaticFiles(directory=static), name="static"),
    ]
    return _TokenGate(Starlette(routes=routes), tokens)


@dataclass
class RunningDashboard:
    """A dashboard serving on a thread; ``stop`` ends it."""

    host: str
    port: int
    _server: Any
    _thread: threading.Thread

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def stop(self, timeout: float = 5.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)


#: Searches whose FLOPs :func:`warm_flops` computes ahead of the first visit (latest first).
WARM_SEARCHES = 20


def warm_flops(source: Source, searches: int = WARM_SEARCHES) -> None:
    """Compute the FLOPs of the latest searches' trials into :func:`flops_of`'s cache, so the
    first visit to a big search does not parse every architecture (about 1 ms each) itself."""
    try:
        latest = sorted(source.searches(), key=lambda s: s.created_at, reverse=True)
        for search in latest[:searches]:
            for trial in source.trials(search.id):
                flops_of(trial.architecture)
    except Exception:  # noqa: BLE001 - only a cache warm-up; the pages report real errors
        log.debug("dashboard: warming the FLOPs cache failed", exc_info=True)


def start_dashboard(
    source: Source,
    host: str = "127.0.0.1",
    port: int = 0,
    tokens: Sequence[str] = (),
    *,
    warm: bool = True,
) -> RunningDashboard:
    """Serve the dashboard of ``source`` on ``host:port`` (0: a free port) on a daemon thread;
    returns once it accepts connections. Raises OSError if the port cannot be bound. ``warm``:
    compute the latest searches' FLOPs on another thread meanwhile (see :func:`warm_flops`)."""
    import socket

    import uvicorn

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    bound = sock.getsockname()[1]
    config = uvicorn.Config(
        build_app(source, tokens), log_level="warning", access_log=False, lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="dashboard", daemon=True
    )
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise OSError(f"the dashboard could not start on {host}:{bound}")
        thread.join(0.02)
    if warm:
        threading.Thread(
            target=warm_flops, args=(source,), name="dashboard-warm", daemon=True
        ).start()
    return RunningDashboard(host, bound, server, thread)
