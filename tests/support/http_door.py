"""A client of the HTTP/JSON door that looks like a gRPC stub, so that one test body runs over
both doors: `await stub.GetHouseholdRecord(request, timeout=5, metadata=...)` returns the
response message or raises `HttpCallError`, which answers `code()`, `details()` and
`trailing_metadata()` as grpc.aio.AioRpcError does.

It speaks plain HTTP/1.1 JSON through aiohttp with the caller's client certificate, and reads
the route of each RPC from the protos' google.api.http annotations (the door's own rule
function), so a test that passes proves what an integrator with curl would see.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import grpc
from google.protobuf import json_format
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from google.rpc import error_details_pb2, status_pb2

from gateway.devtools.pki import DevPki
from gateway.server.http_door import http_rule
from proofless.v1 import audit_pb2, verification_pb2

CODES = {c.value[0]: c for c in grpc.StatusCode}


def client_context(pki: DevPki, caller: str | None) -> ssl.SSLContext:
    """TLS as an approval system sets it up: our CA, and its certificate (None: no cert)."""
    ctx = ssl.create_default_context(cafile=str(pki.ca_pem))
    if caller is not None:
        ctx.load_cert_chain(str(pki.client_pem(caller)), str(pki.client_key(caller)))
    return ctx


def client_files(pki: DevPki, caller: str) -> tuple[Path, Path]:
    return pki.client_pem(caller), pki.client_key(caller)


class HttpCallError(Exception):
    """A call the door answered with an error: the google.rpc.Status of the body."""

    def __init__(self, status: int, body: bytes, headers: Any) -> None:
        self.http_status = status
        self.body = body
        self.headers = headers
        self.status = status_pb2.Status()
        json_format.Parse(body.decode("utf-8"), self.status)
        super().__init__(f"HTTP {status}: {self.status.message}")

    def code(self) -> grpc.StatusCode:
        return CODES[self.status.code]

    def details(self) -> str:
        return self.status.message

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        rid = self.headers.get("x-request-id")
        return (("x-request-id", rid),) if rid else ()

    def rich(self) -> list[Any]:
        """The google.rpc detail messages, unpacked (as tests.support.stack.rich_details)."""
        out: list[Any] = []
        for detail in self.status.details:
            for kind in (
                error_details_pb2.BadRequest,
                error_details_pb2.ErrorInfo,
                error_details_pb2.RetryInfo,
            ):
                if detail.Is(kind.DESCRIPTOR):
                    msg = kind()
                    detail.Unpack(msg)
                    out.append(msg)
        return out


def _grpc_timeout(seconds: float) -> str:
    return f"{max(1, round(seconds * 1000))}m"


class HttpStub:
    """The RPCs of `service` over the door at `base` (https://host:port)."""

    def __init__(self, session: aiohttp.ClientSession, base: str, service: ServiceDescriptor):
        self._session = session
        self._base = base
        self._service = service

    def __getattr__(self, name: str) -> Any:
        method = self._service.methods_by_name.get(name)
        if method is None:
            raise AttributeError(name)
        rule = http_rule(self._service.full_name, name, method.GetOptions())
        response_class = GetMessageClass(method.output_type)

        async def call(
            request: Message,
            *,
            timeout: float | None = None,  # noqa: ASYNC109 - the gRPC stub's keyword
            metadata: Sequence[tuple[str, str]] = (),
        ) -> Message:
            headers = dict(metadata)
            if timeout is not None:
                headers["grpc-timeout"] = _grpc_timeout(timeout)
            url = self._base + rule.path
            data = json_format.MessageToDict(request)
            if rule.body == "*":
                headers["content-type"] = "application/json"
                body: bytes | None = json.dumps(data).encode()
            else:
                body = None
                if data:
                    url += "?" + urlencode(data)
            async with self._session.request(rule.verb, url, data=body, headers=headers) as resp:
                raw = await resp.read()
                if resp.status != 200:
                    raise HttpCallError(resp.status, raw, resp.headers)
                message = response_class()
                json_format.Parse(raw.decode("utf-8"), message, ignore_unknown_fields=False)
                return message

        return call


async def http_stubs(stack: Any, caller: str | None) -> tuple[HttpStub, HttpStub]:
    """The VerificationService and AuditService stubs of `caller` over the stack's HTTP door,
    on a session closed with the stack."""
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=client_context(stack.pki, caller))
    )
    await stack._exit.enter_async_context(session)
    base = f"https://127.0.0.1:{stack.gateway.http_port}"
    return (
        HttpStub(
            session, base, verification_pb2.DESCRIPTOR.services_by_name["VerificationService"]
        ),
        HttpStub(session, base, audit_pb2.DESCRIPTOR.services_by_name["AuditService"]),
    )


async def curl(
    pki: DevPki, caller: str, url: str, body: Any, flag: str, cwd: Path
) -> tuple[str, str]:
    """POST `body` as JSON with the curl command (`flag`: --http1.1 or --http2) and the
    caller's certificate, as the README tells an integrator to; (answer text, "VERSION
    STATUS"), asserting curl itself succeeded."""
    proc = await asyncio.create_subprocess_exec(
        "curl", "-sS", flag,
        "--cert", str(pki.client_pem(caller)),
        "--key", str(pki.client_key(caller)),
        "--cacert", str(pki.ca_pem),
        "-H", "content-type: application/json",
        "-d", json.dumps(body),
        "-w", "\n%{http_version} %{http_code}",
        url,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    text, _, tail = out.decode().rpartition("\n")
    return text, tail
