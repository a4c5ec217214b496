"""Hostile input against a real gateway process: fuzzed requests for every RPC, and bytes
that are not gRPC (or not HTTP) at the gRPC and ops ports.

Every case must end in a clean gRPC status (never INTERNAL or UNKNOWN, never a stack trace)
or a closed connection; afterwards the process is alive, its health check says SERVING, a
normal call succeeds, and its RSS has stayed bounded.

The fuzzer builds request messages field by field from the protobuf descriptors, so a field
added to the contract is fuzzed without touching this file. Strings mix the values that get
past validation (real ID numbers, service items, claim types, field names) with arbitrary
text and huge strings; repeated fields sometimes hold thousands of entries.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor as d
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.simulators.datagen import generate
from gateway.devtools.pki import DevPki
from proofless.v1 import audit_pb2, audit_pb2_grpc, verification_pb2
from proofless.v1 import verification_pb2 as pb
from proofless.v1 import verification_pb2_grpc as pb_grpc
from tests.support.processes import POPULATION, SEED, ProcessStack, process_stack, rss_kib

pytestmark = pytest.mark.slow

# ≥ 10,000 requests: EXAMPLES examples, each one request to every RPC (11), concurrently.
EXAMPLES = int(os.environ.get("PROOFLESS_FUZZ_EXAMPLES", "950"))
CLEAN = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}


@pytest.fixture(scope="module")
def gateway(pki: DevPki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessStack]:
    with process_stack(tmp_path_factory.mktemp("hostile"), pki=pki) as stack:
        yield stack


# ---- requests built from the descriptors ----------------------------------------------------


def interesting_strings() -> list[str]:
    population = generate(SEED, POPULATION)
    ids = list(population.scenarios.values())[:8]
    words = [
        "housing-transfer", "retirement", "ss-card", "resident-pension",
        "household.residence", "household.kinship", "social_security.contribution",
        "property.ownership", "property.encumbrance", "name", "region_code", "history",
        "insurances", "records", "owns", "region", "months", "relation", "other_id_number",
        "350505", "true", "false", "-1", "99999999999999999999", "../../etc/passwd",
        "%s%s%n", "\x00", "名字", "\ud7ff", "' OR 1=1 --", "a.b.c.d.e",
    ]  # fmt: skip
    return ids + [i.lower() for i in ids] + words


STRINGS = interesting_strings()


def huge(text: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.builds(lambda s, n: (s or "x") * n, text, st.integers(1_000, 100_000))


def string_value(small: bool) -> st.SearchStrategy[str]:
    strategies = [
        st.sampled_from(STRINGS),
        st.text(max_size=40),
        st.text(alphabet="0123456789X", min_size=17, max_size=19),
    ]
    if not small:  # one field at a time; inside thousands of repeats it would be gigabytes
        strategies.append(huge(st.text(min_size=1, max_size=4)))
    return st.one_of(strategies)


_INT_RANGES = {
    d.FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    d.FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    d.FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    d.FieldDescriptor.TYPE_ENUM: (-(2**31), 2**31 - 1),
    d.FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    d.FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    d.FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    d.FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    d.FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    d.FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    d.FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}


def scalar(field: d.FieldDescriptor, small: bool) -> st.SearchStrategy[Any]:
    t = field.type
    if t == d.FieldDescriptor.TYPE_STRING:
        return string_value(small)
    if t == d.FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if t == d.FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if t in (d.FieldDescriptor.TYPE_FLOAT, d.FieldDescriptor.TYPE_DOUBLE):
        return st.floats(width=32 if t == d.FieldDescriptor.TYPE_FLOAT else 64)
    lo, hi = _INT_RANGES[t]
    small = st.integers(max(lo, -3), 400)
    return st.one_of(small, st.integers(lo, hi))


def field_value(field: d.FieldDescriptor, depth: int, small: bool) -> st.SearchStrategy[Any]:
    """Values for one field; `small` inside a field repeated thousands of times."""
    entry = field.message_type
    if entry is not None and entry.GetOptions().map_entry:
        key_f, value_f = entry.fields_by_name["key"], entry.fields_by_name["value"]
        return st.dictionaries(
            scalar(key_f, small), field_value(value_f, depth + 1, small), max_size=6
        )
    if entry is not None:
        one: st.SearchStrategy[Any] = message(entry, depth + 1, small)
    else:
        one = scalar(field, small)
    if not field.is_repeated:
        return one
    if small:
        return st.lists(one, max_size=4)
    small_one = message(entry, depth + 1, True) if entry is not None else scalar(field, True)
    many = st.builds(lambda v, n: [v] * n, small_one, st.integers(100, 5_000))
    return st.one_of(st.lists(one, max_size=4), many)


def message(
    descriptor: d.Descriptor, depth: int = 0, small: bool = False
) -> st.SearchStrategy[Message]:
    cls = GetMessageClass(descriptor)
    if depth > 3:
        return st.just(cls())
    optional = {
        f.name: st.deferred(lambda f=f: field_value(f, depth, small)) for f in descriptor.fields
    }
    return st.fixed_dictionaries({}, optional=optional).map(lambda kw: cls(**kw))


RPCS: list[tuple[str, str, str, d.Descriptor]] = (
    [
        ("verification", "quangang-window", m.name, m.input_type)
        for m in verification_pb2.DESCRIPTOR.services_by_name["VerificationService"].methods
    ]
    + [
        ("audit", "auditor", m.name, m.input_type)
        for m in audit_pb2.DESCRIPTOR.services_by_name["AuditService"].methods
    ]
    + [("health", "quangang-window", "Check", health_pb2.HealthCheckRequest.DESCRIPTOR)]
)


class Clients:
    """One event loop and one channel per caller for the whole fuzz run."""

    def __init__(self, stack: ProcessStack) -> None:
        self.runner = asyncio.Runner()
        self.stack = stack
        self.stubs: dict[str, Any] = self.runner.run(self._open())

    async def _open(self) -> dict[str, Any]:
        window = self.stack.channel("quangang-window")
        auditor = self.stack.channel("auditor")
        self.channels = [window, auditor]
        return {
            "verification": pb_grpc.VerificationServiceStub(window),
            "audit": audit_pb2_grpc.AuditServiceStub(auditor),
            "health": health_pb2_grpc.HealthStub(window),
        }

    def call_all(self, requests: list[tuple[str, str, Message]]) -> list[tuple[str, Any]]:
        async def one(kind: str, method: str, req: Message) -> tuple[str, Any]:
            try:
                await getattr(self.stubs[kind], method)(req, timeout=20)
            except grpc.aio.AioRpcError as err:
                return method, err
            return method, grpc.StatusCode.OK

        async def every() -> list[tuple[str, Any]]:
            return await asyncio.gather(*(one(*r) for r in requests))

        return self.runner.run(every())

    def close(self) -> None:
        async def closing() -> None:
            for c in self.channels:
                await c.close()

        self.runner.run(closing())
        self.runner.close()


def assert_healthy(stack: ProcessStack) -> None:
    assert stack.gateway is not None
    assert stack.gateway.poll() is None, stack.log_text()

    async def check() -> None:
        async with stack.channel("quangang-window") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            answer = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
            stub = pb_grpc.VerificationServiceStub(channel)
            resp = await stub.GetPropertyRecords(
                pb.RecordRequest(
                    context=pb.RequestContext(
                        service_item="housing-transfer", case_id="AFTER-1", purpose="check"
                    ),
                    applicant=pb.Applicant(
                        id_number=generate(SEED, POPULATION).scenarios["several_properties"]
                    ),
                ),
                timeout=5,
            )
            assert resp.attestation.proof

    asyncio.run(check())
    assert stack.ops_status("/healthz") == 200
    assert stack.ops_status("/readyz") == 200


def test_fuzzed_requests_to_every_rpc_get_clean_errors(gateway: ProcessStack) -> None:
    assert gateway.gateway is not None
    rss_before = rss_kib(gateway.gateway.pid)
    clients = Clients(gateway)
    sent = 0
    bad: list[str] = []
    codes: Counter[str] = Counter()
    strategies = st.tuples(*(message(desc) for *_, desc in RPCS))

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategies)
    def fuzz(requests: tuple[Message, ...]) -> None:
        nonlocal sent
        batch = [
            (kind, method, req) for (kind, _, method, _), req in zip(RPCS, requests, strict=True)
        ]
        sent += len(batch)
        for method, outcome in clients.call_all(batch):
            codes[
                outcome.name if isinstance(outcome, grpc.StatusCode) else outcome.code().name
            ] += 1
            if isinstance(outcome, grpc.aio.AioRpcError):
                code, text = outcome.code(), outcome.details() or ""
                if code not in CLEAN or "Traceback" in text or 'File "' in text:
                    bad.append(f"{method}: {code.name} {text[:200]}")

    t0 = time.monotonic()
    try:
        fuzz()
    finally:
        clients.close()
    took = time.monotonic() - t0
    rss_after = rss_kib(gateway.gateway.pid)
    print(
        f"\nfuzz: {sent} requests over {len(RPCS)} RPCs in {took:.1f} s; "
        f"gateway RSS {rss_before} → {rss_after} KiB; outcomes {dict(codes)}"
    )
    assert not bad, bad[:10]
    assert sent >= EXAMPLES * len(RPCS) * 0.9
    assert_healthy(gateway)
    assert rss_after < rss_before + 150 * 1024


# ---- bytes that are not gRPC -----------------------------------------------------------------


def tls_context(stack: ProcessStack, *, client_cert: bool = True) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(stack.pki.ca_pem)
    if client_cert:
        ctx.load_cert_chain(
            stack.pki.client_pem("quangang-window"), stack.pki.client_key("quangang-window")
        )
    ctx.set_alpn_protocols(["h2"])
    return ctx


def drain_until_closed(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """Read until the peer closes or has answered; fails if it does neither."""
    sock.settimeout(timeout)
    got = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                return got
            got += chunk
    except (ConnectionResetError, ssl.SSLError, BrokenPipeError):
        return got
    except TimeoutError:
        if got:
            return got  # answered (an error), keeping the connection open for the next request
    raise AssertionError(f"the server neither closed nor finished answering: {got[:200]!r}")


def grpc_socket(stack: ProcessStack) -> socket.socket:
    return socket.create_connection(("127.0.0.1", stack.grpc_port), timeout=5)


PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(kind: int, flags: int, stream: int, payload: bytes, length: int | None = None) -> bytes:
    n = len(payload) if length is None else length
    return n.to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload


@pytest.mark.parametrize(
    "case",
    [
        "garbage",
        "tls-then-junk",
        "tls-no-client-cert",
        "http1-over-tls",
        "h2-truncated-frame",
        "h2-bad-hpack",
        "h2-huge-frame-length",
    ],
)
def test_raw_bytes_at_the_grpc_port_get_a_closed_connection(
    gateway: ProcessStack, case: str
) -> None:
    junk = os.urandom(4096)
    if case == "garbage":
        with grpc_socket(gateway) as sock:
            sock.sendall(junk)
            drain_until_closed(sock)
    elif case == "tls-no-client-cert":
        with grpc_socket(gateway) as raw:
            try:
                with tls_context(gateway, client_cert=False).wrap_socket(raw) as tls:
                    tls.sendall(PREFACE + frame(4, 0, 0, b""))
                    drain_until_closed(tls)
            except (ssl.SSLError, ConnectionResetError):
                pass  # refused in the handshake: also a closed connection
    else:
        with (
            grpc_socket(gateway) as raw,
            tls_context(gateway).wrap_socket(raw) as tls,
        ):
            if case == "tls-then-junk":
                tls.sendall(junk)
                drain_until_closed(tls)
            elif case == "http1-over-tls":
                tls.sendall(b"GET / HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n\r\n")
                drain_until_closed(tls)
            elif case == "h2-truncated-frame":
                # A HEADERS frame that promises 200 bytes and stops after 10: the server waits
                # for the rest; closing our side must leave it fine.
                tls.sendall(PREFACE + frame(4, 0, 0, b"") + frame(1, 4, 1, b"\x82" * 10, 200))
                time.sleep(0.3)
            elif case == "h2-bad-hpack":
                tls.sendall(PREFACE + frame(4, 0, 0, b"") + frame(1, 5, 1, os.urandom(64)))
                drain_until_closed(tls)
            else:  # a frame length far above SETTINGS_MAX_FRAME_SIZE
                tls.sendall(PREFACE + frame(4, 0, 0, b"") + frame(0, 0, 1, b"x" * 16, 0xFFFFFF))
                drain_until_closed(tls)
    assert_healthy(gateway)


def test_message_above_the_size_limit_is_resource_exhausted(gateway: ProcessStack) -> None:
    async def call() -> grpc.StatusCode:
        async with gateway.channel("quangang-window") as channel:
            stub = pb_grpc.VerificationServiceStub(channel)
            req = pb.RecordRequest(
                context=pb.RequestContext(
                    service_item="housing-transfer", case_id="BIG", purpose="x" * (4 << 20)
                )
            )
            try:
                await stub.GetHouseholdRecord(req, timeout=10)
            except grpc.aio.AioRpcError as err:
                return err.code()
            return grpc.StatusCode.OK

    assert asyncio.run(call()) == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert_healthy(gateway)


# ---- the ops HTTP port ------------------------------------------------------------------------


def ops_socket(stack: ProcessStack) -> socket.socket:
    return socket.create_connection(("127.0.0.1", stack.ops_port), timeout=5)


def status_line(answer: bytes) -> int | None:
    if not answer.startswith(b"HTTP/1."):
        return None
    return int(answer.split(b" ", 2)[1])


GET = b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
BIG_POST = b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n"


@pytest.mark.parametrize(
    ("case", "payload", "statuses"),
    [
        ("garbage", os.urandom(2048), {400, None}),
        ("huge-header", GET + b"X-Big: " + b"a" * 65536 + b"\r\n\r\n", {400, 431}),
        ("many-headers", b"GET /healthz HTTP/1.1\r\n" + b"X-A: b\r\n" * 5000 + b"\r\n", {400, 431}),
        ("huge-url", b"GET /" + b"a" * 65536 + b" HTTP/1.1\r\nHost: x\r\n\r\n", {400, 414}),
        ("big-body", BIG_POST + b"x" * 65536, {405, 413}),
        ("bad-method", b"\x00\x01 / HTTP/1.1\r\n\r\n", {400, None}),
        ("http2-preface", PREFACE + frame(4, 0, 0, b""), {400, 505, None}),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)  # fmt: skip
def test_hostile_http_at_the_ops_port(
    gateway: ProcessStack, case: str, payload: bytes, statuses: set[int | None]
) -> None:
    with ops_socket(gateway) as sock:
        # the server may close before reading everything: fine
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(payload)
        answer = drain_until_closed(sock)
    assert status_line(answer) in statuses, answer[:200]
    assert b"Traceback" not in answer
    assert_healthy(gateway)


def test_slowloris_at_the_ops_port_does_not_block_others(gateway: ProcessStack) -> None:
    assert gateway.gateway is not None
    rss_before = rss_kib(gateway.gateway.pid)
    slow = []
    try:
        for _ in range(200):
            s = ops_socket(gateway)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            slow.append(s)
        for _ in range(3):  # a header line now and then, never the end of the request
            for s in slow:
                s.sendall(b"X-Slow: 1\r\n")
            t0 = time.monotonic()
            assert gateway.ops_status("/healthz") == 200
            assert time.monotonic() - t0 < 2.0
            time.sleep(0.2)
    finally:
        for s in slow:
            s.close()
    assert_healthy(gateway)
    assert rss_kib(gateway.gateway.pid) < rss_before + 50 * 1024


def test_process_still_serving_after_everything(gateway: ProcessStack, tmp_path: Path) -> None:
    assert_healthy(gateway)
