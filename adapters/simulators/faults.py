"""Fault injection for the HTTP department simulators, switchable while they run.

    POST   /_admin/faults   {"latency_ms": 300, "error_rate": 0.5, "error_status": 503,
                             "malformed": false, "truncate": false, "hang": false,
                             "reset": false}
    GET    /_admin/faults   the current faults
    DELETE /_admin/faults   back to healthy (and releases hung requests)

Faults apply, in this order, to every request except `/_admin/*` (which also bypasses request
signing: it is a test hook of the simulator, never part of a department's API):
latency, hang (until the faults change or the simulator stops), reset (TCP RST, no answer),
error_rate (an HTTP `error_status` answer), then on the real answer malformed (a body that is
not JSON) or truncate (Content-Length promises more than is sent, then the connection closes).
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import struct
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ADMIN_PREFIX = "/_admin/"


@dataclass(frozen=True)
class Faults:
    latency_ms: int = 0
    error_rate: float = 0.0
    error_status: int = 503
    malformed: bool = False
    truncate: bool = False
    hang: bool = False
    reset: bool = False

    @classmethod
    def parse(cls, payload: Mapping[str, Any]) -> Faults:
        """Validate an admin request body; unknown keys or bad values raise ValueError."""
        known = {f.name: f.type for f in fields(cls)}
        unknown = set(payload) - set(known)
        if unknown:
            raise ValueError(f"unknown fault(s): {', '.join(sorted(unknown))}")
        faults = cls(**payload)
        for name in ("malformed", "truncate", "hang", "reset"):
            if not isinstance(getattr(faults, name), bool):
                raise ValueError(f"{name} must be true or false")
        if not isinstance(faults.latency_ms, int) or faults.latency_ms < 0:
            raise ValueError("latency_ms must be a non-negative integer")
        if not isinstance(faults.error_rate, int | float) or not 0 <= faults.error_rate <= 1:
            raise ValueError("error_rate must be between 0 and 1")
        if not isinstance(faults.error_status, int) or not 400 <= faults.error_status <= 599:
            raise ValueError("error_status must be an HTTP error status")
        return faults


class FaultInjector:
    """Holds the current faults of one simulator and applies them as aiohttp middleware."""

    def __init__(self, faults: Faults | None = None, *, seed: int = 0) -> None:
        self.faults = faults or Faults()
        self._rng = random.Random(seed)  # noqa: S311 - reproducible error sampling, not crypto
        self._release = asyncio.Event()

    def set(self, faults: Faults) -> None:
        self.faults = faults
        self.release()

    def clear(self) -> None:
        self.set(Faults())

    def release(self) -> None:
        """Let every hung request go (on any change of faults, and at shutdown)."""
        self._release.set()
        self._release = asyncio.Event()

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(ADMIN_PREFIX):
            return await handler(request)
        f = self.faults
        if f.latency_ms:
            await asyncio.sleep(f.latency_ms / 1000)
        if f.hang:
            await self._release.wait()
        if f.reset:
            _reset(request)
            raise web.HTTPServiceUnavailable  # never reaches the client: the socket is gone
        if f.error_rate and self._rng.random() < f.error_rate:
            return web.json_response(
                {"error": "injected fault"}, status=f.error_status, dumps=_dumps
            )
        response = await handler(request)
        if f.malformed:
            return web.Response(
                body=b'{"code": "0000", "data": {"XM": <html>', content_type="application/json"
            )
        if f.truncate and isinstance(response, web.Response) and response.body:
            return await _truncated(request, bytes(response.body))  # type: ignore[arg-type]
        return response

    def add_admin_routes(self, app: web.Application) -> None:
        app.router.add_get("/_admin/faults", self._get)
        app.router.add_post("/_admin/faults", self._post)
        app.router.add_delete("/_admin/faults", self._delete)

    async def _get(self, _request: web.Request) -> web.Response:
        return web.json_response(asdict(self.faults))

    async def _post(self, request: web.Request) -> web.Response:
        try:
            payload = await request.json()
            if not isinstance(payload, dict):
                raise ValueError("expected a JSON object")
            self.set(Faults.parse(payload))
        except (ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(asdict(self.faults))

    async def _delete(self, _request: web.Request) -> web.Response:
        self.clear()
        return web.json_response(asdict(self.faults))


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)


def _reset(request: web.Request) -> None:
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        # SO_LINGER with a zero timeout: close() sends RST instead of FIN.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


async def _truncated(request: web.Request, body: bytes) -> web.StreamResponse:
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    response.content_length = len(body)
    await response.prepare(request)
    await response.write(body[: len(body) // 2])
    await asyncio.sleep(0)  # let the half body leave before the connection closes
    if request.transport is not None:
        request.transport.close()
    return response
