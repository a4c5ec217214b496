"""AuditService over the real stack: checkpoints, entries and proofs for the auditor checked with
the log's vkey and our RFC 9162 verifier, ListAccesses for the citizen portal (covert accesses
hidden until their embargo, visible to the auditor), and role checks by certificate."""

from __future__ import annotations

import asyncio
import json

import grpc
import pytest

from gateway.audit import merkle
from gateway.audit.note import NoteVerifier, SignedCheckpoint
from proofless.v1 import audit_pb2
from proofless.v1 import verification_pb2 as pb
from tests.support.stack import Stack

pytestmark = pytest.mark.asyncio(loop_scope="module")


def claims_request(item: str, idn: str, purpose: str, case: str) -> pb.VerifyClaimsRequest:
    return pb.VerifyClaimsRequest(
        context=pb.RequestContext(service_item=item, case_id=case, purpose=purpose),
        applicant=pb.Applicant(id_number=idn),
        claims=[pb.Claim(id="owns", type="property.ownership", params={"owns": "false"})],
    )


async def checkpoint_covering(stack: Stack, size: int) -> SignedCheckpoint:
    """GetCheckpoint until the log has signed a tree of at least `size` (every 200 ms here)."""
    auditor = await stack.audit("auditor")
    key = NoteVerifier.from_vkey(stack.gateway.audit.vkey)
    for _ in range(500):
        reply = await auditor.GetCheckpoint(audit_pb2.GetCheckpointRequest())
        cp = SignedCheckpoint.open(reply.signed_note, key)  # signature by the log's vkey
        assert (cp.origin, cp.size, cp.root) == (reply.origin, reply.tree_size, reply.root_hash)
        if cp.size >= size:
            return cp
        await asyncio.sleep(0.02)
    raise AssertionError(f"no checkpoint reached size {size}")


async def test_auditor_checks_checkpoints_entries_and_proofs(stack: Stack) -> None:
    idn = stack.scenarios["household_head"]
    window = await stack.verification("quangang-window")
    first = await window.VerifyClaims(
        claims_request("housing-transfer", idn, "transfer registration", "QG-A-1"), timeout=10
    )
    cp1 = await checkpoint_covering(stack, first.attestation.audit_index + 1)
    second = await window.VerifyClaims(
        claims_request("housing-transfer", idn, "transfer registration", "QG-A-2"), timeout=10
    )
    index = second.attestation.audit_index
    cp2 = await checkpoint_covering(stack, index + 1)
    assert cp2.size > cp1.size

    auditor = await stack.audit("auditor")
    got = await auditor.GetEntries(audit_pb2.GetEntriesRequest(start=index, end=index + 1))
    (line,) = got.entries
    entry = json.loads(line)
    assert (entry["index"], entry["caller"], entry["case_id"]) == (
        index,
        "quangang-window",
        "QG-A-2",
    )
    assert entry["outcome"] == "granted"
    assert idn not in line.decode()  # the ID number is never in clear

    proof = await auditor.GetInclusionProof(
        audit_pb2.GetInclusionProofRequest(index=index, tree_size=cp2.size)
    )
    assert proof.leaf_hash == merkle.leaf_hash(line)
    merkle.verify_inclusion(index, cp2.size, merkle.leaf_hash(line), list(proof.hashes), cp2.root)
    with pytest.raises(merkle.InclusionProofError):
        merkle.verify_inclusion(
            index, cp2.size, merkle.leaf_hash(line + b" "), list(proof.hashes), cp2.root
        )

    consistency = await auditor.GetConsistencyProof(
        audit_pb2.GetConsistencyProofRequest(first=cp1.size, second=cp2.size)
    )
    merkle.verify_consistency(cp1.size, cp2.size, list(consistency.hashes), cp1.root, cp2.root)
    with pytest.raises(merkle.ConsistencyProofError):
        merkle.verify_consistency(
            cp1.size, cp2.size, list(consistency.hashes), cp1.root, merkle.EMPTY_ROOT
        )


async def test_list_accesses_for_the_citizen_hides_covert_ones(stack: Stack) -> None:
    idn = stack.scenarios["no_property"]
    window = await stack.verification("quangang-window")
    civil = await stack.verification("fuzhou-civil-affairs")
    open_reply = await window.VerifyClaims(
        claims_request("housing-transfer", idn, "transfer registration", "QG-B-1"), timeout=10
    )
    covert_reply = await civil.VerifyClaims(
        claims_request("subsistence-review", idn, "periodic review", "FZ-R-1"), timeout=10
    )
    open_index = open_reply.attestation.audit_index
    covert_index = covert_reply.attestation.audit_index

    portal = await stack.audit("citizen-portal")
    seen = await portal.ListAccesses(
        audit_pb2.ListAccessesRequest(id_number=idn, citizen_token=stack.citizen_token(idn))
    )
    by_index = {a.audit_index: a for a in seen.accesses}
    assert open_index in by_index
    assert covert_index not in by_index  # embargoed for 90 days
    access = by_index[open_index]
    assert (access.caller, access.service_item, access.purpose) == (
        "quangang-window",
        "housing-transfer",
        "transfer registration",
    )
    assert access.time.seconds > 0
    assert all(a.caller != "fuzhou-civil-affairs" for a in seen.accesses)

    auditor = await stack.audit("auditor")
    full = await auditor.ListAccesses(audit_pb2.ListAccessesRequest(id_number=idn))
    covert = {a.audit_index: a for a in full.accesses}[covert_index]
    assert (covert.caller, covert.service_item, covert.purpose) == (
        "fuzhou-civil-affairs",
        "subsistence-review",
        "periodic review",
    )
    (line,) = (await auditor.GetEntries(
        audit_pb2.GetEntriesRequest(start=covert_index, end=covert_index + 1)
    )).entries  # fmt: skip
    assert json.loads(line)["covert_until"]  # in the tree, only hidden from the portal

    head = stack.scenarios["household_head"]
    other = await portal.ListAccesses(
        audit_pb2.ListAccessesRequest(id_number=head, citizen_token=stack.citizen_token(head))
    )
    assert open_index not in {a.audit_index for a in other.accesses}


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.GetCheckpoint(audit_pb2.GetCheckpointRequest()),
        lambda s: s.GetEntries(audit_pb2.GetEntriesRequest(start=0, end=1)),
        lambda s: s.GetInclusionProof(audit_pb2.GetInclusionProofRequest(index=0, tree_size=1)),
        lambda s: s.GetConsistencyProof(audit_pb2.GetConsistencyProofRequest(first=1, second=1)),
        lambda s: s.ListAccesses(audit_pb2.ListAccessesRequest(id_number="11010519491231002X")),
    ],
    ids=["checkpoint", "entries", "inclusion", "consistency", "accesses"],
)
async def test_approval_caller_is_denied(stack: Stack, call: object) -> None:
    approval = await stack.audit("quangang-window")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call(approval)  # type: ignore[operator]
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
