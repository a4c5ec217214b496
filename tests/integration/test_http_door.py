"""The same integration cases over gRPC and over the HTTP/JSON door: a granted record with a
proof that verifies, bad ID numbers, the policy refusing a caller, consent, the audit service's
roles, and the audit entries a call leaves, which differ between the doors only in transport,
request id and time. Each test runs once per door with the same body: the HTTP stub
(tests.support.http_door) answers like a gRPC stub."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2

from gateway.crypto.consent import issue_consent
from gateway.crypto.keys import load_ed25519_private_key
from gateway.crypto.proof_check import check_proof
from proofless.v1 import audit_pb2
from proofless.v1 import verification_pb2 as pb
from tests.support.http_door import HttpCallError, http_stubs
from tests.support.stack import Stack, rich_details

pytestmark = pytest.mark.asyncio(loop_scope="module")

DOORS = ["grpc", "http"]
ITEM = "housing-transfer"
#: entry fields that differ between two calls of the same request, whatever the door
PER_CALL = {"time", "request_id", "latency_us", "proof_id", "index"}


async def stubs(stack: Stack, door: str, caller: str) -> tuple[Any, Any]:
    if door == "http":
        return await http_stubs(stack, caller)
    return await stack.verification(caller), await stack.audit(caller)


def failure(exc: BaseException) -> tuple[grpc.StatusCode, list[Any], str, str]:
    """(code, detail messages, message, request id) of a failed call over either door."""
    if isinstance(exc, HttpCallError):
        rid = dict(exc.trailing_metadata()).get("x-request-id", "")
        return exc.code(), exc.rich(), exc.details(), rid
    assert isinstance(exc, grpc.aio.AioRpcError)
    rid = str(dict(exc.trailing_metadata() or ()).get("x-request-id", ""))
    return exc.code(), rich_details(exc), exc.details() or "", rid


def record_request(idn: str, *, case: str = "QG-2026-HTTP-1", item: str = ITEM) -> pb.RecordRequest:
    request = pb.RecordRequest(
        context=pb.RequestContext(service_item=item, case_id=case, purpose="buyer residence"),
        applicant=pb.Applicant(id_number=idn),
    )
    request.read_mask.paths.extend(["name", "region_code", "status", "address"])
    return request


async def entry(stack: Stack, request_id: str) -> dict[str, Any]:
    log = stack.gateway.audit
    found = [json.loads(e) for e in await log.entries(0, log.tree_size)]
    [one] = [e for e in found if e.get("request_id") == request_id]
    return one


@pytest.mark.parametrize("door", DOORS)
async def test_a_granted_record_has_a_proof_that_verifies(stack: Stack, door: str) -> None:
    verification, _ = await stubs(stack, door, "quangang-window")
    idn = stack.scenarios["household_head"]
    rid = f"parity-{door}-{uuid.uuid4().hex[:8]}"
    resp = await verification.GetHouseholdRecord(
        record_request(idn), timeout=5, metadata=(("x-request-id", rid),)
    )
    assert sorted(resp.attestation.disclosed_fields) == ["name", "region_code", "status"]
    assert resp.record.address == ""
    report = check_proof(resp.attestation.proof, dict(stack.gateway.signer.jwks()))
    assert report["payload"]["audit"]["index"] == resp.attestation.audit_index
    assert report["payload"]["data"]["name"] == resp.record.name
    logged = await entry(stack, rid)
    assert logged["transport"] == door
    assert logged["outcome"] == "granted"
    assert logged["proof_id"] == resp.attestation.proof_id
    assert idn not in json.dumps(logged)


@pytest.mark.parametrize("door", DOORS)
@pytest.mark.parametrize(
    "mutate",
    [
        lambda idn: idn[:17],
        lambda idn: idn[:16] + ("0" if idn[16] != "0" else "1") + idn[17],
        lambda idn: idn[:10] + "AB" + idn[12:],
    ],
)
async def test_a_bad_id_number_is_invalid_without_the_number(
    stack: Stack, door: str, mutate: Any
) -> None:
    verification, _ = await stubs(stack, door, "quangang-window")
    bad = mutate(stack.scenarios["household_head"])
    with pytest.raises((grpc.aio.AioRpcError, HttpCallError)) as info:
        await verification.GetHouseholdRecord(record_request(bad), timeout=5)
    code, details, message, _ = failure(info.value)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    violations = [
        v
        for d in details
        if isinstance(d, error_details_pb2.BadRequest)
        for v in d.field_violations
    ]
    assert [v.field for v in violations] == ["applicant.id_number"]
    assert bad not in message
    assert bad not in violations[0].description
    if isinstance(info.value, HttpCallError):
        assert info.value.http_status == 400
        assert bad.encode() not in info.value.body


@pytest.mark.parametrize("door", DOORS)
async def test_a_caller_the_item_does_not_list_is_denied(stack: Stack, door: str) -> None:
    verification, _ = await stubs(stack, door, "fuzhou-civil-affairs")
    with pytest.raises((grpc.aio.AioRpcError, HttpCallError)) as info:
        await verification.GetHouseholdRecord(
            record_request(stack.scenarios["household_head"]), timeout=5
        )
    code, details, _, rid = failure(info.value)
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert [d.reason for d in details if isinstance(d, error_details_pb2.ErrorInfo)] == [
        "ITEM_NOT_ALLOWED"
    ]
    assert rid  # the refused caller can quote the request id of its audit entry
    logged = await entry(stack, rid)
    assert (logged["outcome"], logged["transport"]) == ("denied", door)
    if isinstance(info.value, HttpCallError):
        assert info.value.http_status == 403


@pytest.mark.parametrize("door", DOORS)
async def test_consent_is_required_and_a_valid_one_is_accepted_once(
    stack: Stack, door: str
) -> None:
    caller, item = "fuzhou-civil-affairs", "subsistence-allowance"
    verification, _ = await stubs(stack, door, caller)
    idn = stack.scenarios["household_head"]
    case = f"FZ-DB-{uuid.uuid4().hex[:10]}"

    def request(token: str) -> pb.RecordRequest:
        r = pb.RecordRequest(
            context=pb.RequestContext(
                service_item=item, case_id=case, purpose="allowance", consent_token=token
            ),
            applicant=pb.Applicant(id_number=idn),
        )
        r.read_mask.paths.extend(["name", "household_number"])
        return r

    with pytest.raises((grpc.aio.AioRpcError, HttpCallError)) as info:
        await verification.GetHouseholdRecord(request(""), timeout=5)
    code, details, _, _ = failure(info.value)
    assert code == grpc.StatusCode.PERMISSION_DENIED
    [reason] = [d.reason for d in details if isinstance(d, error_details_pb2.ErrorInfo)]
    assert reason.startswith("CONSENT")
    key = load_ed25519_private_key(stack.pki.consent_issuer_key)
    token = issue_consent(key, applicant_id_number=idn, caller=caller, item=item, case_id=case)
    resp = await verification.GetHouseholdRecord(request(token), timeout=5)
    assert resp.record.name
    with pytest.raises((grpc.aio.AioRpcError, HttpCallError)) as info:
        await verification.GetHouseholdRecord(request(token), timeout=5)
    code, details, _, _ = failure(info.value)
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert [d.reason for d in details if isinstance(d, error_details_pb2.ErrorInfo)] == [
        "CONSENT_REPLAYED"
    ]


@pytest.mark.parametrize("door", DOORS)
async def test_the_audit_service_answers_auditors_only(stack: Stack, door: str) -> None:
    _, audit = await stubs(stack, door, "auditor")
    # The log holds at least the start entry; alone (pytest -k) no call made before this one
    # may have been checkpointed yet: wait for the checkpointer's round.
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        checkpoint = await audit.GetCheckpoint(audit_pb2.GetCheckpointRequest(), timeout=5)
        if checkpoint.tree_size or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.1)
    assert checkpoint.tree_size > 0
    assert checkpoint.signed_note.startswith(checkpoint.origin)
    entries = await audit.GetEntries(audit_pb2.GetEntriesRequest(start=0, end=1), timeout=5)
    assert len(entries.entries) == 1
    _, refused = await stubs(stack, door, "quangang-window")
    with pytest.raises((grpc.aio.AioRpcError, HttpCallError)) as info:
        await refused.GetCheckpoint(audit_pb2.GetCheckpointRequest(), timeout=5)
    assert failure(info.value)[0] == grpc.StatusCode.PERMISSION_DENIED


async def test_the_same_call_leaves_the_same_entry_over_both_doors(stack: Stack) -> None:
    """Granted, denied and invalid: the entries differ in transport, request id and time."""
    idn = stack.scenarios["household_head"]
    cases = {
        "granted": ("quangang-window", record_request(idn, case="QG-PARITY-1")),
        "denied": ("fuzhou-civil-affairs", record_request(idn, case="QG-PARITY-2")),
        "invalid": ("quangang-window", record_request(idn[:17], case="QG-PARITY-3")),
    }
    for what, (caller, request) in cases.items():
        logged = {}
        for door in DOORS:
            verification, _ = await stubs(stack, door, caller)
            rid = f"same-{what}-{door}-{uuid.uuid4().hex[:6]}"
            with contextlib.suppress(grpc.aio.AioRpcError, HttpCallError):
                await verification.GetHouseholdRecord(
                    request, timeout=5, metadata=(("x-request-id", rid),)
                )
            logged[door] = await entry(stack, rid)
        grpc_entry, http_entry = logged["grpc"], logged["http"]
        assert (grpc_entry["transport"], http_entry["transport"]) == ("grpc", "http")
        assert grpc_entry["outcome"] == what
        differ = {
            k
            for k in grpc_entry.keys() | http_entry.keys()
            if grpc_entry.get(k) != http_entry.get(k)
        }
        assert differ <= PER_CALL | {"transport", "digest"}, what
        if what == "granted":  # the same data disclosed: the same digest
            assert grpc_entry["digest"] == http_entry["digest"]


async def test_http_calls_are_counted_with_their_transport(stack: Stack) -> None:
    verification, _ = await stubs(stack, "http", "quangang-window")
    await verification.ListServiceItems(pb.ListServiceItemsRequest(), timeout=5)
    count = sum(
        sample.value
        for metric in stack.registry.collect()
        if metric.name == "proofless_requests"
        for sample in metric.samples
        if sample.name == "proofless_requests_total"
        and sample.labels["transport"] == "http"
        and sample.labels["rpc"] == "ListServiceItems"
        and sample.labels["caller"] == "quangang-window"
    )
    assert count >= 1


async def test_a_passed_deadline_is_deadline_exceeded_and_audited(stack: Stack) -> None:
    verification, _ = await stubs(stack, "http", "quangang-window")
    rid = f"deadline-{uuid.uuid4().hex[:8]}"
    with pytest.raises(HttpCallError) as info:
        # one nanosecond: the deadline has passed at the call's first wait
        await verification.GetHouseholdRecord(
            record_request(stack.scenarios["household_head"], case="QG-DEADLINE"),
            metadata=(("x-request-id", rid), ("grpc-timeout", "1n")),
        )
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert info.value.http_status == 504
    logged = await entry(stack, rid)
    # refused by the department call's deadline check, or cancelled at the first wait
    assert logged["status"] in ("DEADLINE_EXCEEDED", "CANCELLED")
    assert logged["transport"] == "http"
