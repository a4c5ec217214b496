"""The demo policy's whole matrix over real gRPC with real certificates: every caller ×
service item × record type × field, and every caller × item × claim type. The oracle is
read straight from the TOML (not through gateway.domain.policy); a leak is an answer the file does
not grant, a false denial a granted combination refused. Both must be zero."""

from __future__ import annotations

import asyncio
import functools
import re
import tomllib
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from gateway.crypto.consent import issue_consent
from gateway.crypto.keys import load_ed25519_private_key
from gateway.devtools.pki import DEMO_CALLERS, DevPki
from proofless.v1 import verification_pb2 as pb
from tests.support.stack import ROOT

pytestmark = pytest.mark.slow
POLICY = ROOT / "deploy" / "config" / "policy.toml"
RPCS = {
    "household": ("GetHouseholdRecord", pb.HouseholdRecord),
    "social_security": ("GetSocialSecurityRecord", pb.SocialSecurityRecord),
    "property": ("GetPropertyRecords", pb.PropertyRecord),
}
PARALLEL = 24


def _unthrottled(tmp: Path) -> Path:
    """The demo policy with every rate raised: the matrix is about access, not speed."""
    text = re.sub(
        r"per_second = \d+, burst = \d+",
        "per_second = 100000, burst = 100000",
        POLICY.read_text(encoding="utf-8"),
    )
    path = tmp / "policy.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _claim(kind: str, scenarios: dict[str, str]) -> pb.Claim:
    params = {
        "household.residence": {"region": "350000"},
        "household.kinship": {"other_id_number": scenarios["household_head"], "relation": "parent"},
        "social_security.contribution": {"min_months": "1"},
        "property.ownership": {},
        "property.encumbrance": {"certificate_number": "闽(2020)泉港区不动产权第0000001号"},
    }[kind]
    return pb.Claim(id="c", type=kind, params=params)


async def test_every_combination_over_grpc(
    make_stack: Callable[..., Any], pki: DevPki, tmp_path: Path
) -> None:
    raw = tomllib.loads(POLICY.read_text(encoding="utf-8"))
    items: dict[str, Any] = raw["items"]
    claim_types = sorted({c for item in items.values() for c in item.get("claims", [])})
    consent_key = load_ed25519_private_key(pki.consent_issuer_key)
    async with make_stack({"policy": {"file": str(_unthrottled(tmp_path))}}) as stack:
        applicant = stack.scenarios["household_child"]
        counts: Counter[str] = Counter()
        leaks: list[str] = []
        false_denials: list[str] = []
        gate = asyncio.Semaphore(PARALLEL)
        stubs = {c.id: await stack.verification(c.id) for c in DEMO_CALLERS}

        def context(caller: str, code: str, n: int) -> pb.RequestContext:
            case = f"M-{n:06d}"
            token = ""
            if items[code].get("consent_required"):
                token = issue_consent(
                    consent_key,
                    applicant_id_number=applicant,
                    caller=caller,
                    item=code,
                    case_id=case,
                    ttl=600,
                )
            return pb.RequestContext(
                service_item=code, case_id=case, purpose="matrix", consent_token=token
            )

        async def check(
            label: str, allowed: bool, call: Callable[[], Any], fields: list[str] | None
        ) -> None:
            async with gate:  # grpc.aio starts a call when it is made: make it inside the gate
                try:
                    answer = await call()
                except grpc.aio.AioRpcError as err:
                    if err.code() != grpc.StatusCode.PERMISSION_DENIED:
                        raise AssertionError(f"{label}: {err.code().name} {err.details()}") from err
                    counts["denied"] += 1
                    if allowed:
                        false_denials.append(label)
                    return
            counts["answered"] += 1
            if not allowed:
                leaks.append(label)
            elif fields is not None and list(answer.attestation.disclosed_fields) != fields:
                leaks.append(f"{label}: disclosed {list(answer.attestation.disclosed_fields)}")

        calls = []
        n = 0
        for caller in (c.id for c in DEMO_CALLERS):
            stub = stubs[caller]
            for code, item in sorted(items.items()):
                on_list = caller in item["callers"]
                for record_type, (rpc, message) in RPCS.items():
                    granted = set(item.get("records", {}).get(record_type, []))
                    for field in sorted(f.name for f in message.DESCRIPTOR.fields):
                        n += 1
                        request = pb.RecordRequest(
                            context=context(caller, code, n),
                            applicant=pb.Applicant(id_number=applicant),
                        )
                        request.read_mask.paths.append(field)
                        calls.append(
                            check(
                                f"{caller} {code} {record_type}.{field}",
                                on_list and field in granted,
                                functools.partial(getattr(stub, rpc), request),
                                [field],
                            )
                        )
                for kind in claim_types:
                    n += 1
                    request = pb.VerifyClaimsRequest(
                        context=context(caller, code, n),
                        applicant=pb.Applicant(id_number=applicant),
                        claims=[_claim(kind, stack.scenarios)],
                    )
                    calls.append(
                        check(
                            f"{caller} {code} claim {kind}",
                            on_list and kind in item.get("claims", []),
                            functools.partial(stub.VerifyClaims, request),
                            None,
                        )
                    )
        await asyncio.gather(*calls)
        print(
            f"\nmatrix over gRPC: {n} combinations, {counts['answered']} answered, "
            f"{counts['denied']} denied, {len(leaks)} leaks, {len(false_denials)} false denials"
        )
        assert leaks == []
        assert false_denials == []
        assert counts["answered"] > 0
        assert counts["denied"] > 0
        assert counts["answered"] + counts["denied"] == n


#: a valid request for each catalogued claim (the item's constraints are laid over it)
BASE_CLAIMS: dict[str, Callable[[dict[str, str]], dict[str, str]]] = {
    "business_licence.active": lambda s: {},
    "business_licence.represented_by": lambda s: {"person_id_number": s["household_head"]},
    "disability.certified": lambda s: {},
    "household.residence": lambda s: {"region": "350000"},
    "household.kinship": lambda s: {"other_id_number": s["household_head"], "relation": "parent"},
    "marriage.status": lambda s: {"status": "married"},
    "marriage.spouse": lambda s: {"spouse_id_number": s["household_head"]},
    "medical_insurance.enrolled": lambda s: {},
    "nurse.registration_valid": lambda s: {},
    "nurse.renewal_due": lambda s: {},
    "property.ownership": lambda s: {},
    "property.encumbrance": lambda s: {"certificate_number": "闽(2020)泉港区不动产权第0000001号"},
    "social_security.contribution": lambda s: {"min_months": "1"},
}


def _text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _within(params: dict[str, str], rules: dict[str, Any], item: dict[str, Any]) -> dict[str, str]:
    """The request's parameters moved inside an item's constraints (read from the TOML)."""
    out = dict(params)
    for name, rule in rules.items():
        if "fixed" in rule:  # pinned: sent as pinned, or left out when pinned to nothing
            if rule["fixed"] == "":
                out.pop(name, None)
            else:
                out[name] = _text(rule["fixed"])
        elif "item" in rule:
            out[name] = item[rule["item"]]
        elif "in" in rule:
            out[name] = _text(rule["in"][0])
        elif "min" in rule:
            out[name] = _text(rule["min"])
        elif "max" in rule and name not in out:
            out[name] = _text(rule["max"])
    return out


async def test_every_catalogued_type_over_grpc(
    make_stack: Callable[..., Any], pki: DevPki, tmp_path: Path
) -> None:
    """Every caller × item × field of each evidence type served by GetEvidence (the types a
    catalogue file added), and × every catalogued claim: the leak matrix over the whole
    catalogue. The oracle is the TOML: records tables and claims (listed or with a table)."""
    from tests.support.rules import catalogue  # noqa: PLC0415

    cat = catalogue()
    raw = tomllib.loads(POLICY.read_text(encoding="utf-8"))
    items: dict[str, Any] = raw["items"]
    consent_key = load_ed25519_private_key(pki.consent_issuer_key)
    generic = sorted(code for code, e in cat.evidence.items() if not e.message)
    assert len(generic) >= 5  # marriage, nurse, business licence, medical insurance, disability
    async with make_stack({"policy": {"file": str(_unthrottled(tmp_path))}}) as stack:
        s = stack.scenarios
        organisation = stack.sims.registers.organisations["restaurant_company"]
        person_for = {
            "marriage": s["married"],
            "nurse": s["nurse_renewal_due"],
            "medical_insurance": s["insured"],
            "disability": s["disabled"],
        }
        counts: Counter[str] = Counter()
        leaks: list[str] = []
        false_denials: list[str] = []
        gate = asyncio.Semaphore(PARALLEL)
        stubs = {c.id: await stack.verification(c.id) for c in DEMO_CALLERS}

        def subject(evidence: str) -> pb.Applicant:
            if cat.evidence[evidence].subject == "organisation":
                return pb.Applicant(credit_code=organisation)
            return pb.Applicant(id_number=person_for.get(evidence, s["household_child"]))

        def context(caller: str, code: str, n: int, who: pb.Applicant) -> pb.RequestContext:
            case = f"C-{n:06d}"
            token = ""
            if items[code].get("consent_required"):
                token = issue_consent(
                    consent_key,
                    applicant_id_number=who.id_number or who.credit_code,
                    caller=caller,
                    item=code,
                    case_id=case,
                    ttl=600,
                )
            return pb.RequestContext(
                service_item=code, case_id=case, purpose="matrix", consent_token=token
            )

        async def check(label: str, allowed: bool, call: Callable[[], Any], field: str) -> None:
            async with gate:
                try:
                    answer = await call()
                except grpc.aio.AioRpcError as err:
                    if err.code() == grpc.StatusCode.NOT_FOUND:
                        counts["not found"] += 1  # past the policy: the department said so
                        if not allowed:
                            leaks.append(f"{label}: NOT_FOUND for what is not granted")
                        return
                    if err.code() != grpc.StatusCode.PERMISSION_DENIED:
                        raise AssertionError(f"{label}: {err.code().name} {err.details()}") from err
                    counts["denied"] += 1
                    if allowed:
                        false_denials.append(label)
                    return
            counts["answered"] += 1
            if not allowed:
                leaks.append(label)
            elif field and list(answer.attestation.disclosed_fields) != [field]:
                leaks.append(f"{label}: disclosed {list(answer.attestation.disclosed_fields)}")

        calls = []
        n = 0
        for caller in (c.id for c in DEMO_CALLERS):
            stub = stubs[caller]
            for code, item in sorted(items.items()):
                on_list = caller in item["callers"]
                for evidence in generic:
                    granted = set(item.get("records", {}).get(evidence, []))
                    for field in cat.evidence[evidence].record.names:
                        n += 1
                        who = subject(evidence)
                        request = pb.EvidenceRequest(
                            context=context(caller, code, n, who),
                            applicant=who,
                            evidence_type=evidence,
                        )
                        request.read_mask.paths.append(field)
                        calls.append(
                            check(
                                f"{caller} {code} {evidence}.{field}",
                                on_list and field in granted,
                                functools.partial(stub.GetEvidence, request),
                                field,
                            )
                        )
                tables = item.get("claim", {})
                for kind in sorted(BASE_CLAIMS):
                    n += 1
                    granted_claim = kind in item.get("claims", []) or kind in tables
                    rules = tables.get(kind, {}).get("params", {})
                    params = _within(BASE_CLAIMS[kind](s), rules, item)
                    who = subject(cat.claims[kind].evidence)
                    if who.id_number == s["household_head"]:
                        who = pb.Applicant(id_number=s["household_child"])
                    request = pb.VerifyClaimsRequest(
                        context=context(caller, code, n, who),
                        applicant=who,
                        claims=[pb.Claim(id="c", type=kind, params=params)],
                    )
                    calls.append(
                        check(
                            f"{caller} {code} claim {kind}",
                            on_list and granted_claim,
                            functools.partial(stub.VerifyClaims, request),
                            "",
                        )
                    )
        assert set(BASE_CLAIMS) == set(cat.claims), "a catalogued claim has no request here"
        await asyncio.gather(*calls)
        print(
            f"\ncatalogue matrix over gRPC: {n} combinations, {counts['answered']} answered, "
            f"{counts['not found']} not found, {counts['denied']} denied, {len(leaks)} leaks, "
            f"{len(false_denials)} false denials"
        )
        assert leaks == []
        assert false_denials == []
        assert counts["answered"] > 0
        assert counts["denied"] > 0
