"""Consent tokens (授权) end to end: subsistence-allowance requires the applicant's consent,
and every way a token can be wrong is refused with its own ErrorInfo reason and audited."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.rpc import error_details_pb2

from gateway.crypto.consent import issue_consent
from gateway.crypto.keys import load_ed25519_private_key
from proofless.v1 import verification_pb2 as pb
from tests.support.stack import Stack, rich_details

pytestmark = pytest.mark.asyncio(loop_scope="module")

CALLER = "fuzhou-civil-affairs"
ITEM = "subsistence-allowance"
PURPOSE = "minimum living allowance application"


def new_case() -> str:
    return f"FZ-DB-{uuid.uuid4().hex[:12]}"


def issuer_key(stack: Stack) -> Ed25519PrivateKey:
    return load_ed25519_private_key(stack.pki.consent_issuer_key)


def token(stack: Stack, applicant: str, case_id: str, **over: Any) -> str:
    binding: dict[str, Any] = {
        "applicant_id_number": applicant,
        "caller": CALLER,
        "item": ITEM,
        "case_id": case_id,
    }
    key = over.pop("key", None) or issuer_key(stack)
    binding.update(over)
    return issue_consent(key, **binding)


def request(applicant: str, case_id: str, consent: str = "") -> pb.RecordRequest:
    req = pb.RecordRequest(
        context=pb.RequestContext(
            service_item=ITEM, case_id=case_id, purpose=PURPOSE, consent_token=consent
        ),
        applicant=pb.Applicant(id_number=applicant),
    )
    req.read_mask.paths.extend(["name", "household_number", "relation_to_head"])
    return req


async def call(stack: Stack, req: pb.RecordRequest, request_id: str) -> pb.HouseholdRecordResponse:
    stub = await stack.verification(CALLER)
    response: pb.HouseholdRecordResponse = await stub.GetHouseholdRecord(
        req, timeout=5, metadata=(("x-request-id", request_id),)
    )
    return response


async def entry_for(stack: Stack, request_id: str) -> dict[str, Any]:
    log = stack.gateway.audit
    found = [json.loads(e) for e in await log.entries(0, log.tree_size)]
    [entry] = [e for e in found if e.get("request_id") == request_id]
    return entry


async def assert_denied(stack: Stack, req: pb.RecordRequest, reason: str) -> None:
    request_id = f"consent-{uuid.uuid4().hex}"
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call(stack, req, request_id)
    err = info.value
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    infos = [d for d in rich_details(err) if isinstance(d, error_details_pb2.ErrorInfo)]
    assert [i.reason for i in infos] == [reason]
    assert req.applicant.id_number not in (err.details() or "")
    # the refused caller can quote the request id: it names the audit entry
    assert dict(err.trailing_metadata() or ())["x-request-id"] == request_id
    entry = await entry_for(stack, request_id)
    assert (entry["outcome"], entry["status"], entry["reason"]) == (
        "denied",
        "PERMISSION_DENIED",
        reason,
    )
    assert entry["caller"] == CALLER
    assert entry["service_item"] == ITEM
    assert entry["proof_id"] == ""  # nothing was disclosed
    assert entry["departments"] == []  # refused before any department call


async def test_valid_consent_is_granted_and_audited(stack: Stack) -> None:
    applicant, case_id = stack.scenarios["household_head"], new_case()
    request_id = f"consent-{uuid.uuid4().hex}"
    resp = await call(
        stack, request(applicant, case_id, token(stack, applicant, case_id)), request_id
    )
    assert resp.record.name
    assert resp.attestation.proof
    entry = await entry_for(stack, request_id)
    assert (entry["outcome"], entry["status"], entry["reason"]) == ("granted", "OK", "")
    assert entry["proof_id"] == resp.attestation.proof_id


async def test_missing_consent(stack: Stack) -> None:
    applicant = stack.scenarios["household_head"]
    await assert_denied(stack, request(applicant, new_case()), "CONSENT_MISSING")


async def test_expired_consent(stack: Stack) -> None:
    applicant, case_id = stack.scenarios["household_head"], new_case()
    # issued two hours ago for ten minutes: well past the 60 s leeway
    old = token(stack, applicant, case_id, now=time.time() - 7200, ttl=600)
    await assert_denied(stack, request(applicant, case_id, old), "CONSENT_EXPIRED")


async def test_consent_for_another_caller(stack: Stack) -> None:
    applicant, case_id = stack.scenarios["household_head"], new_case()
    other = token(stack, applicant, case_id, caller="quangang-window")
    await assert_denied(stack, request(applicant, case_id, other), "CONSENT_WRONG_CALLER")


async def test_consent_for_another_item(stack: Stack) -> None:
    applicant, case_id = stack.scenarios["household_head"], new_case()
    other = token(stack, applicant, case_id, item="subsistence-review")
    await assert_denied(stack, request(applicant, case_id, other), "CONSENT_WRONG_ITEM")


async def test_consent_for_another_applicant(stack: Stack) -> None:
    s = stack.scenarios
    case_id = new_case()
    other = token(stack, s["household_child"], case_id)
    await assert_denied(
        stack, request(s["household_head"], case_id, other), "CONSENT_WRONG_APPLICANT"
    )


async def test_consent_for_another_case(stack: Stack) -> None:
    applicant = stack.scenarios["household_head"]
    other = token(stack, applicant, new_case())
    await assert_denied(stack, request(applicant, new_case(), other), "CONSENT_WRONG_CASE")


async def test_replayed_consent(stack: Stack) -> None:
    applicant, case_id = stack.scenarios["household_head"], new_case()
    once = token(stack, applicant, case_id)
    await call(stack, request(applicant, case_id, once), f"consent-{uuid.uuid4().hex}")
    await assert_denied(stack, request(applicant, case_id, once), "CONSENT_REPLAYED")


async def test_consent_signed_by_an_untrusted_key(stack: Stack) -> None:
    applicant, case_id = stack.scenarios["household_head"], new_case()
    forged = token(stack, applicant, case_id, key=Ed25519PrivateKey.generate())
    await assert_denied(stack, request(applicant, case_id, forged), "CONSENT_INVALID")


@pytest.mark.parametrize("garbage", ["not-a-jws", "a.b.c", "eyJhbGciOiJub25lIn0.e30."])
async def test_malformed_consent_is_invalid(stack: Stack, garbage: str) -> None:
    applicant = stack.scenarios["household_head"]
    await assert_denied(stack, request(applicant, new_case(), garbage), "CONSENT_INVALID")


@pytest.mark.parametrize("garbage", ["x" * 5000, "a.b.c\n", "a b.c"])
async def test_a_token_that_is_not_a_compact_jws_is_a_bad_request(
    stack: Stack, garbage: str
) -> None:
    applicant = stack.scenarios["household_head"]
    request_id = f"consent-{uuid.uuid4().hex}"
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call(stack, request(applicant, new_case(), garbage), request_id)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    fields = [
        v.field
        for d in rich_details(info.value)
        if isinstance(d, error_details_pb2.BadRequest)
        for v in d.field_violations
    ]
    assert fields == ["context.consent_token"]
    # the audit outcomes (gateway/domain/vocabulary.py) are granted / denied / not_found /
    # invalid / error; the status says why
    entry = await entry_for(stack, request_id)
    assert (entry["outcome"], entry["status"]) == ("invalid", "INVALID_ARGUMENT")


async def test_a_refused_token_is_not_burnt(stack: Stack) -> None:
    """The jti is recorded only once every other check passed: a token sent with the wrong
    case is refused, and still works for its own case."""
    applicant, case_id = stack.scenarios["household_head"], new_case()
    good = token(stack, applicant, case_id)
    await assert_denied(stack, request(applicant, new_case(), good), "CONSENT_WRONG_CASE")
    resp = await call(stack, request(applicant, case_id, good), f"consent-{uuid.uuid4().hex}")
    assert resp.attestation.proof


async def test_consent_also_guards_verify_claims(stack: Stack) -> None:
    s = stack.scenarios
    stub = await stack.verification(CALLER)
    case_id = new_case()

    def claims(consent: str) -> pb.VerifyClaimsRequest:
        return pb.VerifyClaimsRequest(
            context=pb.RequestContext(
                service_item=ITEM, case_id=case_id, purpose=PURPOSE, consent_token=consent
            ),
            applicant=pb.Applicant(id_number=s["no_property"]),
            claims=[pb.Claim(id="c1", type="property.ownership", params={"owns": "false"})],
        )

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.VerifyClaims(claims(""), timeout=5)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    resp = await stub.VerifyClaims(claims(token(stack, s["no_property"], case_id)), timeout=5)
    assert resp.results[0].verdict == pb.VERDICT_HOLDS
