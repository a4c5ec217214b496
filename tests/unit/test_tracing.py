"""gateway.ops.tracing: off by default with nothing of the SDK installed or loaded, and, on,
the door's server span and the child spans with the attributes the conventions name and no
value from the request. Spans are read from the SDK's own in-memory exporter."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from prometheus_client import CollectorRegistry

from gateway.config import TracingConfig, parse_config
from gateway.domain.errors import ConfigError, PermissionDenied
from gateway.ops.metrics import Metrics
from gateway.ops.tracing import (
    OFF,
    HttpRoute,
    SpanKind,
    Tracing,
    current_tracer,
    department_span,
    start_tracing,
    traced,
)
from gateway.server.door import Door

ROOT = Path(__file__).resolve().parents[2]
DEV_CONFIG = ROOT / "deploy" / "config" / "gateway.toml"
K8S_CONFIG = ROOT / "deploy" / "k8s" / "gateway.toml"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{CALLER_SPAN}-01"
IDN = "350505199001011234"


def dev_config(tracing: dict[str, object] | None = None) -> dict[str, object]:
    raw = tomllib.loads(DEV_CONFIG.read_text())
    if tracing is not None:
        raw["tracing"] = tracing
    return raw


# ---- off ---------------------------------------------------------------------------------------


def test_the_shipped_configurations_leave_tracing_off() -> None:
    assert parse_config(dev_config()).tracing.otlp_endpoint == ""
    k8s = tomllib.loads(K8S_CONFIG.read_text())["tracing"]
    assert k8s["otlp_endpoint"] == ""
    assert start_tracing(parse_config(dev_config()).tracing) is OFF


def test_off_installs_no_tracer_provider_and_loads_no_sdk() -> None:
    """In a fresh interpreter: the gateway's modules imported and tracing started from the
    dev configuration leave the API's default (a proxy to the no-op tracer) in place, and
    the SDK's tracing and the exporter are never imported. (redis-py loads the SDK's
    metrics package when it is installed, for its own optional metrics: not tracing.)"""
    script = f"""
import sys
from pathlib import Path
import tomllib
from opentelemetry import trace
import gateway.server.app
from gateway.config import parse_config
from gateway.ops.tracing import OFF, start_tracing
tracing = start_tracing(parse_config(tomllib.loads(Path({str(DEV_CONFIG)!r}).read_text())).tracing)
assert tracing is OFF and not tracing.on and tracing.provider is None and tracing.tracer is None
provider = trace.get_tracer_provider()
assert type(provider).__name__ == "ProxyTracerProvider", provider
assert type(provider.get_tracer("x")).__name__ == "ProxyTracer"
loaded = [m for m in sys.modules if m.startswith(("opentelemetry.sdk.trace", "opentelemetry.exp"))]
assert loaded == [], loaded
print("ok")
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_off_the_door_opens_no_span() -> None:
    door = Door(Metrics(CollectorRegistry()))
    assert door.tracing is OFF
    visit = door.open("GetHouseholdRecord", "r1", "grpc", headers=[("traceparent", TRACEPARENT)])
    assert visit.span is None
    assert current_tracer.get() is None
    assert trace.get_current_span() is trace.INVALID_SPAN
    with traced("policy") as span:
        assert span is trace.INVALID_SPAN
        assert not span.is_recording()
    door.close(visit, grpc.StatusCode.OK)


# ---- on ----------------------------------------------------------------------------------------


@pytest.fixture
def tracing() -> Iterator[tuple[Tracing, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    on = start_tracing(TracingConfig(service_name="unit", export_delay_ms=10), exporter=exporter)
    yield on, exporter
    assert on.provider is not None
    on.provider.shutdown()


def finished(tracing: Tracing, exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    assert tracing.provider is not None
    tracing.provider.force_flush()
    return list(exporter.get_finished_spans())


def test_on_uses_its_own_provider_not_the_global_one(
    tracing: tuple[Tracing, InMemorySpanExporter],
) -> None:
    on, _ = tracing
    assert on.on
    assert on.provider is not None
    assert on.provider is not trace.get_tracer_provider()
    assert type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider"


def test_a_grpc_call_and_its_children(tracing: tuple[Tracing, InMemorySpanExporter]) -> None:
    on, exporter = tracing
    door = Door(Metrics(CollectorRegistry()), tracing=on)
    visit = door.open(
        "GetHouseholdRecord",
        "r-1",
        "grpc",
        method="proofless.v1.VerificationService/GetHouseholdRecord",
        headers=[("traceparent", TRACEPARENT), ("x-bin", b"\0"), ("tracestate", "a=b")],
    )
    visit.caller_id = "quangang-window"
    visit.call.service_item = "housing-transfer"
    with pytest.raises(PermissionDenied), traced("policy"):
        raise PermissionDenied(f"no item for {IDN}", reason="ITEM_NOT_ALLOWED")
    with department_span("household", "http_json", "household") as span:
        span.set_attribute("proofless.outcome", "ok")
    door.close(visit, grpc.StatusCode.PERMISSION_DENIED)
    assert current_tracer.get() is None  # the call's context is left as it was found
    assert trace.get_current_span() is trace.INVALID_SPAN

    policy, department, server = finished(on, exporter)
    assert server.name == "proofless.v1.VerificationService/GetHouseholdRecord"
    assert server.kind == SpanKind.SERVER
    assert server.context is not None
    assert server.parent is not None
    assert f"{server.context.trace_id:032x}" == TRACE_ID
    assert f"{server.parent.span_id:016x}" == CALLER_SPAN
    assert server.parent.is_remote
    assert dict(server.context.trace_state) == {"a": "b"}
    assert dict(server.attributes or {}) == {
        "rpc.method": "proofless.v1.VerificationService/GetHouseholdRecord",
        "rpc.system.name": "grpc",
        "rpc.system": "grpc",
        "rpc.service": "proofless.v1.VerificationService",
        "rpc.status_code": "PERMISSION_DENIED",
        "rpc.grpc.status_code": 7,
        "proofless.request_id": "r-1",
        "proofless.transport": "grpc",
        "proofless.caller": "quangang-window",
        "proofless.service_item": "housing-transfer",
        "proofless.outcome": "denied",
        "proofless.status_code": "PERMISSION_DENIED",
    }
    assert server.status.status_code == trace.StatusCode.UNSET  # not a server error
    for child in (policy, department):
        assert child.parent is not None
        assert child.parent.span_id == server.context.span_id
    assert dict(policy.attributes or {}) == {
        "error.type": "PERMISSION_DENIED",
        "proofless.reason": "ITEM_NOT_ALLOWED",
    }
    assert policy.events == ()  # the exception (and its message) is not recorded
    assert department.name == "department household"
    assert department.kind == SpanKind.CLIENT


def test_a_server_error_marks_the_span(tracing: tuple[Tracing, InMemorySpanExporter]) -> None:
    on, exporter = tracing
    door = Door(Metrics(CollectorRegistry()), tracing=on)
    visit = door.open("GetEvidence", "r-2", "grpc", method="p.S/GetEvidence")
    with pytest.raises(KeyError), traced("audit.append"):
        raise KeyError(IDN)
    door.close(visit, grpc.StatusCode.UNAVAILABLE)
    child, server = finished(on, exporter)
    assert server.parent is None  # no traceparent: the gateway starts the trace
    assert server.status.status_code == trace.StatusCode.ERROR
    assert server.status.description is None
    assert dict(server.attributes or {})["error.type"] == "UNAVAILABLE"
    assert dict(child.attributes or {}) == {"error.type": "builtins.KeyError"}
    assert child.status.status_code == trace.StatusCode.ERROR
    assert child.events == ()


def test_an_http_call_follows_the_http_conventions(
    tracing: tuple[Tracing, InMemorySpanExporter],
) -> None:
    on, exporter = tracing
    door = Door(Metrics(CollectorRegistry()), tracing=on)
    visit = door.open(
        "GetHouseholdRecord",
        "r-3",
        "http",
        method="proofless.v1.VerificationService/GetHouseholdRecord",
        headers={"traceparent": TRACEPARENT, "host": "gw.example:8443"}.items(),
        http=HttpRoute("POST", "/v1/household:get"),
    )
    door.close(visit, grpc.StatusCode.INTERNAL, http_status=500)
    [server] = finished(on, exporter)
    assert server.name == "POST /v1/household:get"
    a = dict(server.attributes or {})
    assert {k: a[k] for k in a if not k.startswith("proofless.")} == {
        "rpc.method": "proofless.v1.VerificationService/GetHouseholdRecord",
        "http.request.method": "POST",
        "http.route": "/v1/household:get",
        "url.path": "/v1/household:get",
        "url.scheme": "https",
        "server.address": "gw.example",
        "server.port": 8443,
        "http.response.status_code": 500,
        "error.type": "500",
    }
    assert server.status.status_code == trace.StatusCode.ERROR


@pytest.mark.parametrize(
    ("host", "address", "port"),
    [
        ("gw.example", "gw.example", 443),
        ("127.0.0.1:8443", "127.0.0.1", 8443),
        ("[::1]:8443", "::1", 8443),
        ("[::1]", "::1", 443),
    ],
)
def test_server_address_from_the_host_header(
    tracing: tuple[Tracing, InMemorySpanExporter], host: str, address: str, port: int
) -> None:
    on, exporter = tracing
    door = Door(Metrics(CollectorRegistry()), tracing=on)
    visit = door.open("X", "r", "http", headers=[("host", host)], http=HttpRoute("GET", "/v1/x"))
    door.close(visit, grpc.StatusCode.OK, http_status=200)
    [server] = finished(on, exporter)
    a = dict(server.attributes or {})
    assert (a["server.address"], a["server.port"]) == (address, port)


@pytest.mark.parametrize(
    "state",
    [
        f"v={IDN}",
        "v=350505900101123,w=1",  # 15 digits (a first-generation ID)
        "a=b,v=13912345678",  # a mobile number
        "v=91350100M000100Y43",  # an 18-character credit code
    ],
)
def test_a_tracestate_with_a_personal_number_is_dropped(
    tracing: tuple[Tracing, InMemorySpanExporter], state: str
) -> None:
    on, exporter = tracing
    door = Door(Metrics(CollectorRegistry()), tracing=on)
    visit = door.open(
        "X", "r", "grpc", headers=[("traceparent", TRACEPARENT), ("tracestate", state)]
    )
    door.close(visit, grpc.StatusCode.OK)
    [server] = finished(on, exporter)
    assert server.context is not None
    assert f"{server.context.trace_id:032x}" == TRACE_ID  # the trace still continues
    assert dict(server.context.trace_state) == {}


def test_sampling_is_parent_based_at_the_ratio() -> None:
    exporter = InMemorySpanExporter()
    on = start_tracing(TracingConfig(sample_ratio=0.0, export_delay_ms=10), exporter=exporter)
    door = Door(Metrics(CollectorRegistry()), tracing=on)
    for headers in ([], [("traceparent", TRACEPARENT)], [("traceparent", TRACEPARENT[:-2] + "00")]):
        visit = door.open("X", "r", "grpc", headers=headers)
        door.close(visit, grpc.StatusCode.OK)
    spans = finished(on, exporter)
    assert on.provider is not None
    on.provider.shutdown()
    # ratio 0 keeps no trace of its own; the caller's sampled flag decides for its calls
    assert [s.parent.span_id if s.parent else None for s in spans] == [int(CALLER_SPAN, 16)]


def test_a_call_left_out_by_the_sampler_has_no_children_but_passes_its_context_on() -> None:
    exporter = InMemorySpanExporter()
    on = start_tracing(TracingConfig(sample_ratio=0.0, export_delay_ms=10), exporter=exporter)
    door = Door(Metrics(CollectorRegistry()), tracing=on)
    unsampled = TRACEPARENT[:-2] + "00"
    visit = door.open("X", "r", "grpc", headers=[("traceparent", unsampled)])
    assert current_tracer.get() is None
    with traced("policy") as span:
        assert span is trace.INVALID_SPAN
    headers: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(headers)
    assert headers["traceparent"][:36] == f"00-{TRACE_ID}-"
    assert headers["traceparent"].endswith("-00")
    door.close(visit, grpc.StatusCode.OK)
    assert finished(on, exporter) == []
    assert on.provider is not None
    on.provider.shutdown()


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"otlp_endpiont": "http://c:4317"}, "unknown keys"),
        ({"otlp_endpoint": "c:4317"}, "otlp_endpoint"),
        ({"sample_ratio": 1.5}, "sample_ratio"),
        ({"sample_ratio": "all"}, "sample_ratio"),
        ({"service_name": ""}, "service_name"),
        ({"export_delay_ms": 0}, "export_delay_ms"),
    ],
)
def test_a_bad_tracing_table_is_refused(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(dev_config(table))


def test_a_tracing_table_is_read() -> None:
    config = parse_config(
        dev_config({"otlp_endpoint": "https://c:4317", "service_name": "gw", "sample_ratio": 0})
    )
    assert config.tracing == TracingConfig(
        otlp_endpoint="https://c:4317", service_name="gw", sample_ratio=0.0
    )
