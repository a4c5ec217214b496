"""The HTTP/JSON door: every RPC of VerificationService and AuditService as HTTP/JSON, for
approval systems that do not speak gRPC (ARCHITECTURE.md, "HTTP/JSON door").

REST transcoding from the `google.api.http` annotations in protos/ (the rules Envoy's
gRPC-JSON transcoder and grpc-gateway read): `post` with `body: "*"` (the request message is
the JSON body) and `get` without a body (the request's scalar fields are query parameters).
An RPC without an annotation is served at `POST /<package>.<Service>/<Method>` with the body
"*", as grpc-gateway serves unbound methods. JSON is the proto3 JSON mapping
(google.protobuf.json_format) and nothing is ignored: an unknown field is an error. Errors
are google.rpc.Status JSON (numeric `code`, `message`, `details` with `@type`) with the same
codes, reasons and details as on gRPC, under the HTTP status google/rpc/code.proto gives.

The guarantees are the gRPC door's by construction: the `Door` (gateway.server.door) of the
gRPC interceptor opens, admits and closes each call (request id, caller from the client
certificate, check_caller, rejected-call audit, metrics with transport "http", access log),
and the handler is the servicer method gRPC calls, with a context whose deadline comes from
the `grpc-timeout` header. One listener, one TLS context (the gRPC server's CA, certificate
and key) and ALPN: "h2" is served by the sans-IO `h2` state machine, "http/1.1" by aiohttp.

The TLS handshake asks for a client certificate and verifies any certificate presented
against the CA (a certificate from elsewhere never completes a handshake); a client that
presents none reaches the door only to be answered 401 UNAUTHENTICATED with reason
NO_CLIENT_CERTIFICATE, and that refusal is audited like any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import math
import re
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any, Final, cast
from urllib.parse import parse_qsl

import grpc
import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from aiohttp import web, web_protocol
from google.api import annotations_pb2  # type: ignore[import-untyped]
from google.protobuf import descriptor_pb2, json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor, ServiceDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from google.rpc import code_pb2, error_details_pb2, status_pb2

from gateway.config import TlsConfig
from gateway.config.reload import Reloadable
from gateway.domain.errors import (
    DeadlineExceeded,
    FieldViolation,
    InvalidArgument,
    ProoflessError,
    ResourceExhausted,
)
from gateway.ops.tracing import HttpRoute
from gateway.server.door import Door, request_id_from

log = logging.getLogger("proofless.http")

OPENAPI_PATH: Final = "/openapi.json"
#: HTTP status of each google.rpc.Code, as google/rpc/code.proto maps them
HTTP_STATUS: Final[Mapping[grpc.StatusCode, int]] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
}
#: gRPC's timeout header: up to 8 digits and a unit (hours to nanoseconds)
_GRPC_TIMEOUT = re.compile(r"^([0-9]{1,8})([HMSmun])$")
_TIMEOUT_UNIT_S: Final = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}
#: nesting of request messages the checker follows (the protos nest a few levels)
_MAX_DEPTH: Final = 16
#: well-known types whose JSON form is not an object of their fields: json_format reads them
_JSON_LEAVES: Final = frozenset(
    {
        "google.protobuf.Timestamp",
        "google.protobuf.Duration",
        "google.protobuf.FieldMask",
        "google.protobuf.Struct",
        "google.protobuf.Value",
        "google.protobuf.ListValue",
        "google.protobuf.Any",
        *(
            f"google.protobuf.{w}Value"
            for w in ("Bool", "Int32", "Int64", "UInt32", "UInt64", "Float", "Double", "String")
        ),
        "google.protobuf.BytesValue",
    }
)
_COMMON_HEADERS: Final = (
    ("content-type", "application/json"),
    ("cache-control", "no-store"),  # answers carry personal data: no cache keeps them
    ("x-content-type-options", "nosniff"),
)
_ = error_details_pb2  # registers ErrorInfo, BadRequest, RetryInfo for the Status JSON


# ---- the routes, from the google.api.http annotations ---------------------------------------


@dataclass(frozen=True)
class HttpRule:
    verb: str  # GET or POST
    path: str
    body: str  # "*" (the whole request is the body) or "" (query parameters)


def http_rule(service: str, method: str, options: descriptor_pb2.MethodOptions) -> HttpRule:
    """The HTTP binding of `service`.`method` (full service name): its google.api.http
    annotation, or `POST /<service>/<method>` with the body "*" when it has none. Only what
    this door serves is accepted: get without a body, post with body "*", no path variables
    and no additional bindings (protos/generate.py refuses others when it writes the
    OpenAPI document, so a rule the door cannot serve never ships)."""
    if not options.HasExtension(annotations_pb2.http):
        return HttpRule("POST", f"/{service}/{method}", "*")
    rule = options.Extensions[annotations_pb2.http]
    kind = rule.WhichOneof("pattern")
    where = f"{service}.{method}: google.api.http"
    if kind not in ("get", "post"):
        raise ValueError(f"{where}: only get and post are served, not {kind}")
    path = str(getattr(rule, kind))
    if not path.startswith("/v") or "{" in path or ":" in path.split("/")[1]:
        raise ValueError(f"{where}: {path!r} must be a fixed /v… path without variables")
    if rule.additional_bindings or rule.response_body:
        raise ValueError(f"{where}: additional_bindings and response_body are not served")
    if (kind, rule.body) not in (("get", ""), ("post", "*")):
        raise ValueError(f'{where}: get has no body, post has body "*"')
    return HttpRule(kind.upper(), path, rule.body)


Invoke = Callable[[Message, Any], Awaitable[Message]]


@dataclass(frozen=True)
class Route:
    rpc: str
    rule: HttpRule
    request: type[Message]
    invoke: Invoke
    method: str = ""  # "pkg.Service/Method", the RPC's full name (its span's rpc.method)
    span_route: HttpRoute | None = None


def routes(services: Mapping[ServiceDescriptor, Any]) -> dict[str, dict[str, Route]]:
    """path → HTTP method → route, for each servicer's service."""
    table: dict[str, dict[str, Route]] = {}
    for service, servicer in services.items():
        for method in service.methods:
            rule = http_rule(service.full_name, method.name, method.GetOptions())
            verbs = table.setdefault(rule.path, {})
            if rule.verb in verbs:
                raise ValueError(f"{rule.verb} {rule.path} is bound to two RPCs")
            verbs[rule.verb] = Route(
                rpc=method.name,
                rule=rule,
                request=GetMessageClass(method.input_type),
                invoke=getattr(servicer, method.name),
                method=f"{service.full_name}/{method.name}",
                span_route=HttpRoute(rule.verb, rule.path),
            )
    return table


# ---- requests and replies, whatever the HTTP version ----------------------------------------


@dataclass
class HttpRequest:
    method: str
    path: str
    query: str
    headers: Mapping[str, str]  # names in lower case; a repeated header's last value
    body: bytes
    too_large: bool  # the body went past the limit and was not kept
    peer_der: bytes | None  # the client certificate the handshake verified, DER


@dataclass
class HttpReply:
    status: int
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)


class _Refused(ProoflessError):
    """A request the door refuses before the servicer: an HTTP status of its own."""

    http_status = 400


class _BadRequest(_Refused, InvalidArgument):
    pass


class _WrongMediaType(_Refused):
    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "UNSUPPORTED_MEDIA_TYPE"
    http_status = 415


class _BodyTooLarge(_Refused):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "BODY_TOO_LARGE"
    http_status = 413


def _bad(path: str, why: str) -> _BadRequest:
    return _BadRequest([FieldViolation(path, why)])


def status_json(err: ProoflessError) -> bytes:
    """google.rpc.Status as proto3 JSON: what gRPC carries in grpc-status-details-bin."""
    return _json(err.to_status())


def _json(message: Message) -> bytes:
    data = json_format.MessageToDict(message)
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


def error_reply(err: ProoflessError, request_id: str) -> HttpReply:
    status = err.http_status if isinstance(err, _Refused) else HTTP_STATUS.get(err.code, 500)
    headers = [("x-request-id", request_id)] if request_id else []
    if isinstance(err, ResourceExhausted) and err.retry_after > 0:
        headers.append(("retry-after", str(max(1, math.ceil(err.retry_after)))))
    return HttpReply(status, status_json(err), headers)


def _plain_error(code: int, message: str, reason: str) -> bytes:
    info = error_details_pb2.ErrorInfo(reason=reason, domain="proofless.gov")
    st = status_pb2.Status(code=code, message=message)
    st.details.add().Pack(info)
    return _json(st)


class _Context:
    """What the servicers ask of a gRPC ServicerContext: the time left before the deadline."""

    __slots__ = ("_deadline",)

    def __init__(self, deadline: float | None) -> None:
        self._deadline = deadline

    def time_remaining(self) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())


def timeout_of(headers: Mapping[str, str]) -> float | None:
    """The caller's timeout in seconds from `grpc-timeout` (gRPC's syntax: "5S", "500m")."""
    text = headers.get("grpc-timeout")
    if text is None:
        return None
    m = _GRPC_TIMEOUT.match(text.strip())
    if m is None:
        raise _bad("grpc-timeout", 'must be up to 8 digits and a unit H, M, S, m, u or n ("5S")')
    return int(m.group(1)) * _TIMEOUT_UNIT_S[m.group(2)]


# ---- JSON in: the proto3 JSON mapping, nothing ignored --------------------------------------


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError("duplicate key")
        out[key] = value
    return out


def _no_constant(_name: str) -> Any:
    raise ValueError("NaN and Infinity are not JSON")


def _check_fields(
    data: Any, descriptor: Descriptor, path: str, out: list[FieldViolation], depth: int = 0
) -> None:
    """Every key of `data` must be a field of `descriptor` (its JSON or proto name), every
    message an object and every repeated field an array. Violations name fields by their
    proto names and never quote what was sent."""
    where = path or "body"
    if not isinstance(data, dict):
        out.append(FieldViolation(where, "must be a JSON object"))
        return
    if depth > _MAX_DEPTH:
        out.append(FieldViolation(where, "is nested too deep"))
        return
    by_name: dict[str, FieldDescriptor] = {}
    for f in descriptor.fields:
        by_name[f.name] = f
        by_name[f.json_name] = f
    seen: set[str] = set()
    for key, value in data.items():
        found = by_name.get(key)
        if found is None:
            out.append(FieldViolation(where, "has a field its message does not define"))
            continue
        f = found
        here = f"{path}.{f.name}" if path else f.name
        if f.name in seen:
            out.append(FieldViolation(here, "is given twice (by its JSON and its proto name)"))
        seen.add(f.name)
        kind = f.message_type
        if value is None or kind is None or kind.full_name in _JSON_LEAVES:
            continue  # scalars, enums and well-known types: json_format checks them
        if kind.GetOptions().map_entry:
            if not isinstance(value, dict):
                out.append(FieldViolation(here, "must be a JSON object"))
                continue
            inner = kind.fields_by_name["value"].message_type
            if inner is not None and inner.full_name not in _JSON_LEAVES:
                for item in value.values():
                    _check_fields(item, inner, f"{here}[]", out, depth + 1)
        elif f.is_repeated:
            if not isinstance(value, list):
                out.append(FieldViolation(here, "must be a JSON array"))
                continue
            for i, item in enumerate(value):
                _check_fields(item, kind, f"{here}[{i}]", out, depth + 1)
        else:
            _check_fields(value, kind, here, out, depth + 1)


_FAILED_FIELD = re.compile(r"Failed to parse (\w+) field")


def _failed_path(error: str, descriptor: Descriptor) -> str:
    """The field json_format could not read, by proto names: the chain of "Failed to parse X
    field" in its message, followed only as far as it names fields of the schema (the rest
    of the message may quote the input, and is not used)."""
    names: list[str] = []
    current: Descriptor | None = descriptor
    for name in _FAILED_FIELD.findall(error):
        if current is None:
            break
        f = next((f for f in current.fields if name in (f.name, f.json_name)), None)
        if f is None:
            break
        names.append(f.name)
        current = f.message_type
    return ".".join(names) or "body"


def parse_request(route: Route, request: HttpRequest) -> Message:
    """The request message of `route` from the body (post) or the query (get)."""
    descriptor: Descriptor = route.request.DESCRIPTOR  # type: ignore[assignment]
    data: Any
    if route.rule.body == "*":
        encoding = request.headers.get("content-encoding", "identity").strip().lower()
        if encoding != "identity":
            raise _WrongMediaType("the body must not be compressed (no content-encoding)")
        media, _, params = request.headers.get("content-type", "").partition(";")
        charset = params.strip().lower().replace('"', "")
        if media.strip().lower() != "application/json" or charset not in ("", "charset=utf-8"):
            raise _WrongMediaType("the body must be application/json (UTF-8)")
        if request.too_large:
            raise _BodyTooLarge("the body is larger than the gateway accepts")
        if request.query:
            raise _bad("query", f"{route.rule.path} takes its fields in the JSON body")
        if not request.body.strip():
            data = {}
        else:
            try:
                data = json.loads(
                    request.body.decode("utf-8"),
                    object_pairs_hook=_no_duplicates,
                    parse_constant=_no_constant,
                )
            except (ValueError, RecursionError):
                raise _bad("body", "is not a JSON object in UTF-8 (or repeats a key)") from None
    else:
        if request.body or request.too_large:
            raise _bad("body", f"GET {route.rule.path} takes no body: fields go in the query")
        data = _query_fields(request.query, descriptor)
    violations: list[FieldViolation] = []
    _check_fields(data, descriptor, "", violations)
    if violations:
        raise _BadRequest(violations)
    message = route.request()
    try:
        json_format.ParseDict(data, message, ignore_unknown_fields=False)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
        where = _failed_path(str(exc), descriptor)
        raise _bad(where, "has a value of the wrong type or out of range") from None
    return message


def _query_fields(query: str, descriptor: Descriptor) -> dict[str, Any]:
    """Query parameters as the JSON object of the request's scalar fields."""
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=False, max_num_fields=64)
    except ValueError:
        raise _bad("query", "has too many parameters") from None
    out: dict[str, Any] = {}
    for key, value in pairs:
        f = next((f for f in descriptor.fields if key in (f.name, f.json_name)), None)
        if f is None:
            raise _bad("query", "names a field the request does not define")
        if f.message_type is not None or f.is_repeated:
            raise _bad(f.name, "cannot be given as a query parameter")
        if f.name in out:
            raise _bad(f.name, "is given twice")
        if f.type == FieldDescriptor.TYPE_BOOL and value in ("true", "false"):
            out[f.name] = value == "true"
        else:
            out[f.name] = value
    return out


# ---- the door --------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _pem(der: bytes) -> bytes:
    return ssl.DER_cert_to_PEM_cert(der).encode("ascii")


def openapi_document() -> bytes:
    """The OpenAPI 3.1 document `make proto` writes beside the generated code."""
    try:
        return (resources.files("proofless.v1") / "openapi.json").read_bytes()
    except OSError:
        return b""


def server_context(tls: TlsConfig) -> ssl.SSLContext:
    """TLS of the door: the gRPC server's certificate, key and client CA; HTTP/2 and 1.1."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(tls.cert, tls.key)
    ctx.load_verify_locations(cafile=tls.ca)
    # Asked for and verified against the CA when presented; its absence is answered by the
    # door (401 NO_CLIENT_CERTIFICATE, audited) rather than by a TLS alert.
    ctx.verify_mode = ssl.CERT_OPTIONAL
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    return ctx


class HttpDoor:
    """The HTTP/JSON listener: routes, parsing, the shared Door, and the two HTTP versions."""

    def __init__(
        self,
        door: Door,
        services: Mapping[ServiceDescriptor, Any],
        tls: TlsConfig,
        *,
        max_body_bytes: int,
        max_concurrent_streams: int = 256,
    ) -> None:
        self._door = door
        self._routes = routes(services)
        self._max_body = max_body_bytes
        self._max_streams = max_concurrent_streams
        self._openapi = openapi_document()
        self._ssl = server_context(tls)
        self.tls_files = Reloadable(
            "HTTP door TLS material", [tls.cert, tls.key, tls.ca], lambda: self._reload_tls(tls)
        )
        self._h1 = _Http1Server(self._serve_h1, self._max_body)
        self._h2: set[_Http2Connection] = set()
        self._server: asyncio.Server | None = None

    def _reload_tls(self, tls: TlsConfig) -> None:
        """New handshakes use the rotated certificate and key (and trust a new CA)."""
        self._ssl.load_cert_chain(tls.cert, tls.key)
        self._ssl.load_verify_locations(cafile=tls.ca)

    # -- the handler both HTTP versions call ------------------------------------------------

    async def handle(self, request: HttpRequest) -> HttpReply:
        request_id = request_id_from(request.headers.items())
        if request.path == OPENAPI_PATH and self._openapi:
            return self._openapi_reply(request, request_id)
        verbs = self._routes.get(request.path)
        if verbs is None:
            body = _plain_error(code_pb2.NOT_FOUND, "no RPC at this path", "NO_SUCH_ROUTE")
            return HttpReply(404, body, [("x-request-id", request_id)])
        route = verbs.get(request.method)
        if route is None:
            body = _plain_error(
                code_pb2.UNIMPLEMENTED,
                f"this path takes {' or '.join(sorted(verbs))}",
                "METHOD_NOT_ALLOWED",
            )
            allow = ", ".join(sorted(verbs))
            return HttpReply(405, body, [("x-request-id", request_id), ("allow", allow)])
        return await self._call(route, request, request_id)

    async def _call(self, route: Route, request: HttpRequest, request_id: str) -> HttpReply:
        door = self._door
        visit = door.open(
            route.rpc,
            request_id,
            "http",
            method=route.method,
            headers=request.headers.items(),
            http=route.span_route,
        )
        code = grpc.StatusCode.OK
        reply: HttpReply | None = None
        try:
            await door.admit(visit, _pem(request.peer_der) if request.peer_der else None)
            message = parse_request(route, request)
            timeout = timeout_of(request.headers)
            deadline = None if timeout is None else time.monotonic() + timeout
            try:
                async with asyncio.timeout(timeout) as scope:
                    response = await route.invoke(message, _Context(deadline))
            except TimeoutError:
                if not scope.expired():
                    raise
                raise DeadlineExceeded("the call's deadline passed") from None
            reply = HttpReply(200, _json(response), [("x-request-id", request_id)])
        except ProoflessError as err:
            code = err.code
            reply = error_reply(err, request_id)
        except Exception:
            code = grpc.StatusCode.INTERNAL
            log.exception("unhandled error", extra={"rpc": route.rpc, "request_id": request_id})
            body = _plain_error(
                code_pb2.INTERNAL,
                f"internal error ({request_id})",
                "INTERNAL",
            )
            reply = HttpReply(500, body, [("x-request-id", request_id)])
        finally:
            # a cancelled call (the stream was reset) sends no reply: no HTTP status
            door.close(visit, code, http_status=reply.status if reply is not None else 0)
        return reply

    def _openapi_reply(self, request: HttpRequest, request_id: str) -> HttpReply:
        """The API's description: a certificate from our CA, no caller identity (as gRPC's
        reflection)."""
        headers = [("x-request-id", request_id)]
        if request.peer_der is None:
            body = _plain_error(
                code_pb2.UNAUTHENTICATED,
                "a client certificate is required",
                "NO_CLIENT_CERTIFICATE",
            )
            return HttpReply(401, body, headers)
        if request.method != "GET":
            body = _plain_error(
                code_pb2.UNIMPLEMENTED,
                "this path takes GET",
                "METHOD_NOT_ALLOWED",
            )
            return HttpReply(405, body, [*headers, ("allow", "GET")])
        return HttpReply(200, self._openapi, headers)

    async def _serve_h1(self, request: HttpRequest) -> HttpReply:
        # a task of its own: the call's context variables end with the request, not the
        # connection (aiohttp runs a keep-alive connection's requests in one task)
        return await asyncio.create_task(self.handle(request), context=contextvars.Context())

    # -- the listener -------------------------------------------------------------------------

    async def start(self, host: str, port: int) -> int:
        """Listen on `host`:`port` (0: any free port, for tests); the port bound. The port is
        shared with SO_REUSEPORT, as gRPC's is, for `proofless serve --workers N`."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _AlpnSwitch(self), host, port, ssl=self._ssl, reuse_port=True, backlog=1024
        )
        return int(self._server.sockets[0].getsockname()[1])

    def connection(self, transport: asyncio.BaseTransport) -> asyncio.Protocol:
        """The protocol for a connection whose handshake chose its HTTP version by ALPN."""
        ssl_object = transport.get_extra_info("ssl_object")
        alpn = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
        if alpn == "h2":
            conn = _Http2Connection(self, self._max_body, self._max_streams)
            self._h2.add(conn)
            return conn
        return self._h1()

    async def stop(self, grace: float) -> None:
        """Stop accepting, let calls in flight finish within `grace`, close the rest."""
        if self._server is None:
            return
        self._server.close()
        for conn in list(self._h2):
            conn.goaway()
        await self._h1.shutdown(grace)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                for conn in list(self._h2):
                    await conn.drained()
        for conn in list(self._h2):
            conn.close()
        self._server = None


class _AlpnSwitch(asyncio.Protocol):
    """Hands a connection, once its handshake is done, to HTTP/2 or HTTP/1.1."""

    def __init__(self, door: HttpDoor) -> None:
        self._door = door

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        inner = self._door.connection(transport)
        transport.set_protocol(inner)
        inner.connection_made(transport)


# ---- HTTP/1.1: aiohttp's low-level server --------------------------------------------------


class _Http1Handler(web_protocol.RequestHandler):
    """aiohttp's connection handler, with malformed HTTP answered as a Status without
    quoting the request (aiohttp's own answer can)."""

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        del exc, message
        if status >= 500:
            body = _plain_error(code_pb2.INTERNAL, "internal error", "INTERNAL")
        else:
            body = _plain_error(
                code_pb2.INVALID_ARGUMENT,
                "malformed HTTP request",
                "MALFORMED_HTTP",
            )
            status = 400
        resp = web.Response(status=status, body=body, headers=dict(_COMMON_HEADERS))
        resp.force_close()
        return resp


class _Http1Server(web.Server):
    def __init__(
        self, handle: Callable[[HttpRequest], Awaitable[HttpReply]], max_body: int
    ) -> None:
        super().__init__(
            self._request,
            handler_cancellation=False,
            access_log=None,  # the Door writes the access log
            max_line_size=8190,
            max_field_size=8190,
            auto_decompress=False,  # a compressed body is refused, never inflated
            keepalive_timeout=75,
        )
        self._handle = handle
        self._max_body = max_body

    def __call__(self) -> _Http1Handler:
        return _Http1Handler(self, loop=asyncio.get_running_loop(), **self._kwargs)

    async def _request(self, request: web.BaseRequest) -> web.StreamResponse:
        body, too_large = await self._read(request)
        transport = request.transport
        ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        reply = await self._handle(
            HttpRequest(
                method=request.method,
                path=request.rel_url.raw_path,
                query=request.rel_url.raw_query_string,
                headers={k.lower(): v for k, v in request.headers.items()},
                body=body,
                too_large=too_large,
                peer_der=der or None,
            )
        )
        response = web.Response(status=reply.status, body=reply.body)
        for name, value in (*_COMMON_HEADERS, *reply.headers):
            response.headers[name] = value
        if too_large:
            response.force_close()  # the rest of the body is never read
        return response

    async def _read(self, request: web.BaseRequest) -> tuple[bytes, bool]:
        length = request.content_length
        if length is not None and length > self._max_body:
            return b"", True
        chunks: list[bytes] = []
        size = 0
        while chunk := await request.content.readany():
            size += len(chunk)
            if size > self._max_body:
                return b"", True
            chunks.append(chunk)
        return b"".join(chunks), False


# ---- HTTP/2: the h2 state machine on an asyncio protocol ------------------------------------


@dataclass
class _Stream:
    headers: dict[str, str]
    body: bytearray = field(default_factory=bytearray)
    too_large: bool = False
    task: asyncio.Task[None] | None = None


class _Http2Connection(asyncio.Protocol):
    def __init__(self, door: HttpDoor, max_body: int, max_streams: int) -> None:
        self._door = door
        self._max_body = max_body
        self._conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding=None)
        )
        self._max_streams = max_streams
        self._streams: dict[int, _Stream] = {}
        self._transport: asyncio.Transport | None = None
        self._peer_der: bytes | None = None
        self._window = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A read-write transport by construction (a TLS stream); not an isinstance check:
        # uvloop's TLS transport is no subclass of asyncio.Transport
        self._transport = cast(asyncio.Transport, transport)
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            self._peer_der = ssl_object.getpeercert(binary_form=True) or None
        self._conn.initiate_connection()
        self._conn.update_settings(
            {
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self._max_streams,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 16 * 1024,
            }
        )
        self._flush()

    def data_received(self, data: bytes) -> None:
        try:
            events = self._conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            self._flush()
            self.close()
            return
        for event in events:
            self._event(event)
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self._door._h2.discard(self)
        for stream in self._streams.values():
            if stream.task is not None:
                stream.task.cancel()
        self._window.set()  # wake writers: they find the connection gone

    # -- events --------------------------------------------------------------------------------

    def _event(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            headers = {
                bytes(k).decode("latin-1").lower(): bytes(v).decode("latin-1")
                for k, v in event.headers or ()
            }
            self._streams[event.stream_id] = _Stream(headers=headers)
        elif isinstance(event, h2.events.DataReceived):
            self._conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            stream = self._streams.get(event.stream_id)
            if stream is None or stream.task is not None or stream.too_large:
                return  # answered already (a body past the limit): what follows is dropped
            if len(stream.body) + len(event.data or b"") > self._max_body:
                stream.too_large = True
                stream.body.clear()
                self._dispatch(event.stream_id, stream)  # answer 413 now, drop the rest
            else:
                stream.body += event.data or b""
        elif isinstance(event, h2.events.StreamEnded):
            stream = self._streams.get(event.stream_id)
            if stream is not None and stream.task is None:
                self._dispatch(event.stream_id, stream)
        elif isinstance(event, h2.events.StreamReset):
            stream = self._streams.pop(event.stream_id, None)
            if stream is not None and stream.task is not None:
                stream.task.cancel()  # the caller gave up: the servicer audits CANCELLED
        elif isinstance(event, h2.events.WindowUpdated):
            self._window.set()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.close()

    def _dispatch(self, stream_id: int, stream: _Stream) -> None:
        headers = stream.headers
        path, _, query = headers.get(":path", "").partition("?")
        fields = {k: v for k, v in headers.items() if not k.startswith(":")}
        if ":authority" in headers:  # HTTP/2's Host (RFC 9113, 8.3.1)
            fields.setdefault("host", headers[":authority"])
        request = HttpRequest(
            method=headers.get(":method", ""),
            path=path,
            query=query,
            headers=fields,
            body=bytes(stream.body),
            too_large=stream.too_large,
            peer_der=self._peer_der,
        )
        self._idle.clear()
        stream.task = asyncio.get_running_loop().create_task(
            self._answer(stream_id, request), context=contextvars.Context()
        )

    async def _answer(self, stream_id: int, request: HttpRequest) -> None:
        try:
            reply = await self._door.handle(request)
            await self._send(stream_id, reply)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError, ConnectionError):
            pass  # the stream or the connection went away meanwhile
        finally:
            self._streams.pop(stream_id, None)
            if not any(s.task is not None for s in self._streams.values()):
                self._idle.set()

    async def _send(self, stream_id: int, reply: HttpReply) -> None:
        conn = self._conn
        headers = [
            (":status", str(reply.status)),
            *_COMMON_HEADERS,
            ("content-length", str(len(reply.body))),
            *reply.headers,
        ]
        conn.send_headers(stream_id, headers, end_stream=not reply.body)
        self._flush()
        data = memoryview(reply.body)
        while data:
            window = min(conn.local_flow_control_window(stream_id), conn.max_outbound_frame_size)
            if window <= 0:
                if self._transport is None or self._transport.is_closing():
                    raise ConnectionError("connection closed")
                self._window.clear()
                await self._window.wait()
                continue
            chunk, data = data[:window], data[window:]
            conn.send_data(stream_id, chunk.tobytes(), end_stream=not data)
            self._flush()

    # -- plumbing ------------------------------------------------------------------------------

    def _flush(self) -> None:
        out = self._conn.data_to_send()
        if out and self._transport is not None and not self._transport.is_closing():
            self._transport.write(out)

    def goaway(self) -> None:
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self._conn.close_connection()
            self._flush()

    async def drained(self) -> None:
        await self._idle.wait()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
