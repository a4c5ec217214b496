"""Hostile input at the HTTP/JSON door: malformed JSON, unknown fields, wrong types, oversized
bodies, wrong content types, missing or foreign client certificates, malformed HTTP, and the
descriptor-built fuzzing of tests/integration/test_hostile_input.py sent as JSON. Every answer
is a google.rpc.Status JSON with the right HTTP status, never a stack trace, never the input
echoed; afterwards a normal call still succeeds over HTTP/1.1 and HTTP/2."""

from __future__ import annotations

import asyncio
import json
import shutil
import ssl
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import status_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.devtools.pki import DevPki, init_dev_pki
from gateway.server.http_door import http_rule
from proofless.v1 import audit_pb2, verification_pb2
from proofless.v1 import verification_pb2 as pb
from tests.integration.test_hostile_input import RPCS, message
from tests.support.http_door import client_context, curl, http_stubs
from tests.support.stack import ROOT, Stack

pytestmark = pytest.mark.asyncio(loop_scope="module")

MARK = "ECHO-7f3a9c"  # put in hostile input; must never come back
RECORD = "/v1/records/household"
CLEAN = {200, 400, 401, 403, 404, 413, 415, 429}


def base(stack: Stack) -> str:
    return f"https://127.0.0.1:{stack.gateway.http_port}"


async def send(
    stack: Stack,
    path: str,
    body: bytes | None,
    *,
    method: str = "POST",
    headers: dict[str, str] | None = None,
    caller: str | None = "quangang-window",
) -> tuple[int, bytes, Any]:
    connector = aiohttp.TCPConnector(ssl=client_context(stack.pki, caller))
    async with (
        aiohttp.ClientSession(connector=connector, auto_decompress=False) as session,
        session.request(
            method,
            base(stack) + path,
            data=body,
            headers={"content-type": "application/json", **(headers or {})},
            skip_auto_headers=() if headers is None else tuple(headers),
        ) as resp,
    ):
        return resp.status, await resp.read(), resp.headers


def status_of(raw: bytes) -> status_pb2.Status:
    """The body as google.rpc.Status, read strictly: it is one, and nothing else."""
    assert b"Traceback" not in raw
    status = status_pb2.Status()
    json_format.Parse(raw.decode("utf-8"), status, ignore_unknown_fields=False)
    return status


def good_body(stack: Stack) -> dict[str, Any]:
    return {
        "context": {"serviceItem": "housing-transfer", "caseId": "QG-H-1", "purpose": "check"},
        "applicant": {"idNumber": stack.scenarios["household_head"]},
        "readMask": "name,regionCode",
    }


def deep(n: int) -> bytes:
    return b'{"context":' * n + b"{}" + b"}" * n


BAD_BODIES: list[tuple[str, Any, int, str]] = [
    ("malformed JSON", b'{"context": {"caseId": "' + MARK.encode(), 400, "INVALID_ARGUMENT"),
    ("not an object", json.dumps([MARK]).encode(), 400, "INVALID_ARGUMENT"),
    ("unknown field", {"context": {}, MARK: 1}, 400, "INVALID_ARGUMENT"),
    ("unknown nested field", {"applicant": {"idNumber": "1", MARK: "x"}}, 400, "INVALID_ARGUMENT"),
    ("string as number", {"applicant": {"idNumber": 12345678901234567}}, 400, "INVALID_ARGUMENT"),
    ("object as string", {"context": MARK}, 400, "INVALID_ARGUMENT"),
    ("number as mask", {"readMask": 7}, 400, "INVALID_ARGUMENT"),
    ("bad mask", {"readMask": f"name,{MARK}_x"}, 400, "INVALID_ARGUMENT"),
    ("array as message", {"applicant": [MARK]}, 400, "INVALID_ARGUMENT"),
    ("duplicate key", b'{"context": {}, "context": {"caseId": "' + MARK.encode() + b'"}}', 400, "INVALID_ARGUMENT"),  # noqa: E501
    ("json and proto name", {"caseId": 1, "context": {"caseId": MARK, "case_id": MARK}}, 400, "INVALID_ARGUMENT"),  # noqa: E501
    ("NaN", b'{"context": NaN, "x": "' + MARK.encode() + b'"}', 400, "INVALID_ARGUMENT"),
    ("deep nesting", deep(5000), 400, "INVALID_ARGUMENT"),
    ("not UTF-8", b'{"context": {"caseId": "\xff\xfe' + MARK.encode() + b'"}}', 400, "INVALID_ARGUMENT"),  # noqa: E501
    ("oversized", b'{"context": {"purpose": "' + MARK.encode() * 100_000 + b'"}}', 413, "BODY_TOO_LARGE"),  # noqa: E501
]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [pytest.param(b, s, r, id=name) for name, b, s, r in BAD_BODIES],
)
async def test_a_bad_body_is_a_clear_error_without_the_input(
    stack: Stack, body: Any, status: int, reason: str
) -> None:
    raw_body = body if isinstance(body, bytes) else json.dumps(body).encode()
    got, raw, headers = await send(stack, RECORD, raw_body)
    assert got == status
    answer = status_of(raw)
    assert MARK not in raw.decode("utf-8")
    assert headers["x-request-id"]
    assert headers["cache-control"] == "no-store"
    infos = [d for d in answer.details if d.type_url.endswith(("ErrorInfo", "BadRequest"))]
    assert infos
    if reason != "INVALID_ARGUMENT":
        assert reason in raw.decode()


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"content-type": "text/plain"}, 415),
        ({"content-type": "application/json; charset=latin-1"}, 415),
        ({"content-type": "application/x-www-form-urlencoded"}, 415),
        ({"content-type": "application/json", "content-encoding": "gzip"}, 415),
        ({"content-type": "application/json", "grpc-timeout": MARK}, 400),
        ({"content-type": "application/json", "grpc-timeout": "999999999S"}, 400),
    ],
)
async def test_wrong_headers_are_refused(
    stack: Stack, headers: dict[str, str], status: int
) -> None:
    got, raw, _ = await send(stack, RECORD, json.dumps(good_body(stack)).encode(), headers=headers)
    assert got == status
    status_of(raw)
    assert MARK not in raw.decode()


async def test_a_body_without_a_content_type_is_refused(stack: Stack) -> None:
    connector = aiohttp.TCPConnector(ssl=client_context(stack.pki, "quangang-window"))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.post(
            base(stack) + RECORD,
            data=json.dumps(good_body(stack)).encode(),
            skip_auto_headers=("content-type",),
        ) as resp,
    ):
        assert resp.status == 415
        status_of(await resp.read())


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("GET", "/v1/nothing-here", None, 404, grpc.StatusCode.NOT_FOUND),
        ("GET", RECORD, None, 405, grpc.StatusCode.UNIMPLEMENTED),
        ("DELETE", "/v1/service-items", None, 405, grpc.StatusCode.UNIMPLEMENTED),
        ("GET", "/v1/service-items", b'{"x": 1}', 400, grpc.StatusCode.INVALID_ARGUMENT),
        ("GET", f"/v1/audit/entries?start=0&{MARK}=1", None, 400, None),
        ("GET", f"/v1/audit/entries?start={MARK}", None, 400, None),
        ("GET", "/v1/audit/entries?start=1&start=2", None, 400, None),
        ("POST", f"{RECORD}?caseId={MARK}", b"{}", 400, grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
async def test_routes_methods_and_queries(
    stack: Stack,
    method: str,
    path: str,
    body: bytes | None,
    status: int,
    code: grpc.StatusCode | None,
) -> None:
    got, raw, headers = await send(stack, path, body, method=method, caller="auditor")
    assert got == status
    answer = status_of(raw)
    if code is not None:
        assert answer.code == code.value[0]
    if status == 405:
        assert headers["allow"]
    assert MARK not in raw.decode()


async def test_without_a_client_certificate_the_answer_is_401_and_audited(stack: Stack) -> None:
    rid = "no-certificate-1"
    got, raw, _ = await send(
        stack,
        RECORD,
        json.dumps(good_body(stack)).encode(),
        caller=None,
        headers={"content-type": "application/json", "x-request-id": rid},
    )
    assert got == 401
    answer = status_of(raw)
    assert answer.code == grpc.StatusCode.UNAUTHENTICATED.value[0]
    assert "NO_CLIENT_CERTIFICATE" in raw.decode()
    log = stack.gateway.audit
    entries = [json.loads(e) for e in await log.entries(0, log.tree_size)]
    [entry] = [e for e in entries if e.get("request_id") == rid]
    assert (entry["outcome"], entry["reason"], entry["transport"]) == (
        "denied",
        "NO_CLIENT_CERTIFICATE",
        "http",
    )


async def test_a_certificate_from_another_ca_never_completes_a_handshake(
    stack: Stack, tmp_path: Path
) -> None:
    stranger = init_dev_pki(tmp_path / "other")
    ctx = ssl.create_default_context(cafile=str(stack.pki.ca_pem))
    ctx.load_cert_chain(
        str(stranger.client_pem("quangang-window")), str(stranger.client_key("quangang-window"))
    )
    connector = aiohttp.TCPConnector(ssl=ctx)
    async with aiohttp.ClientSession(connector=connector) as session:
        with pytest.raises(aiohttp.ClientError):
            async with session.get(base(stack) + "/v1/service-items") as resp:
                await resp.read()


@pytest.mark.parametrize(
    "raw",
    [
        b"GARBAGE " + MARK.encode() + b"\r\n\r\n",
        b"POST /v1/records/household HTTP/1.1\r\nHost: x\r\nContent-Length: -5" + MARK.encode() + b"\r\n\r\n",  # noqa: E501
        b"GET /" + MARK.encode() * 3000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\n" + MARK.encode() + b": " + b"a" * 20000 + b"\r\n\r\n",
    ],
)  # fmt: skip
async def test_malformed_http_is_answered_without_the_input(stack: Stack, raw: bytes) -> None:
    ctx = client_context(stack.pki, "quangang-window")
    ctx.set_alpn_protocols(["http/1.1"])
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", stack.gateway.http_port, ssl=ctx, server_hostname="localhost"
    )
    try:
        writer.write(raw)
        await writer.drain()
        answer = await reader.read(65536)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.")
    assert head.split(b" ")[1].startswith(b"4")
    assert MARK.encode() not in answer
    status_of(body)


# ---- the hostile-input fuzzing of the gRPC door, as JSON ------------------------------------

FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
HTTP_RPCS = [r for r in RPCS if r[0] in ("verification", "audit")]


@FUZZ
@given(data=st.data())
async def test_descriptor_built_requests_as_json_get_clean_answers(
    stack: Stack, data: st.DataObject
) -> None:
    """One fuzzed request to every RPC over HTTP: a clean status each time, never 5xx."""
    requests = [
        (kind, caller, rpc, data.draw(message(descriptor), label=rpc))
        for kind, caller, rpc, descriptor in HTTP_RPCS
    ]
    for rpc, status, raw in await _fuzz_round(stack, requests):
        assert status in CLEAN, (rpc, status, raw[:200])
        if status != 200:
            status_of(raw)


async def _fuzz_round(
    stack: Stack, requests: list[tuple[str, str, str, Message]]
) -> list[tuple[str, int, bytes]]:
    services = {
        "verification": verification_pb2.DESCRIPTOR.services_by_name["VerificationService"],
        "audit": audit_pb2.DESCRIPTOR.services_by_name["AuditService"],
    }
    out = []
    for kind, caller, rpc, request in requests:
        service = services[kind]
        rule = http_rule(service.full_name, rpc, service.methods_by_name[rpc].GetOptions())
        try:
            data = json_format.MessageToDict(request)
        except json_format.SerializeToJsonError:
            continue  # a FieldMask path JSON cannot spell ("A", "a__b"): no HTTP request has it
        if rule.body == "*":
            status, raw, _ = await send(stack, rule.path, json.dumps(data).encode(), caller=caller)
        else:
            query = "&".join(f"{k}={v}" for k, v in data.items())
            path = rule.path + (f"?{query}" if query else "")
            status, raw, _ = await send(stack, path, None, method="GET", caller=caller)
        out.append((rpc, status, raw))
    return out


@FUZZ
@given(
    body=st.recursive(
        st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(),
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(
                st.sampled_from(["context", "applicant", "readMask", "claims", "idNumber", MARK]),
                inner,
                max_size=4,
            )
        ),
        max_leaves=20,
    )
)
async def test_arbitrary_json_gets_a_clean_answer(stack: Stack, body: Any) -> None:
    status, raw, _ = await send(stack, "/v1/claims:verify", json.dumps(body).encode())
    assert status in CLEAN
    if status != 200:
        status_of(raw)
        assert MARK not in raw.decode()


# ---- afterwards: still serving, over both HTTP versions -------------------------------------


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl (with HTTP/2)")
@pytest.mark.parametrize(("flag", "version"), [("--http1.1", "1.1"), ("--http2", "2")])
async def test_curl_gets_a_record_over_http1_and_http2(
    stack: Stack, pki: DevPki, flag: str, version: str
) -> None:
    url = f"https://localhost:{stack.gateway.http_port}{RECORD}"
    text, tail = await curl(pki, "quangang-window", url, good_body(stack), flag, ROOT)
    assert tail == f"{version} 200"
    answer = pb.HouseholdRecordResponse()
    json_format.Parse(text, answer, ignore_unknown_fields=False)
    assert answer.record.name
    assert answer.attestation.proof


async def test_still_serving_after_the_hostile_input(stack: Stack) -> None:
    verification, _ = await http_stubs(stack, "quangang-window")
    items = await verification.ListServiceItems(pb.ListServiceItemsRequest(), timeout=5)
    assert items.items
