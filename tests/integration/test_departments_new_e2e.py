"""The departments added by catalogue file, end to end: one real gateway over mutual TLS
(tests/support/stack.py) with every department simulated on the same population, and per
department a GetEvidence and a VerifyClaims through the deployed policy (deploy/config/
policy.toml): records narrowed to what the item grants, proofs that verify, one audit entry
naming the department, no ID number in it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from gateway.crypto.proof_check import check_proof
from gateway.devtools.pki import DevPki
from proofless.v1 import verification_pb2 as pb
from tests.conftest import need_service
from tests.support.stack import Stack, running_stack

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def stack(pki: DevPki, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    async with running_stack(pki, tmp_path_factory.mktemp("state")) as s:
        yield s


def context(item: str, case: str) -> pb.RequestContext:
    return pb.RequestContext(service_item=item, case_id=case, purpose="end-to-end check")


async def entry_at(stack: Stack, index: int) -> tuple[dict[str, Any], bytes]:
    (line,) = await stack.gateway.audit.entries(index, index + 1)
    return json.loads(line), line


def verdict(result: pb.ClaimResult) -> str:
    return pb.Verdict.Name(result.verdict).removeprefix("VERDICT_")


def proof_payload(stack: Stack, proof: str) -> dict[str, Any]:
    payload: dict[str, Any] = check_proof(proof, dict(stack.gateway.signer.jwks()))["payload"]
    return payload


async def one_record(
    stack: Stack, window: Any, evidence: str, item: str, case: str, applicant: pb.Applicant
) -> tuple[dict[str, Any], Any]:
    """GetEvidence of `evidence` (its department has the same code): the one record, and the
    reply, whose attestation and proof name that department."""
    reply = await window.GetEvidence(
        pb.EvidenceRequest(context=context(item, case), applicant=applicant, evidence_type=evidence)
    )
    (record,) = [dict(r) for r in reply.records]
    assert reply.attestation.department == evidence
    assert proof_payload(stack, reply.attestation.proof)["departments"] == [evidence]
    return record, reply


# ---- civil affairs: marriage (SOAP) --------------------------------------------------------


async def test_marriage_evidence_and_claims(stack: Stack) -> None:
    window = await stack.verification("ningde-window")
    me = stack.scenarios["married"]
    spouse = next(
        m
        for m in stack.sims.population.household_of(me).member_ids
        if stack.sims.population.people[m].relation == "配偶"
    )
    record, reply = await one_record(
        stack, window, "marriage", "birth-registration", "SY-2026-0001", pb.Applicant(id_number=me)
    )
    assert set(record) == {"kind", "registration_date", "authority"}  # what the item grants
    assert record["kind"] == "marriage"
    entry, line = await entry_at(stack, reply.attestation.audit_index)
    assert (entry["departments"], entry["record_type"], entry["outcome"]) == (
        ["marriage"],
        "marriage",
        "granted",
    )
    assert me.encode() not in line

    claims = await window.VerifyClaims(
        pb.VerifyClaimsRequest(
            context=context("birth-registration", "SY-2026-0002"),
            applicant=pb.Applicant(id_number=me),
            claims=[
                pb.Claim(id="m", type="marriage.status", params={"status": "married"}),
                pb.Claim(id="s", type="marriage.spouse", params={"spouse_id_number": spouse}),
            ],
        )
    )
    assert [(r.id, verdict(r)) for r in claims.results] == [("m", "HOLDS"), ("s", "HOLDS")]
    entry, line = await entry_at(stack, claims.attestation.audit_index)
    assert entry["departments"] == ["marriage"]
    assert spouse.encode() not in line
    assert me.encode() not in line


async def test_marriage_divorced_is_not_married(stack: Stack) -> None:
    window = await stack.verification("ningde-window")
    reply = await window.VerifyClaims(
        pb.VerifyClaimsRequest(
            context=context("birth-registration", "SY-2026-0003"),
            applicant=pb.Applicant(id_number=stack.scenarios["divorced"]),
            claims=[pb.Claim(id="m", type="marriage.status", params={"status": "married"})],
        )
    )
    assert verdict(reply.results[0]) == "DOES_NOT_HOLD"


# ---- medical insurance (HTTP JSON, API key) ------------------------------------------------


async def test_medical_insurance_evidence_and_claims(stack: Stack) -> None:
    window = await stack.verification("ningde-window")
    farmer = stack.scenarios["disabled"]
    record, reply = await one_record(
        stack,
        window,
        "medical_insurance",
        "medical-premium-aid",
        "YB-2026-0001",
        pb.Applicant(id_number=farmer),
    )
    assert record == {"scheme": "resident", "status": "active", "region_code": "350902"}
    entry, line = await entry_at(stack, reply.attestation.audit_index)
    assert (entry["departments"], entry["outcome"]) == (["medical_insurance"], "granted")
    assert farmer.encode() not in line
    claims = await window.VerifyClaims(
        pb.VerifyClaimsRequest(
            context=context("medical-premium-aid", "YB-2026-0002"),
            applicant=pb.Applicant(id_number=farmer),
            claims=[
                pb.Claim(
                    id="e",
                    type="medical_insurance.enrolled",
                    params={"scheme": "resident", "region": "350900"},
                )
            ],
        )
    )
    assert [(r.id, verdict(r)) for r in claims.results] == [("e", "HOLDS")]


# ---- market regulation: business licence (HTTP JSON, OAuth 2.0), an organisation ----------


async def test_business_licence_evidence_and_claims(stack: Stack) -> None:
    window = await stack.verification("huli-window")
    assert stack.sims.registers is not None
    code = stack.sims.registers.organisations["restaurant_sole_trader"]
    owner = stack.scenarios["business_owner"]
    record, reply = await one_record(
        stack,
        window,
        "business_licence",
        "catering-licence",
        "CY-2026-0001",
        pb.Applicant(credit_code=code),
    )
    assert set(record) == {"name", "kind", "scope", "status", "founded_on", "authority"}
    assert (record["kind"], record["status"]) == ("sole_trader", "existing")
    entry, line = await entry_at(stack, reply.attestation.audit_index)
    assert (entry["departments"], entry["outcome"]) == (["business_licence"], "granted")
    # a sole trader's code is personal data: the audit log names it only by pseudonym
    assert code.encode() not in line
    assert entry["subject"]

    claims = await window.VerifyClaims(
        pb.VerifyClaimsRequest(
            context=context("catering-licence", "CY-2026-0002"),
            applicant=pb.Applicant(credit_code=code),
            claims=[
                pb.Claim(id="a", type="business_licence.active", params={"scope": "餐饮服务"}),
                pb.Claim(
                    id="r",
                    type="business_licence.represented_by",
                    params={"person_id_number": owner},
                ),
            ],
        )
    )
    assert [(r.id, verdict(r)) for r in claims.results] == [("a", "HOLDS"), ("r", "HOLDS")]
    entry, line = await entry_at(stack, claims.attestation.audit_index)
    assert owner.encode() not in line
    assert code.encode() not in line
    revoked = await window.VerifyClaims(
        pb.VerifyClaimsRequest(
            context=context("catering-licence", "CY-2026-0003"),
            applicant=pb.Applicant(
                credit_code=stack.sims.registers.organisations["revoked_company"]
            ),
            claims=[pb.Claim(id="a", type="business_licence.active", params={"scope": "餐饮服务"})],
        )
    )
    assert verdict(revoked.results[0]) == "DOES_NOT_HOLD"


# ---- health commission: nurse registration (MariaDB), with social security and household --


async def test_nurse_renewal_evidence_and_claims(stack: Stack) -> None:
    need_service("MariaDB", "127.0.0.1", 3306)
    window = await stack.verification("ningde-window")
    nurse = stack.scenarios["nurse_renewal_due"]
    record, _ = await one_record(
        stack, window, "nurse", "nurse-renewal", "HS-2026-0001", pb.Applicant(id_number=nurse)
    )
    assert record["employer"] == "宁德市蕉城区医院"
    assert record["status"] == "valid"
    assert "id_number" not in record  # not granted to the item
    assert "name" not in record
    claims = await window.VerifyClaims(
        pb.VerifyClaimsRequest(
            context=context("nurse-renewal", "HS-2026-0002"),
            applicant=pb.Applicant(id_number=nurse),
            claims=[
                pb.Claim(id="valid", type="nurse.registration_valid"),
                pb.Claim(id="due", type="nurse.renewal_due"),
                pb.Claim(id="home", type="household.residence", params={"region": "350000"}),
            ],
        )
    )
    assert [(r.id, verdict(r)) for r in claims.results] == [
        ("valid", "HOLDS"),
        ("due", "HOLDS"),
        ("home", "HOLDS"),
    ]
    entry, line = await entry_at(stack, claims.attestation.audit_index)
    assert sorted(entry["departments"]) == ["household", "nurse", "social_security"]
    assert nurse.encode() not in line
    moved = await window.VerifyClaims(
        pb.VerifyClaimsRequest(
            context=context("nurse-renewal", "HS-2026-0003"),
            applicant=pb.Applicant(id_number=stack.scenarios["nurse_employer_changed"]),
            claims=[pb.Claim(id="valid", type="nurse.registration_valid")],
        )
    )
    assert verdict(moved.results[0]) == "DOES_NOT_HOLD"  # registered at a hospital he left


# ---- disabled persons' federation: disability certificate (front-end database) ------------


async def test_disability_subsidy_evidence_and_claims(stack: Stack) -> None:
    window = await stack.verification("ningde-window")
    farmer = stack.scenarios["disabled"]
    record, _ = await one_record(
        stack,
        window,
        "disability",
        "disability-subsidy",
        "CL-2026-0001",
        pb.Applicant(id_number=farmer),
    )
    assert set(record) == {"category", "grade", "valid_until"}
    assert (record["category"], record["grade"]) == ("physical", 2)
    claims = await window.VerifyClaims(
        pb.VerifyClaimsRequest(
            context=context("disability-subsidy", "CL-2026-0002"),
            applicant=pb.Applicant(id_number=farmer),
            claims=[
                pb.Claim(id="any", type="disability.certified", params={"max_grade": "4"}),
                pb.Claim(id="severe", type="disability.certified", params={"max_grade": "2"}),
                pb.Claim(id="insured", type="medical_insurance.enrolled"),
            ],
        )
    )
    assert [(r.id, verdict(r)) for r in claims.results] == [
        ("any", "HOLDS"),
        ("severe", "HOLDS"),
        ("insured", "HOLDS"),
    ]
    entry, line = await entry_at(stack, claims.attestation.audit_index)
    assert sorted(entry["departments"]) == ["disability", "medical_insurance"]
    assert farmer.encode() not in line
