"""The audit log over HTTP as C2SP tlog-tiles (https://c2sp.org/tlog-tiles), read-only.

- `GET /checkpoint`: the latest signed checkpoint (with the cosignatures witnesses returned
  for it), `text/plain; charset=utf-8`, cacheable for 2 seconds only (it changes).
- `GET /tile/<L>/<N>[.p/<W>]`: hash tiles, `application/octet-stream`, immutable.
- `GET /tile/entries/<N>[.p/<W>]`: entry bundles (uint16-length-prefixed entries), auditors
  only.

Hash tiles and checkpoints are hashes and signatures: they reveal no entry, so they are
public — on the ops server's public port — and anyone (a witness, a monitor, a citizen's
app) can check that the log only grows. Entries name callers, cases and citizens' pseudonyms,
so entry bundles are served only on the `[audit] tiles_listen` listener, which asks for a
client certificate of the gateway's CA (mutual TLS), and only to a caller the policy in force
gives the auditor role; elsewhere they are 403. That listener serves the whole API, so an
auditor reads everything from one URL.

A resource is served only when the latest checkpoint's tree contains it (a full tile once the
tree covers it, a partial tile of width W while its W hashes lie within the tree); the
paths are parsed strictly (one spelling per tile) and only files under `tile/` named from the
parsed numbers are ever opened. Entry bundles are not compressed: their sizes would then
depend on what the entries repeat (BREACH-style), and they carry pseudonyms.

Also here: `WitnessMetrics`, the Prometheus side of gateway.audit.witnessing, and
`AuditPublishing`, what the server wiring starts and stops.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge

from gateway.audit.log import AuditLog
from gateway.audit.merkle import HASH_SIZE
from gateway.audit.note import NoteVerifier, SignedCheckpoint
from gateway.audit.tiles import TileRef, bundle, parse_tile_path, served_in
from gateway.audit.witnessing import WitnessPusher, WitnessTarget
from gateway.audit.witnessing import stop as stop_pusher
from gateway.config import Config, TlsConfig, host_port
from gateway.config.reload import Reloadable
from gateway.domain.errors import IntegrityError, PermissionDenied, Unauthenticated

log = logging.getLogger("proofless.tlog")

CHECKPOINT_CACHE: Final = "public, max-age=2"
TILE_CACHE: Final = "public, max-age=31536000, immutable"
BUNDLE_CACHE: Final = "private, max-age=31536000, immutable"
TEXT: Final = "text/plain; charset=utf-8"
OCTETS: Final = "application/octet-stream"
HANDLER_ARGS: Final = {"max_line_size": 4096, "max_field_size": 4096, "access_log": None}

#: the caller id of a client certificate (DER) if the policy in force makes it an auditor,
#: else None; raises Unauthenticated for a revoked or expired certificate
Authorize = Callable[[bytes], str | None]
Entries = Callable[[int, int], Awaitable[list[bytes]]]


def _text(status: int, message: str) -> web.Response:
    response = web.Response(status=status, text=message + "\n")
    response.headers["Content-Type"] = TEXT
    response.headers["Cache-Control"] = "no-store"
    return response


class TlogResources:
    """The tlog-tiles handlers over one log directory; `add_routes` puts them on an app."""

    def __init__(
        self,
        directory: Path,
        checkpoint: Callable[[], SignedCheckpoint],
        entries: Entries,
    ) -> None:
        self.directory = directory
        self._checkpoint = checkpoint
        self._entries = entries

    def add_routes(self, app: web.Application, *, authorize: Authorize | None = None) -> None:
        """`/checkpoint` and `/tile/...`; entry bundles only with `authorize` (an mTLS
        listener that can tell an auditor), 403 without."""

        async def tile(request: web.Request) -> web.StreamResponse:
            return await self._tile(request, authorize)

        app.router.add_get("/checkpoint", self._get_checkpoint)
        app.router.add_get("/tile/{tail:.+}", tile)

    async def _get_checkpoint(self, _request: web.Request) -> web.Response:
        response = web.Response(body=self._checkpoint().text.encode())
        response.headers["Content-Type"] = TEXT
        response.headers["Cache-Control"] = CHECKPOINT_CACHE
        return response

    async def _tile(self, request: web.Request, authorize: Authorize | None) -> web.StreamResponse:
        ref = parse_tile_path("tile/" + request.match_info["tail"])
        if ref is None:
            return _text(404, "not a tlog-tiles path")
        if ref.level is None:
            return await self._bundle(request, ref, authorize)
        if not served_in(ref, self._checkpoint().size):
            return _text(404, "no such tile in the latest checkpoint's tree")
        data = await asyncio.to_thread(self._read_tile, ref)
        if data is None:
            return _text(404, "tile not available")
        response = web.Response(body=data)
        response.headers["Content-Type"] = OCTETS
        response.headers["Cache-Control"] = TILE_CACHE
        return response

    def _read_tile(self, ref: TileRef) -> bytes | None:
        try:
            data = (self.directory / ref.path).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return data if len(data) == ref.width * HASH_SIZE else None

    async def _bundle(
        self, request: web.Request, ref: TileRef, authorize: Authorize | None
    ) -> web.StreamResponse:
        if authorize is None:
            return _text(
                403,
                "entry bundles are served to auditors only, on the audit tiles listener "
                "(mutual TLS)",
            )
        ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if not der:
            return _text(401, "a client certificate is required")
        try:
            caller = authorize(der)
        except Unauthenticated as exc:
            return _text(401, exc.message)
        except PermissionDenied as exc:
            return _text(403, exc.message)
        if caller is None:
            return _text(403, "entry bundles need the auditor role")
        if not served_in(ref, self._checkpoint().size):
            return _text(404, "no such entry bundle in the latest checkpoint's tree")
        start = ref.index * 256
        try:
            data = bundle(await self._entries(start, start + ref.width))
        except IntegrityError as exc:
            log.error("entry bundle %s not served: %s", ref.path, exc.message)
            return _text(500, exc.message)
        log.info("entry bundle read", extra={"caller": caller, "bundle": ref.path})
        response = web.Response(body=data)
        response.headers["Content-Type"] = OCTETS
        response.headers["Cache-Control"] = BUNDLE_CACHE
        return response


def tiles_context(tls: TlsConfig) -> ssl.SSLContext:
    """The tiles listener's TLS: the gateway's certificate, and a client certificate of its
    CA required in the handshake."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(tls.cert, tls.key)
    ctx.load_verify_locations(cafile=tls.ca)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


@web.middleware
async def _nosniff(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    response = await handler(request)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    return response


class TilesListener:
    """`[audit] tiles_listen`: the whole tlog-tiles API over mutual TLS, entry bundles to
    auditors (see the module docstring)."""

    def __init__(self, resources: TlogResources, tls: TlsConfig, authorize: Authorize) -> None:
        self._resources = resources
        self._authorize = authorize
        self._ssl = tiles_context(tls)
        self.tls_files = Reloadable(
            "audit tiles listener TLS material",
            [tls.cert, tls.key, tls.ca],
            lambda: self._reload(tls),
        )
        self._runner: web.AppRunner | None = None

    def _reload(self, tls: TlsConfig) -> None:
        self._ssl.load_cert_chain(tls.cert, tls.key)
        self._ssl.load_verify_locations(cafile=tls.ca)

    def app(self) -> web.Application:
        app = web.Application(
            client_max_size=4096, middlewares=[_nosniff], handler_args=HANDLER_ARGS
        )
        self._resources.add_routes(app, authorize=self._authorize)
        return app

    async def start(self, host: str, port: int) -> int:
        runner = web.AppRunner(self.app())
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port, ssl_context=self._ssl).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        bound = int(runner.addresses[0][1])
        log.info("audit tiles listener serving", extra={"host": host, "port": bound})
        return bound

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


class WitnessMetrics:
    """proofless_witness_requests_total{witness, outcome} and
    proofless_witness_cosigned_size{witness}: pushes to each configured witness and the
    largest tree size it has cosigned (witness names come from the configuration)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "proofless_witness_requests_total",
            "add-checkpoint requests to each witness, by outcome (cosigned, conflict, "
            "inconsistent, ahead, refused, error).",
            ["witness", "outcome"],
            registry=registry,
        )
        self.cosigned_size = Gauge(
            "proofless_witness_cosigned_size",
            "The tree size each witness holds cosigned, as last learnt.",
            ["witness"],
            registry=registry,
        )

    def __call__(self, witness: str, outcome: str, size: int | None) -> None:
        self.requests.labels(witness=witness, outcome=outcome).inc()
        if size is not None:
            self.cosigned_size.labels(witness=witness).set(size)


class AuditPublishing:
    """Everything that publishes the audit log beyond the gateway: the tlog-tiles resources
    (public on the ops port, whole on `[audit] tiles_listen`) and the witness pusher of
    `[audit] witnesses`. `start` after the log opened, `stop` before it closes."""

    def __init__(
        self,
        audit: AuditLog,
        config: Config,
        registry: CollectorRegistry,
        *,
        authorize: Authorize,
    ) -> None:
        self._config = config
        targets = [WitnessTarget.parse(w.url, w.key) for w in config.audit.witnesses]
        self.pusher = WitnessPusher(
            audit,
            targets,
            log_key=NoteVerifier.from_vkey(audit.vkey),
            on_outcome=WitnessMetrics(registry) if targets else None,
        )
        self.resources = TlogResources(
            audit.directory,
            lambda: self.pusher.decorate(audit.latest_checkpoint()),
            audit.entries,
        )
        self.listener = (
            TilesListener(self.resources, config.tls, authorize)
            if config.audit.tiles_listen
            else None
        )
        self._task: asyncio.Task[None] | None = None

    @property
    def tls_files(self) -> list[Reloadable[None]]:
        return [self.listener.tls_files] if self.listener is not None else []

    async def start(self) -> int:
        """Start pushing to the witnesses and the tiles listener; its port (0: closed)."""
        if self.pusher.targets:
            self._task = asyncio.create_task(self.pusher.run(), name="audit-witnesses")
        if self.listener is None:
            return 0
        host, port = host_port(self._config.audit.tiles_listen)
        return await self.listener.start(host, port)

    async def stop(self) -> None:
        await stop_pusher(self._task)
        self._task = None
        if self.listener is not None:
            await self.listener.stop()
