"""OpenTelemetry traces of the gateway's calls, off unless `[tracing] otlp_endpoint` is set.

Off (the default) nothing of the SDK is imported and no TracerProvider exists: a door checks
`Tracing.on` once per call, and each child span one context variable (`current_tracer`), and
that is all tracing costs. On, the gateway has a TracerProvider of its own (the process-wide
one is left alone: a process may hold more than one gateway, as the tests and the benchmarks
do, and the global can be set only once), sampling parent-based at `sample_ratio`, batching
spans to an OTLP/gRPC collector from the SDK's exporter thread.

The spans of one call (ARCHITECTURE.md, "Tracing"):

- one SERVER span, opened and closed by the door (gateway.server.door) and continuing the
  caller's W3C trace context (`traceparent`/`tracestate` from the gRPC metadata or the HTTP
  headers). Over gRPC it follows the semantic conventions for gRPC server spans: named by
  `rpc.method` ("proofless.v1.VerificationService/GetHouseholdRecord"), `rpc.system.name`,
  `rpc.method`, `rpc.status_code` (the code's name), `error.type` for the codes the
  conventions count as errors, and, for tools that still read the conventions of v1.37 and
  before, `rpc.system`, `rpc.service` and `rpc.grpc.status_code` (their `rpc.method`, the bare
  method name, gives way to the current one). `server.address` is left out: grpc.aio does
  not show the `:authority` the client used, and the conventions say not to use the socket's.
  Over the HTTP/JSON door it is an HTTP server span: "POST /v1/…" (`http.request.method`,
  `http.route`, `url.path`, `url.scheme`, `http.response.status_code`, `server.address` and
  `server.port` from Host / :authority), with `rpc.method` naming the RPC it carries. Never
  `url.query`: a GET's query holds the request's fields.
- children: `policy` (the policy's decision), `department <code>` (CLIENT, one per department
  call: gateway.server.departments), `audit.append` (gateway.server.call) and `proof.sign`.

Attributes carry no personal data: the caller's id (an approval system, from its
certificate), the service item and evidence type codes, the department code and connector
kind, outcomes, status codes and error reasons, and the request id (which the door has
already refused to take from a caller when it holds an ID or mobile number). No ID number,
credit code, name, address, case id or purpose; exceptions are never recorded as events
(their messages could quote a value): a failure is its gRPC code and reason, or its class.
"""

from __future__ import annotations

import asyncio
import contextvars
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

import grpc
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gateway.config import TracingConfig
from gateway.domain.errors import ProoflessError

if TYPE_CHECKING:  # the SDK is imported only when tracing is on
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

__all__ = [
    "OFF",
    "HttpRoute",
    "ServerSpan",
    "SpanKind",
    "Tracing",
    "current_tracer",
    "department_span",
    "end_server_span",
    "start_tracing",
    "traced",
]

#: the tracer of the call running in this context; None when the gateway does not trace
current_tracer: contextvars.ContextVar[trace.Tracer | None] = contextvars.ContextVar(
    "proofless_tracer", default=None
)

SCOPE: Final = "proofless.gateway"
#: gRPC server status codes the conventions count as errors (semconv rpc/grpc.md)
_GRPC_ERRORS: Final = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)
_W3C = TraceContextTextMapPropagator()
#: a word of the caller's tracestate that could be a resident ID, a credit code or a mobile
#: number: such a tracestate is not carried (it would be exported with every span and sent on
#: to the departments); the caller's trace still continues through its traceparent
_PERSONAL_IN_STATE = re.compile(
    r"(?<![0-9A-Za-z])(?:[0-9A-Za-z]{18}|[0-9]{15}|1[3-9][0-9]{9})(?![0-9A-Za-z])"
)
_CARRIED: Final = frozenset({"traceparent", "tracestate", "host"})


@dataclass(frozen=True, slots=True)
class HttpRoute:
    """An HTTP/JSON door call: its method and route template (the door's paths are fixed)."""

    method: str
    route: str


@dataclass(slots=True)
class ServerSpan:
    span: trace.Span
    token: contextvars.Token[Context]
    tracer_token: contextvars.Token[trace.Tracer | None]
    http: bool


class Tracing:
    """The gateway's tracer, or nothing (`on` is False): what the doors and `traced` use."""

    def __init__(
        self, tracer: trace.Tracer | None = None, provider: TracerProvider | None = None
    ) -> None:
        self.tracer = tracer
        self.provider = provider
        self.on = tracer is not None

    def server_span(
        self,
        method: str,
        request_id: str,
        transport: str,
        carrier: Iterable[tuple[str, str | bytes]] | None,
        http: HttpRoute | None,
    ) -> ServerSpan:
        """Open the SERVER span of a call for the RPC `method` ("pkg.Service/Method"), as a
        child of the caller's trace context in `carrier` (gRPC metadata or HTTP headers,
        names in lower case), and make it the current span. Only when `on`."""
        tracer = self.tracer
        assert tracer is not None
        headers: dict[str, str] = {}
        for key, value in carrier or ():
            if key in _CARRIED and isinstance(value, str):
                headers[key] = value
        state = headers.get("tracestate")
        if state is not None and _PERSONAL_IN_STATE.search(state):
            del headers["tracestate"]
        parent = _W3C.extract(headers) if headers else None
        attributes: dict[str, Any] = {
            "rpc.method": method,
            "proofless.request_id": request_id,
            "proofless.transport": transport,
        }
        if http is None:
            name = method
            attributes["rpc.system.name"] = "grpc"
            attributes["rpc.system"] = "grpc"
            attributes["rpc.service"] = method.partition("/")[0]
        else:
            name = f"{http.method} {http.route}"
            attributes["http.request.method"] = http.method
            attributes["http.route"] = http.route
            attributes["url.path"] = http.route
            attributes["url.scheme"] = "https"
            host, port = _authority(headers.get("host", ""))
            if host:
                attributes["server.address"] = host
                attributes["server.port"] = port
        span = tracer.start_span(name, parent, kind=SpanKind.SERVER, attributes=attributes)
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        # a call the sampler left out has no children either (they would not be kept), but
        # its context still goes on to the departments, with the sampled flag unset
        children = tracer if span.is_recording() else None
        return ServerSpan(span, token, current_tracer.set(children), http is not None)

    async def shutdown(self) -> None:
        """Export what is left and stop the exporter (in a thread: the export is blocking,
        and the collector may be served by this very event loop, as in the tests)."""
        if self.provider is not None:
            provider, self.provider = self.provider, None
            await asyncio.to_thread(provider.shutdown)


#: the gateway that does not trace
OFF: Final = Tracing()


def end_server_span(
    server: ServerSpan,
    code: grpc.StatusCode,
    *,
    caller: str,
    service_item: str,
    outcome: str,
    http_status: int = 0,
) -> None:
    """Close the call's SERVER span with what the caller got."""
    span = server.span
    try:
        span.set_attribute("proofless.caller", caller)
        if service_item:
            span.set_attribute("proofless.service_item", service_item)
        span.set_attribute("proofless.outcome", outcome)
        span.set_attribute("proofless.status_code", code.name)
        if server.http:
            if http_status:  # 0: the call was cancelled and nothing was sent
                span.set_attribute("http.response.status_code", http_status)
            if http_status >= 500:
                span.set_attribute("error.type", str(http_status))
                span.set_status(Status(StatusCode.ERROR))
        else:
            span.set_attribute("rpc.status_code", code.name)
            span.set_attribute("rpc.grpc.status_code", code.value[0])
            if code in _GRPC_ERRORS:
                span.set_attribute("error.type", code.name)
                span.set_status(Status(StatusCode.ERROR))
        span.end()
    finally:
        otel_context.detach(server.token)
        current_tracer.reset(server.tracer_token)


def _authority(value: str) -> tuple[str, int]:
    """host and port of a Host header or :authority ("h", "h:p", "[v6]:p"); 443 if none."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or (host.startswith("[") != host.endswith("]")):
        host, port = value, "443"
    return host.strip("[]"), int(port)


class _Child:
    """A child span of the current one, current while the `with` block runs. A failure is
    recorded as attributes (`error.type`: the gRPC code's name, `proofless.reason`), never
    as an exception event, whose message could quote a value."""

    __slots__ = ("_attributes", "_kind", "_name", "_span", "_token", "_tracer")

    def __init__(
        self,
        tracer: trace.Tracer,
        name: str,
        kind: SpanKind,
        attributes: Mapping[str, Any] | None,
    ) -> None:
        self._tracer = tracer
        self._name = name
        self._kind = kind
        self._attributes = attributes
        self._span: trace.Span = trace.INVALID_SPAN
        self._token: contextvars.Token[Context] | None = None

    def __enter__(self) -> trace.Span:
        self._span = self._tracer.start_span(
            self._name, kind=self._kind, attributes=self._attributes
        )
        self._token = otel_context.attach(trace.set_span_in_context(self._span))
        return self._span

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        span = self._span
        try:
            if isinstance(error, ProoflessError):
                span.set_attribute("error.type", error.code.name)
                if error.reason:
                    span.set_attribute("proofless.reason", error.reason)
                if error.code in _GRPC_ERRORS:
                    span.set_status(Status(StatusCode.ERROR))
            elif isinstance(error, asyncio.CancelledError):
                span.set_attribute("error.type", "CANCELLED")
            elif error is not None:
                span.set_attribute("error.type", f"{type(error).__module__}.{type(error).__name__}")
                span.set_status(Status(StatusCode.ERROR))
            span.end()
        finally:
            if self._token is not None:
                otel_context.detach(self._token)


class _NoSpan:
    """`traced` when the call is not traced: enters to the API's non-recording span."""

    __slots__ = ()

    def __enter__(self) -> trace.Span:
        return trace.INVALID_SPAN

    def __exit__(self, *exc: object) -> None:
        return None


_NO_SPAN: Final = _NoSpan()


def traced(
    name: str,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, Any] | None = None,
) -> _Child | _NoSpan:
    """`with traced("policy"): …`: a child span of the call when it is traced; otherwise a
    context manager that does nothing (one context-variable read)."""
    tracer = current_tracer.get()
    if tracer is None:
        return _NO_SPAN
    return _Child(tracer, name, kind, attributes)


def department_span(department: str, connector: str, evidence: str) -> _Child | _NoSpan:
    """The CLIENT span of one department call (`traced`'s rules), named by the department's
    code; its attributes are codes from the catalogue."""
    tracer = current_tracer.get()
    if tracer is None:
        return _NO_SPAN
    attributes = {
        "proofless.department": department,
        "proofless.connector": connector,
        "proofless.evidence_type": evidence,
    }
    return _Child(tracer, f"department {department}", SpanKind.CLIENT, attributes)


def start_tracing(config: TracingConfig, *, exporter: SpanExporter | None = None) -> Tracing:
    """The gateway's tracing for `[tracing]`: OFF while `otlp_endpoint` is empty; else its own
    TracerProvider exporting to the endpoint over OTLP/gRPC (`exporter` replaces it)."""
    if not config.otlp_endpoint and exporter is None:
        return OFF
    # imported here: a gateway that does not trace never loads the SDK or the exporter
    from opentelemetry.sdk.resources import Resource  # noqa: PLC0415
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
    from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: PLC0415
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased  # noqa: PLC0415

    if exporter is None:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # noqa: PLC0415
            OTLPSpanExporter,
        )

        exporter = OTLPSpanExporter(
            endpoint=config.otlp_endpoint,
            # http:// is a collector beside the gateway (a sidecar, a node agent): plaintext;
            # https:// verifies it (OTEL_EXPORTER_OTLP_CERTIFICATE names a private CA)
            insecure=config.otlp_endpoint.startswith("http://"),
            timeout=5,
        )
    resource = Resource.create({"service.name": config.service_name, "service.version": _version()})
    provider = TracerProvider(
        sampler=ParentBased(TraceIdRatioBased(config.sample_ratio)),
        resource=resource,
        shutdown_on_exit=False,  # the gateway shuts it down when it stops
    )
    provider.add_span_processor(
        BatchSpanProcessor(exporter, schedule_delay_millis=config.export_delay_ms)
    )
    return Tracing(provider.get_tracer(SCOPE, _version()), provider)


def _version() -> str:
    try:
        return metadata.version("proofless")
    except metadata.PackageNotFoundError:
        return "0"
