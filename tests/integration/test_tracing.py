"""OpenTelemetry traces of real calls, received by a real OTLP/gRPC collector.

The collector is a grpc.aio server implementing opentelemetry.proto's TraceService (the
protos the exporter itself sends), started on port 0; the gateway is configured to export to
it (`[tracing] otlp_endpoint`) and serves the simulated departments, the household registry
behind a small recording proxy that keeps the trace headers of each request it forwards.
Calls come over gRPC and over the HTTP/JSON door with a caller's `traceparent`, and the tests
check the trace as exported: the server span continues the caller's trace, the policy,
department, audit and signing spans are its children, the department's HTTP request carried
the department span's traceparent, and no span of any call holds an ID number, a credit code
or a name of the synthetic population, nor the case ids and purposes sent.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import grpc
import pytest
import pytest_asyncio
from aiohttp import web
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2
from prometheus_client import CollectorRegistry

from gateway.config import merge_tables, parse_config
from gateway.devtools.pki import DevPki
from gateway.devtools.recipe import simulated
from gateway.server.app import running_gateway
from gateway.server.http_door import http_rule
from proofless.v1 import verification_pb2 as pb
from tests.support.http_door import HttpCallError, http_stubs
from tests.support.stack import Stack, poll, stack_config

pytestmark = pytest.mark.asyncio(loop_scope="module")

SERVER, CLIENT, INTERNAL = (
    trace_pb2.Span.SPAN_KIND_SERVER,
    trace_pb2.Span.SPAN_KIND_CLIENT,
    trace_pb2.Span.SPAN_KIND_INTERNAL,
)
HOUSEHOLD_RPC = "proofless.v1.VerificationService/GetHouseholdRecord"
ITEM = "housing-transfer"


# ---- the collector ---------------------------------------------------------------------------


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP/gRPC trace receiver: keeps every span exported to it, with its resource."""

    def __init__(self) -> None:
        self.spans: list[trace_pb2.Span] = []
        self.resources: list[Any] = []

    async def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        for resource_spans in request.resource_spans:
            self.resources.append(resource_spans.resource)
            for scope_spans in resource_spans.scope_spans:
                self.spans.extend(scope_spans.spans)
        return trace_service_pb2.ExportTraceServiceResponse()

    def of_trace(self, trace_id: str) -> list[trace_pb2.Span]:
        return [s for s in self.spans if s.trace_id.hex() == trace_id]


@contextlib.asynccontextmanager
async def collector() -> AsyncIterator[tuple[Collector, int]]:
    receiver = Collector()
    server = grpc.aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield receiver, port
    finally:
        await server.stop(0)


# ---- a recording proxy in front of a department ----------------------------------------------

_HOP = {"host", "content-length", "transfer-encoding", "connection"}


@contextlib.asynccontextmanager
async def recording_proxy(
    upstream: str,
) -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    """An HTTP server forwarding every request to `upstream` as it came (path, query, body,
    headers: the department's request signature still holds) and recording its headers."""
    seen: list[dict[str, str]] = []
    session = aiohttp.ClientSession()

    async def forward(request: web.Request) -> web.Response:
        seen.append({k.lower(): v for k, v in request.headers.items()})
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        async with session.request(
            request.method, upstream + request.path_qs, data=body, headers=headers
        ) as resp:
            return web.Response(
                status=resp.status,
                body=await resp.read(),
                content_type=resp.content_type,
            )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()
        await session.close()


# ---- the traced stack --------------------------------------------------------------------------


@dataclass
class Traced:
    stack: Stack
    collector: Collector
    department_requests: list[dict[str, str]]
    sent: list[str] = field(default_factory=list)  # case ids and purposes the tests sent


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def traced(pki: DevPki, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Traced]:
    state = tmp_path_factory.mktemp("traced")
    async with collector() as (receiver, port):
        overrides = {
            "tracing": {
                "otlp_endpoint": f"http://127.0.0.1:{port}",
                "service_name": "proofless-test",
                "export_delay_ms": 50,
            }
        }
        raw = stack_config(pki, state, overrides)
        async with contextlib.AsyncExitStack() as running:
            sims, pointed = await running.enter_async_context(simulated(raw))
            proxy, seen = await running.enter_async_context(recording_proxy(sims.household_url))
            config = parse_config(
                merge_tables(pointed, {"departments": {"household": {"endpoint": proxy}}}), "test"
            )
            registry = CollectorRegistry()
            gw = await running.enter_async_context(running_gateway(config, registry=registry))
            stack = Stack(pki=pki, config=config, gateway=gw, sims=sims, registry=registry)
            running.push_async_callback(stack._exit.aclose)
            yield Traced(stack, receiver, seen)


def traceparent() -> tuple[str, str, str]:
    """A caller's sampled W3C traceparent: (header, trace id, parent span id)."""
    trace_id, span_id = os.urandom(16).hex(), os.urandom(8).hex()
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


async def trace_of(t: Traced, trace_id: str) -> list[trace_pb2.Span]:
    """The spans of `trace_id` once its server span (the last to end) is exported."""

    async def arrived() -> bool:
        return any(s.kind == SERVER for s in t.collector.of_trace(trace_id))

    await poll(arrived, f"the server span of trace {trace_id}")
    return t.collector.of_trace(trace_id)


def attributes(span: trace_pb2.Span) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in span.attributes}


def _value(v: common_pb2.AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, kind) if kind else None


def record_request(t: Traced, idn: str, *, item: str = ITEM) -> pb.RecordRequest:
    case, purpose = f"QG-TR-{uuid.uuid4().hex[:8]}", f"buyer residence {uuid.uuid4().hex[:6]}"
    t.sent += [case, purpose]
    request = pb.RecordRequest(
        context=pb.RequestContext(service_item=item, case_id=case, purpose=purpose),
        applicant=pb.Applicant(id_number=idn),
    )
    request.read_mask.paths.extend(["name", "region_code", "status"])
    return request


def one(spans: list[trace_pb2.Span], name: str) -> trace_pb2.Span:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, (name, sorted(s.name for s in spans))
    return found[0]


def department_headers(t: Traced, trace_id: str) -> list[dict[str, str]]:
    return [h for h in t.department_requests if h.get("traceparent", "")[3:35] == trace_id]


# ---- the tests ---------------------------------------------------------------------------------


async def test_a_grpc_call_continues_the_callers_trace(traced: Traced) -> None:
    t = traced
    header, trace_id, caller_span = traceparent()
    request_id = f"trace-grpc-{uuid.uuid4().hex[:8]}"
    stub = await t.stack.verification("quangang-window")
    await stub.GetHouseholdRecord(
        record_request(t, t.stack.scenarios["household_head"]),
        timeout=5,
        metadata=(
            ("traceparent", header),
            ("tracestate", "caller=t61rcWkgMzE"),
            ("x-request-id", request_id),
        ),
    )
    spans = await trace_of(t, trace_id)

    server = one(spans, HOUSEHOLD_RPC)
    assert server.kind == SERVER
    assert server.parent_span_id.hex() == caller_span  # the caller's span is the parent
    assert server.trace_state == "caller=t61rcWkgMzE"
    a = attributes(server)
    assert a["rpc.system.name"] == "grpc"
    assert a["rpc.method"] == HOUSEHOLD_RPC
    assert a["rpc.status_code"] == "OK"
    assert "error.type" not in a
    assert (a["rpc.system"], a["rpc.service"], a["rpc.grpc.status_code"]) == (
        "grpc",
        "proofless.v1.VerificationService",
        0,
    )
    assert a["proofless.caller"] == "quangang-window"
    assert a["proofless.service_item"] == ITEM
    assert a["proofless.outcome"] == "granted"
    assert a["proofless.request_id"] == request_id
    assert a["proofless.transport"] == "grpc"
    assert server.status.code == trace_pb2.Status.STATUS_CODE_UNSET

    children = {s.name: s for s in spans if s is not server}
    assert set(children) == {"policy", "department household", "audit.append", "proof.sign"}
    for child in children.values():
        assert child.parent_span_id == server.span_id
        assert server.start_time_unix_nano <= child.start_time_unix_nano
        assert child.end_time_unix_nano <= server.end_time_unix_nano
    department = children["department household"]
    assert department.kind == CLIENT
    assert attributes(department) == {
        "proofless.department": "household",
        "proofless.connector": "http_json",
        "proofless.evidence_type": "household",
        "proofless.outcome": "ok",
    }
    assert {children[n].kind for n in ("policy", "audit.append", "proof.sign")} == {INTERNAL}

    # the department's request carried the department span's context, tracestate and all
    [sent] = department_headers(t, trace_id)
    assert sent["traceparent"] == f"00-{trace_id}-{department.span_id.hex()}-01"
    assert sent["tracestate"] == "caller=t61rcWkgMzE"


async def test_an_http_door_call_continues_the_callers_trace(traced: Traced) -> None:
    t = traced
    header, trace_id, caller_span = traceparent()
    verification, _ = await http_stubs(t.stack, "quangang-window")
    await verification.GetHouseholdRecord(
        record_request(t, t.stack.scenarios["household_head"]),
        timeout=5,
        metadata=(("traceparent", header),),
    )
    spans = await trace_of(t, trace_id)

    service = pb.DESCRIPTOR.services_by_name["VerificationService"]
    method = service.methods_by_name["GetHouseholdRecord"]
    rule = http_rule(service.full_name, method.name, method.GetOptions())
    server = one(spans, f"{rule.verb} {rule.path}")
    assert server.kind == SERVER
    assert server.parent_span_id.hex() == caller_span
    a = attributes(server)
    assert a["http.request.method"] == rule.verb
    assert a["http.route"] == a["url.path"] == rule.path
    assert a["url.scheme"] == "https"
    assert a["http.response.status_code"] == 200
    assert (a["server.address"], a["server.port"]) == ("127.0.0.1", t.stack.gateway.http_port)
    assert a["rpc.method"] == HOUSEHOLD_RPC
    assert a["proofless.transport"] == "http"
    assert a["proofless.outcome"] == "granted"
    assert "rpc.system.name" not in a  # HTTP on the wire, not gRPC
    children = {s.name for s in spans if s.parent_span_id == server.span_id}
    assert children == {"policy", "department household", "audit.append", "proof.sign"}
    department = one(spans, "department household")
    [sent] = department_headers(t, trace_id)
    assert sent["traceparent"] == f"00-{trace_id}-{department.span_id.hex()}-01"


async def test_a_denied_call_shows_the_policys_refusal(traced: Traced) -> None:
    t = traced
    header, trace_id, _ = traceparent()
    stub = await t.stack.verification("fuzhou-civil-affairs")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.GetHouseholdRecord(
            record_request(t, t.stack.scenarios["household_head"]),
            timeout=5,
            metadata=(("traceparent", header),),
        )
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    spans = await trace_of(t, trace_id)
    server = one(spans, HOUSEHOLD_RPC)
    a = attributes(server)
    assert (a["rpc.status_code"], a["proofless.outcome"]) == ("PERMISSION_DENIED", "denied")
    assert "error.type" not in a  # a refusal is not a server error (gRPC conventions)
    policy = one(spans, "policy")
    assert attributes(policy) == {
        "error.type": "PERMISSION_DENIED",
        "proofless.reason": "ITEM_NOT_ALLOWED",
    }
    # the refusal is audited; no department was asked and nothing was signed
    assert {s.name for s in spans} == {HOUSEHOLD_RPC, "policy", "audit.append"}
    assert department_headers(t, trace_id) == []


async def test_one_item_check_has_a_span_per_department(traced: Traced) -> None:
    t = traced
    header, trace_id, _ = traceparent()
    case = f"QG-TR-{uuid.uuid4().hex[:8]}"
    t.sent.append(case)
    stub = await t.stack.verification("quangang-window")
    await stub.CheckItem(
        pb.CheckItemRequest(
            context=pb.RequestContext(service_item=ITEM, case_id=case, purpose="buyer check"),
            applicant=pb.Applicant(id_number=t.stack.scenarios["household_head"]),
        ),
        timeout=10,
        metadata=(("traceparent", header),),
    )
    spans = await trace_of(t, trace_id)
    server = one(spans, "proofless.v1.VerificationService/CheckItem")
    departments = {s.name: s for s in spans if s.kind == CLIENT}
    assert set(departments) == {
        "department household",
        "department property",
        "department social_security",
    }
    for span in departments.values():
        assert span.parent_span_id == server.span_id
    assert attributes(departments["department property"])["proofless.connector"] == "sql"
    [sent] = department_headers(t, trace_id)
    span_id = departments["department household"].span_id.hex()
    assert sent["traceparent"] == f"00-{trace_id}-{span_id}-01"


async def test_a_tracestate_holding_an_id_number_goes_no_further(traced: Traced) -> None:
    t = traced
    idn = t.stack.scenarios["household_head"]
    header, trace_id, _ = traceparent()
    stub = await t.stack.verification("quangang-window")
    await stub.GetHouseholdRecord(
        record_request(t, idn),
        timeout=5,
        metadata=(("traceparent", header), ("tracestate", f"careless={idn}")),
    )
    spans = await trace_of(t, trace_id)
    assert {s.trace_state for s in spans} == {""}  # the trace continues, the state does not
    [sent] = department_headers(t, trace_id)
    assert "tracestate" not in sent


async def test_a_bad_id_number_is_not_in_its_trace(traced: Traced) -> None:
    t = traced
    idn = t.stack.scenarios["household_head"]
    bad = idn[:16] + ("0" if idn[16] != "0" else "1") + idn[17]
    t.sent.append(bad)
    header, trace_id, _ = traceparent()
    stub = await t.stack.verification("quangang-window")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.GetHouseholdRecord(
            record_request(t, bad), timeout=5, metadata=(("traceparent", header),)
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    spans = await trace_of(t, trace_id)
    a = attributes(one(spans, HOUSEHOLD_RPC))
    assert a["rpc.status_code"] == "INVALID_ARGUMENT"


async def test_a_call_without_a_traceparent_starts_a_trace(traced: Traced) -> None:
    t = traced
    request_id = f"trace-root-{uuid.uuid4().hex[:8]}"
    verification, _ = await http_stubs(t.stack, "quangang-window")
    with pytest.raises(HttpCallError):
        await verification.GetHouseholdRecord(
            record_request(t, "not-an-id-number"),
            timeout=5,
            metadata=(("x-request-id", request_id),),
        )

    def roots() -> list[trace_pb2.Span]:
        return [
            s
            for s in t.collector.spans
            if s.kind == SERVER and attributes(s)["proofless.request_id"] == request_id
        ]

    async def arrived() -> bool:
        return bool(roots())

    await poll(arrived, "the server span of a call without a traceparent")
    [root] = roots()
    assert root.parent_span_id == b""  # sample_ratio 1.0: a new trace, kept
    assert attributes(root)["http.response.status_code"] == 400


# Last in the module: every span the tests above produced.
async def test_no_span_holds_personal_data(traced: Traced) -> None:
    t = traced
    stack = t.stack
    await stack._exit.aclose()  # the clients' channels go; the gateway still runs
    assert len(t.collector.spans) >= 20  # the calls above were traced

    texts = list(_span_texts(t.collector))
    population = stack.sims.population
    registers = stack.sims.registers
    secrets: set[str] = set(t.sent)
    for person in population.people.values():
        secrets |= {person.id_number, person.name, person.household_number}
    for household in population.households.values():
        secrets.add(household.number)
    if registers is not None:
        for licence in registers.licences.values():
            secrets |= {
                licence.credit_code,
                licence.name,
                licence.representative_name,
                licence.representative_id,
                licence.address,
            }
        for marriages in registers.marriages.values():
            for m in marriages:
                secrets |= {m.husband_id, m.husband_name, m.wife_id, m.wife_name}
                secrets.add(m.certificate_number)
        for nurse in registers.nurses.values():
            secrets |= {nurse.id_number, nurse.name, nurse.certificate_number}
        for enrolment in registers.medical.values():
            secrets |= {enrolment.id_number, enrolment.name}
        for certificate in registers.disability.values():
            secrets |= {certificate.id_number, certificate.name, certificate.certificate_number}
    secrets.discard("")
    assert len(secrets) > 2000
    found = sorted({s for s in secrets for text in texts if s in text})
    assert found == [], "personal data in the exported spans"


def _span_texts(receiver: Collector) -> Iterator[str]:
    """Every string an exported span carries: names, attributes, events, links, state."""

    def values(kvs: Any) -> Iterator[str]:
        for kv in kvs:
            yield kv.key
            yield repr(_value(kv.value))

    for resource in receiver.resources:
        yield from values(resource.attributes)
    for span in receiver.spans:
        yield span.name
        yield span.trace_state
        yield span.status.message
        yield from values(span.attributes)
        for event in span.events:
            yield event.name
            yield from values(event.attributes)
        for link in span.links:
            yield link.trace_state
            yield from values(link.attributes)
