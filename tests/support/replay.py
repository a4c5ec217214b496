"""Replaying the typed RPCs: what GetHouseholdRecord, GetSocialSecurityRecord,
GetPropertyRecords and VerifyClaims answer for a fixed set of synthetic citizens, reduced to
digests that must not change when the machinery behind them does.

    python -m tests.support.replay > tests/vectors/replay/answers.json

records the answers of the tree it runs in; tests/integration/test_replay.py compares a
running gateway with that file. Each answer is the SHA-256 of the record message's
deterministic serialization, the status code of a failed call, and from the proof: the
disclosed fields, the digest of the disclosed data and the departments.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import grpc

from gateway.devtools.pki import init_dev_pki
from proofless.v1 import verification_pb2 as pb
from tests.support.stack import ROOT, Stack, running_stack

POLICY = ROOT / "tests" / "vectors" / "replay" / "policy.toml"
SAMPLE = 120  # people beyond the named scenarios, every n-th of the population

CLAIMS: list[tuple[str, dict[str, str]]] = [
    ("household.residence", {"region": "350500"}),
    ("household.residence", {"region": "350000"}),
    ("social_security.contribution", {"min_months": "120"}),
    ("social_security.contribution", {"min_months": "12", "from": "2020-01", "region": "350500"}),
    ("social_security.contribution", {"min_months": "24", "type": "medical", "to": "2022-12"}),
    ("property.ownership", {"owns": "false"}),
    ("property.ownership", {"region": "350206"}),
]


def people(stack: Stack) -> list[str]:
    population = stack.sims.population
    every = max(1, len(population.people) // SAMPLE)
    sample = sorted(population.people)[::every]
    return sorted(set(population.scenarios.values()) | set(sample))


def _payload(proof: str) -> dict[str, Any]:
    part = proof.split(".")[1]
    data: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return data


def _answer(record: bytes, proof: str) -> dict[str, Any]:
    payload = _payload(proof)
    return {
        "record": hashlib.sha256(record).hexdigest(),
        "fields": payload["fields"],
        "digest": payload["digest"],
        "departments": payload["departments"],
    }


async def replay(stack: Stack) -> dict[str, Any]:
    stub = await stack.verification("quangang-window")
    out: dict[str, Any] = {}
    for n, idn in enumerate(people(stack)):
        ctx = pb.RequestContext(service_item="replay", case_id=f"RP-{n:05d}", purpose="replay")
        request = pb.RecordRequest(context=ctx, applicant=pb.Applicant(id_number=idn))
        answers: dict[str, Any] = {}
        for name, rpc in (
            ("household", stub.GetHouseholdRecord),
            ("social_security", stub.GetSocialSecurityRecord),
        ):
            try:
                r = await rpc(request)
                answers[name] = _answer(
                    r.record.SerializeToString(deterministic=True), r.attestation.proof
                )
            except grpc.aio.AioRpcError as err:
                answers[name] = {"code": err.code().name}
        p = await stub.GetPropertyRecords(request)
        blob = b"".join(x.SerializeToString(deterministic=True) for x in p.records)
        answers["property"] = _answer(blob, p.attestation.proof)
        claims = [
            pb.Claim(id=f"c{i}", type=t, params=params) for i, (t, params) in enumerate(CLAIMS)
        ]
        members = (
            stack.sims.population.household_of(idn).member_ids
            if idn in stack.sims.population.people
            else ()
        )
        for j, other in enumerate(m for m in members if m != idn):
            for relation in ("spouse", "child", "parent", "sibling"):
                claims.append(
                    pb.Claim(
                        id=f"k{j}{relation}",
                        type="household.kinship",
                        params={"other_id_number": other, "relation": relation},
                    )
                )
        for prop in (
            stack.sims.population.properties_of(idn) if idn in stack.sims.population.people else []
        ):
            claims.append(
                pb.Claim(
                    id=f"e{len(claims)}",
                    type="property.encumbrance",
                    params={"certificate_number": prop.certificate_number},
                )
            )
        # One claim per call: a policy may bound how often one claim type repeats in a request.
        answers["claims"] = []
        for claim in claims:
            v = await stub.VerifyClaims(
                pb.VerifyClaimsRequest(context=ctx, applicant=request.applicant, claims=[claim])
            )
            (r,) = v.results
            answers["claims"].append([r.id, pb.Verdict.Name(r.verdict), r.status.code])
        out[idn] = answers
    return out


async def _main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        pki = init_dev_pki(Path(tmp) / "pki")
        overrides = {"policy": {"file": str(POLICY)}}
        async with running_stack(pki, Path(tmp) / "state", overrides) as stack:
            answers = await replay(stack)
    json.dump(answers, sys.stdout, indent=1, sort_keys=True)
    print()


if __name__ == "__main__":
    asyncio.run(_main())
