"""The ops HTTP server: health and published keys (public), metrics and the live dashboard
(internal), on ports of their own.

A thin aiohttp shell. What it serves comes from callables the server wiring passes in (the
JWKS, the audit verifier key, readiness), from the metrics registry, and from the dashboard
sampler (`gateway.ops.dashboard.sampler`), whose task this server owns: started in `start`,
cancelled in `stop`.

The port faces hostile input like the gRPC port does: GET and HEAD only, bodies capped at a
few KiB, request lines and headers capped, a fixed set of paths (no static directory, so no
traversal), and strict security headers with a CSP that allows only this origin's files.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from importlib import resources
from typing import Any, Final

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.ops.dashboard.sampler import Sampler
from gateway.ops.metrics import Metrics

log = logging.getLogger(__name__)

MAX_BODY_BYTES: Final = 4096
MAX_LINE_BYTES: Final = 4096
JWKS_MAX_AGE_SECONDS: Final = 300
#: The request handler's settings, given to the Application (aiohttp merges them into the
#: handler's keywords; as a keyword of the runner, `handler_args` reached the handler as an
#: unknown argument and aiohttp fell back to its defaults with a warning). No access log of
#: aiohttp's own: the ops server's requests carry no caller, and the lines would go to stderr
#: beside the gateway's JSON logs.
HANDLER_ARGS: Final[Mapping[str, Any]] = {
    "max_line_size": MAX_LINE_BYTES,
    "max_field_size": MAX_LINE_BYTES,
    "access_log": None,
}

SECURITY_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}

# name served under /dashboard/ -> content type; nothing else from the package is reachable
_DASHBOARD_FILES: Final = {
    "index.html": "text/html",
    "dashboard.js": "text/javascript",
    "dashboard.css": "text/css",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _load_dashboard() -> dict[str, bytes]:
    package = resources.files("gateway.ops.dashboard")
    return {name: (package / name).read_bytes() for name in _DASHBOARD_FILES}


@web.middleware
async def _security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        # 404/405/413 and redirects carry the headers too
        exc.headers.update({k: v for k, v in SECURITY_HEADERS.items() if k not in exc.headers})
        raise
    except Exception:
        # a failing callback (JWKS, vkey) is a 500 with no trace on the wire
        log.exception("ops request failed")
        raise web.HTTPInternalServerError(headers=SECURITY_HEADERS) from None
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def _json(
    body: Mapping[str, Any], *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return web.json_response(text=text, status=status, headers=headers)


class OpsServer:
    """The public endpoints (/healthz, /readyz, /.well-known/jwks.json, /audit/vkey) and the
    internal ones (/metrics, /dashboard: per-caller and per-item counts, the covert items'
    included), on one listener or on two.

    `start(host, port)` serves both on one port (the dev setup, on loopback);
    `start(host, port, internal=(host, port))` serves the internal endpoints only on the
    second listener, which the deployment keeps off the public network."""

    def __init__(
        self,
        *,
        metrics: Metrics,
        jwks: Callable[[], Mapping[str, Any]],
        audit_vkey: Callable[[], str],
        ready: Callable[[], bool | Mapping[str, Any]],
        live: Callable[[], bool] = lambda: True,
        sample_interval: float = 1.0,
        public_routes: Callable[[web.Application], None] | None = None,
    ) -> None:
        self.metrics = metrics
        self._jwks = jwks
        self._audit_vkey = audit_vkey
        self._ready = ready
        self._live = live
        #: more public routes (the audit log's tlog-tiles API, gateway.ops.tlog)
        self._public_routes = public_routes
        self.sampler = Sampler(metrics.registry, interval=sample_interval)
        self._files = _load_dashboard()
        self._runners: list[web.AppRunner] = []
        self._sampling: asyncio.Task[None] | None = None
        #: the port of the internal endpoints (the public port when they share one)
        self.internal_port = 0

    def app(self, *, public: bool = True, internal: bool = True) -> web.Application:
        """The aiohttp application with the public and/or the internal routes (exposed for
        tests and embedding)."""
        app = web.Application(
            client_max_size=MAX_BODY_BYTES,
            middlewares=[_security_headers],
            handler_args=HANDLER_ARGS,
        )
        if public:
            app.router.add_get("/healthz", self._healthz)
            app.router.add_get("/readyz", self._readyz)
            app.router.add_get("/.well-known/jwks.json", self._jwks_json)
            app.router.add_get("/audit/vkey", self._vkey)
            if self._public_routes is not None:
                self._public_routes(app)
        if internal:
            app.router.add_get("/", self._root)
            app.router.add_get("/metrics", self._metrics)
            app.router.add_get("/dashboard", self._dashboard)
            app.router.add_get("/dashboard/", self._dashboard)
            app.router.add_get("/dashboard/data.json", self._data)
            app.router.add_get("/dashboard/{name}", self._dashboard_file)
        return app

    async def start(self, host: str, port: int, *, internal: tuple[str, int] | None = None) -> int:
        """Listen on host:port (0 picks a free port), and the internal endpoints on
        `internal` when given, then start sampling; returns the public port."""
        if self._runners:
            raise RuntimeError("the ops server is already started")
        try:
            if internal is None:
                bound = await self._listen(self.app(), host, port, "all")
                self.internal_port = bound
            else:
                bound = await self._listen(self.app(internal=False), host, port, "public")
                ihost, iport = internal
                self.internal_port = await self._listen(
                    self.app(public=False), ihost, iport, "internal"
                )
        except BaseException:
            await self.stop()
            raise
        self._sampling = asyncio.create_task(self.sampler.run(), name="ops-dashboard-sampler")
        return bound

    async def _listen(self, app: web.Application, host: str, port: int, endpoints: str) -> int:
        runner = web.AppRunner(app)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runners.append(runner)
        bound = int(runner.addresses[0][1])
        log.info(
            "ops server listening: %s endpoints", endpoints, extra={"host": host, "port": bound}
        )
        return bound

    async def stop(self) -> None:
        """Stop sampling and close the listeners; safe to call twice."""
        if self._sampling is not None:
            self._sampling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampling
            self._sampling = None
        while self._runners:
            await self._runners.pop().cleanup()

    # -- handlers ------------------------------------------------------------------------

    async def _root(self, _request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/dashboard")

    async def _metrics(self, _request: web.Request) -> web.Response:
        body = generate_latest(self.metrics.registry)
        response = web.Response(body=body)
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    async def _healthz(self, _request: web.Request) -> web.Response:
        alive = _ask(self._live)
        return _json({"status": "ok" if alive else "failing"}, status=200 if alive else 503)

    async def _readyz(self, _request: web.Request) -> web.Response:
        """503 unless ready; the body names each check and why it fails (no personal data)."""
        try:
            answer: Any = self._ready()
        except Exception:
            log.exception("readiness probe failed")
            answer = False
        body = dict(answer) if isinstance(answer, Mapping) else {"ready": bool(answer)}
        ready = bool(body.get("ready"))
        return _json(body, status=200 if ready else 503)

    async def _jwks_json(self, _request: web.Request) -> web.Response:
        return _json(self._jwks(), headers={"Cache-Control": f"max-age={JWKS_MAX_AGE_SECONDS}"})

    async def _vkey(self, _request: web.Request) -> web.Response:
        return web.Response(text=self._audit_vkey().strip() + "\n", content_type="text/plain")

    async def _dashboard(self, _request: web.Request) -> web.Response:
        return self._file("index.html")

    async def _dashboard_file(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in _DASHBOARD_FILES:
            raise web.HTTPNotFound()
        return self._file(name)

    async def _data(self, _request: web.Request) -> web.Response:
        return _json(self.sampler.data(), headers={"Cache-Control": "no-store"})

    def _file(self, name: str) -> web.Response:
        response = web.Response(body=self._files[name], content_type=_DASHBOARD_FILES[name])
        response.charset = "utf-8"
        response.headers["Cache-Control"] = "no-cache"
        return response


def _ask(probe: Callable[[], bool]) -> bool:
    """A probe that raises says "no": health endpoints answer, they do not crash."""
    try:
        return bool(probe())
    except Exception:
        log.exception("health probe failed")
        return False
