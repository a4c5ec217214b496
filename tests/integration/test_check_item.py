"""CheckItem over the real stack: a service item's requirements decided in one call (一件事一次
办): each record read once from every department concurrently, every requirement answered,
the item's verdict from its all-of / any-of groups, the prefill the item allows, one proof
and one audit entry; a department down makes only its requirements undetermined."""

from __future__ import annotations

import json
import uuid
from typing import Any

import grpc
import pytest

from adapters.simulators.faults import Faults
from gateway.audit.entry import subject_of
from gateway.crypto import jws
from gateway.crypto.consent import issue_consent
from gateway.crypto.keys import load_ed25519_private_key
from proofless.v1 import verification_pb2 as pb
from tests.support.stack import Stack

pytestmark = pytest.mark.asyncio(loop_scope="module")

HOLDS, NOT, UNDET = pb.VERDICT_HOLDS, pb.VERDICT_DOES_NOT_HOLD, pb.VERDICT_UNDETERMINED


def housing(idn: str) -> pb.CheckItemRequest:
    return pb.CheckItemRequest(
        context=pb.RequestContext(
            service_item="housing-transfer",
            case_id=f"QG-CI-{uuid.uuid4().hex[:8]}",
            purpose="buyer eligibility",
        ),
        applicant=pb.Applicant(id_number=idn),
    )


def by_name(reply: pb.CheckItemResponse) -> dict[str, pb.RequirementResult]:
    return {r.name: r for r in reply.requirements}


def payload(token: str) -> dict[str, Any]:
    return json.loads(jws.b64url_decode(token.split(".")[1]))


async def test_one_call_decides_the_item(stack: Stack) -> None:
    idn = stack.scenarios["household_head"]
    window = await stack.verification("quangang-window")
    log = stack.gateway.audit
    before = log.tree_size
    reply = await window.CheckItem(housing(idn), timeout=10)
    results = by_name(reply)
    assert set(results) == {
        "local_hukou", "local_insurance", "no_local_home", "eligible_buyer", "purchase_limit",
    }  # fmt: skip
    for name in ("local_hukou", "local_insurance", "no_local_home"):
        assert results[name].kind == "claim"
        assert results[name].verdict in (HOLDS, NOT)
        assert results[name].department
    eligible = results["eligible_buyer"].verdict
    expected_eligible = (
        HOLDS if HOLDS in (results["local_hukou"].verdict, results["local_insurance"].verdict)
        else NOT
    )  # fmt: skip
    assert eligible == expected_eligible
    expected = HOLDS if (eligible, results["no_local_home"].verdict) == (HOLDS, HOLDS) else NOT
    assert reply.verdict == expected == results["purchase_limit"].verdict
    (prefill,) = reply.prefill
    assert (prefill.name, prefill.evidence_type) == ("buyer", "household")
    (record,) = prefill.records
    assert set(record.fields) == {"name", "region_code"}

    # one audit entry naming every department contacted, and one proof over the whole answer
    assert log.tree_size == before + 1
    (line,) = await log.entries(before, before + 1)
    entry = json.loads(line)
    assert entry["rpc"] == "CheckItem"
    assert entry["record_type"] == "item"
    assert entry["departments"] == ["household", "property", "social_security"]
    assert [c["type"] for c in entry["claims"]] == [
        "household.residence", "social_security.contribution", "property.ownership",
    ]  # fmt: skip
    assert idn not in line.decode()
    claims = payload(reply.attestation.proof)
    assert claims["data"]["verdict"] == pb.Verdict.Name(reply.verdict).removeprefix("VERDICT_")
    assert claims["data"]["item"] == "housing-transfer"
    assert claims["audit"]["index"] == before == reply.attestation.audit_index
    assert claims["kind"] == "item"
    assert idn not in json.dumps(claims, ensure_ascii=False)


async def test_one_department_down_undetermines_only_its_requirements(stack: Stack) -> None:
    idn = stack.scenarios["household_head"]
    window = await stack.verification("quangang-window")
    injector = stack.sims.social_security.injector
    injector.set(Faults(error_rate=1.0, error_status=503))
    try:
        reply = await window.CheckItem(housing(idn), timeout=10)
    finally:
        injector.set(Faults())
    results = by_name(reply)
    assert results["local_insurance"].verdict == UNDET
    assert results["local_insurance"].status.code == grpc.StatusCode.UNAVAILABLE.value[0]
    assert results["local_hukou"].verdict in (HOLDS, NOT)
    assert results["no_local_home"].verdict in (HOLDS, NOT)
    # any-of: a holding local hukou decides it even with social security down
    if results["local_hukou"].verdict == HOLDS:
        assert results["eligible_buyer"].verdict == HOLDS
    else:
        assert results["eligible_buyer"].verdict == UNDET


async def test_parties_are_read_once_each_and_audited(stack: Stack) -> None:
    """Subsistence allowance: the applicant and each household member named by the request
    own no property; each member's access is in their own "who accessed me" view."""
    s = stack.scenarios
    head, child = s["household_head"], s["household_child"]
    case_id = f"FZ-CI-{uuid.uuid4().hex[:8]}"
    key = load_ed25519_private_key(stack.pki.consent_issuer_key)
    consent = issue_consent(
        key,
        applicant_id_number=head,
        caller="fuzhou-civil-affairs",
        item="subsistence-allowance",
        case_id=case_id,
    )
    civil = await stack.verification("fuzhou-civil-affairs")
    request = pb.CheckItemRequest(
        context=pb.RequestContext(
            service_item="subsistence-allowance",
            case_id=case_id,
            purpose="minimum living allowance application",
            consent_token=consent,
        ),
        applicant=pb.Applicant(id_number=head),
        parties=[pb.Party(role="member", subject=pb.Applicant(id_number=child))],
    )
    log = stack.gateway.audit
    before = log.tree_size
    reply = await civil.CheckItem(request, timeout=10)
    members = [r for r in reply.requirements if r.name == "members_no_property"]
    assert [m.party for m in members] == ["member#1"]
    (line,) = await log.entries(before, before + 1)
    entry = json.loads(line)
    pepper = stack.config.audit.pepper_file.read_bytes()
    assert subject_of(pepper, child) in entry["subjects"]
    assert child not in line.decode()


@pytest.mark.parametrize(
    ("mutate", "code", "reason"),
    [
        (lambda r: r.parties.add(role="stranger"), None, None),
        (lambda r: setattr(r.context, "service_item", "ss-card"), "PERMISSION_DENIED", None),
        (lambda r: setattr(r.applicant, "name", "陈明"), "PERMISSION_DENIED", "NAME_NOT_ALLOWED"),
    ],
    ids=["unknown-role", "item-without-requirements", "name"],
)
async def test_refusals(stack: Stack, mutate: Any, code: str | None, reason: str | None) -> None:
    window = await stack.verification("quangang-window")
    request = housing(stack.scenarios["household_head"])
    mutate(request)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await window.CheckItem(request, timeout=10)
    expected = code or "INVALID_ARGUMENT"
    assert info.value.code().name == expected


async def test_the_nurse_renewal_in_one_call_over_four_departments(stack: Stack) -> None:
    """护士执业注册延续: registration valid at the employer she is enrolled by, renewal due,
    resident, still paying, insured; the proof verifies with an independent JOSE library."""
    from joserfc import jws as jose_jws  # noqa: PLC0415
    from joserfc.jwk import KeySet  # noqa: PLC0415

    nurse = stack.scenarios["nurse_renewal_due"]
    window = await stack.verification("ningde-window")
    log = stack.gateway.audit
    before = log.tree_size
    reply = await window.CheckItem(
        pb.CheckItemRequest(
            context=pb.RequestContext(service_item="nurse-renewal", case_id="ND-CI-1"),
            applicant=pb.Applicant(id_number=nurse),
        ),
        timeout=10,
    )
    results = by_name(reply)
    assert {n: r.verdict for n, r in results.items()} == {
        "registration": HOLDS, "due": HOLDS, "resident": HOLDS, "still_working": HOLDS,
        "insured": HOLDS,
    }  # fmt: skip
    assert reply.verdict == HOLDS
    (form,) = reply.prefill
    assert set(dict(form.records[0])) == {"certificate_number", "employer", "category",
                                          "valid_until"}  # fmt: skip
    (line,) = await log.entries(before, before + 1)
    assert json.loads(line)["departments"] == [
        "household", "medical_insurance", "nurse", "social_security",
    ]  # fmt: skip
    keyset = KeySet.import_key_set(dict(stack.gateway.signer.jwks()))
    token = jose_jws.deserialize_compact(reply.attestation.proof, keyset, algorithms=["EdDSA"])
    assert json.loads(token.payload)["data"]["verdict"] == "HOLDS"

    changed = stack.scenarios["nurse_employer_changed"]
    reply = await window.CheckItem(
        pb.CheckItemRequest(
            context=pb.RequestContext(service_item="nurse-renewal", case_id="ND-CI-2"),
            applicant=pb.Applicant(id_number=changed),
        ),
        timeout=10,
    )
    assert by_name(reply)["registration"].verdict == NOT
    assert reply.verdict == NOT


async def test_opening_a_restaurant_names_the_business_as_a_party(stack: Stack) -> None:
    """开餐馆一件事: the operator applies; the business (an organisation, by its credit code) is
    a party whose licence must be in force for catering and represented by the applicant."""
    owner = stack.scenarios["business_owner"]
    business = stack.sims.registers.organisations["restaurant_sole_trader"]
    window = await stack.verification("huli-window")

    async def check(applicant: str, party: str) -> pb.CheckItemResponse:
        return await window.CheckItem(
            pb.CheckItemRequest(
                context=pb.RequestContext(
                    service_item="catering-licence", case_id="HL-CI-1", purpose="catering"
                ),
                applicant=pb.Applicant(id_number=applicant),
                parties=[pb.Party(role="business", subject=pb.Applicant(credit_code=party))],
            ),
            timeout=10,
        )

    reply = await check(owner, business)
    results = by_name(reply)
    assert results["licence"].verdict == HOLDS
    assert results["licence"].party == "business#1"
    assert results["operator"].verdict == HOLDS
    (prefill,) = reply.prefill
    assert dict(prefill.records[0])["kind"]
    # someone else applying for the owner's business is not its operator
    other = stack.scenarios["household_head"]
    assert by_name(await check(other, business))["operator"].verdict == NOT
