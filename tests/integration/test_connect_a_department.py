"""A department that no Python file of Proofless names, connected by its catalogue file and
its front-end database alone (deploy/examples/education, the README's "Connect a
department"), served end to end over mutual TLS: discovery lists it, GetEvidence and
VerifyClaims answer with proofs that verify, the policy refuses what it should, the audit
entry names it, the metrics label it."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio

from gateway.crypto.proof_check import check_proof
from proofless.v1 import verification_pb2 as pb
from tests.support.stack import ROOT, Stack

EXAMPLE = ROOT / "deploy" / "examples" / "education"
NURSE = "350505199203150026"  # in the example's data: a bachelor and a master of nursing
NOBODY = "11010519491231002X"

pytestmark = pytest.mark.asyncio(loop_scope="module")


def connected(tmp: Path) -> dict[str, Any]:
    """What the README asks of an operator: the catalogue file in the catalogue directory,
    the department's data in its front-end database, the policy snippet in the policy."""
    catalogue = tmp / "catalogue"
    catalogue.mkdir()
    for f in (ROOT / "deploy" / "catalogue").glob("*.toml"):
        shutil.copy(f, catalogue)
    shutil.copy(EXAMPLE / "education.toml", catalogue)
    database = tmp / "education.sqlite3"
    with sqlite3.connect(database) as db:
        db.executescript((EXAMPLE / "education.sql").read_text(encoding="utf-8"))
    policy = tmp / "policy.toml"
    policy.write_text(
        (ROOT / "deploy" / "config" / "policy.toml").read_text(encoding="utf-8")
        + "\n"
        + (EXAMPLE / "policy.toml").read_text(encoding="utf-8"),
        encoding="utf-8",
    )
    return {
        "catalogue": {"dir": str(catalogue)},
        "policy": {"file": str(policy)},
        "departments": {"education": {"endpoint": f"sqlite:///{database}"}},
    }


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def edu(pki: Any, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    from tests.support.stack import running_stack  # noqa: PLC0415

    tmp = tmp_path_factory.mktemp("education")
    async with running_stack(pki, tmp / "state", connected(tmp)) as s:
        yield s


def no_python_names_it() -> list[Path]:
    found = []
    for folder in ("gateway", "adapters", "proofless"):
        for path in (ROOT / folder).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            if "V_XLXW" in text or "degree.holds" in text or '"education"' in text:
                found.append(path)
    return found


def context(case: str) -> pb.RequestContext:
    return pb.RequestContext(
        service_item="teacher-qualification", case_id=case, purpose="qualification review"
    )


async def test_no_code_names_the_department() -> None:
    assert no_python_names_it() == []


async def test_discovery_lists_it(edu: Stack) -> None:
    window = await edu.verification("quangang-window")
    reply = await window.ListEvidenceTypes(pb.ListEvidenceTypesRequest())
    (item,) = [i for i in reply.items if i.code == "teacher-qualification"]
    text = str(item)
    assert "degree" in text
    assert "degree.holds" in text


async def test_get_evidence_answers_with_a_proof_that_verifies(edu: Stack) -> None:
    window = await edu.verification("quangang-window")
    reply = await window.GetEvidence(
        pb.EvidenceRequest(
            context=context("TQ-1"),
            applicant=pb.Applicant(id_number=NURSE),
            evidence_type="degree",
        )
    )
    assert [dict(r)["level"] for r in reply.records] == ["bachelor", "master"]
    assert set(dict(reply.records[0])) == {"school", "major", "level", "graduation_date"}
    assert reply.attestation.department == "education"
    payload = check_proof(reply.attestation.proof, dict(edu.gateway.signer.jwks()))["payload"]
    assert payload["departments"] == ["education"]
    assert payload["kind"] == "degree"
    log = edu.gateway.audit
    (line,) = await log.entries(reply.attestation.audit_index, reply.attestation.audit_index + 1)
    entry = json.loads(line)
    assert (entry["departments"], entry["record_type"], entry["outcome"]) == (
        ["education"],
        "degree",
        "granted",
    )
    assert entry["catalogue"] == edu.gateway.rules.value.catalogue.version
    assert NURSE not in line.decode()


async def test_claims_decide_and_the_policy_bounds_them(
    edu: Stack, details: Callable[..., list[Any]]
) -> None:
    window = await edu.verification("quangang-window")

    async def ask(level: str, major: str = "") -> pb.VerifyClaimsResponse:
        params = {"level": level} | ({"major": major} if major else {})
        return await window.VerifyClaims(
            pb.VerifyClaimsRequest(
                context=context("TQ-2"),
                applicant=pb.Applicant(id_number=NURSE),
                claims=[pb.Claim(id="d", type="degree.holds", params=params)],
            )
        )

    assert (await ask("master", "护理")).results[0].verdict == pb.VERDICT_HOLDS
    assert (await ask("doctor")).results[0].verdict == pb.VERDICT_DOES_NOT_HOLD
    reply = await ask("bachelor")
    check_proof(reply.attestation.proof, dict(edu.gateway.signer.jwks()))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await ask("junior_college")  # below what the item allows
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    reasons = [d.reason for d in details(info.value) if hasattr(d, "reason")]
    assert reasons == ["CLAIM_PARAMS_NOT_ALLOWED"]


async def test_the_policy_refuses_fields_it_does_not_grant(
    edu: Stack, details: Callable[..., list[Any]]
) -> None:
    window = await edu.verification("quangang-window")
    request = pb.EvidenceRequest(
        context=context("TQ-3"), applicant=pb.Applicant(id_number=NURSE), evidence_type="degree"
    )
    request.read_mask.paths.append("certificate_number")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await window.GetEvidence(request)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    other = await edu.verification("fuzhou-civil-affairs")  # not a caller of the item
    with pytest.raises(grpc.aio.AioRpcError):
        await other.GetEvidence(
            pb.EvidenceRequest(
                context=context("TQ-4"),
                applicant=pb.Applicant(id_number=NURSE),
                evidence_type="degree",
            )
        )


async def test_an_unknown_person_has_no_degree(edu: Stack) -> None:
    window = await edu.verification("quangang-window")
    reply = await window.GetEvidence(
        pb.EvidenceRequest(
            context=context("TQ-5"),
            applicant=pb.Applicant(id_number=NOBODY),
            evidence_type="degree",
        )
    )
    assert list(reply.records) == []


async def test_the_metrics_label_it(edu: Stack) -> None:
    value = edu.registry.get_sample_value(
        "proofless_department_requests_total", {"department": "education", "outcome": "ok"}
    )
    assert value is not None
    assert value >= 1
