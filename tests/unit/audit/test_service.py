"""AuditServicer, called directly with a caller identity in the contextvar."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit import merkle
from gateway.audit.log import AuditLog
from gateway.audit.note import NoteVerifier, SignedCheckpoint
from gateway.domain.errors import InvalidArgument, NotFound, PermissionDenied
from gateway.server.audit_service import AuditServicer
from gateway.server.identity import Caller, current_caller
from proofless.v1 import audit_pb2
from tests.support.auditlog import ID_A, PEPPER, access, open_log


def as_caller(*roles: str) -> None:
    current_caller.set(Caller("someone", frozenset(roles), 1, datetime.now(UTC)))


@pytest.fixture
async def log(tmp_path: Path, note_key: Ed25519PrivateKey) -> AsyncIterator[AuditLog]:
    log = await open_log(tmp_path, note_key)
    for i in range(12):
        extra: dict[str, Any] = {"covert_until": "2999-01-01"} if i == 5 else {}
        if i == 7:
            extra = {"covert_until": "2000-01-01"}
        await log.append(access(i, **extra))
    await log._checkpoint()
    yield log
    await log.close()


async def test_auditor_rpcs(log: AuditLog) -> None:
    svc = AuditServicer(log, PEPPER)
    as_caller("auditor")
    cp = await svc.GetCheckpoint(audit_pb2.GetCheckpointRequest(), None)
    signed = SignedCheckpoint.open(cp.signed_note, NoteVerifier.from_vkey(log.vkey))
    assert (cp.tree_size, cp.root_hash) == (signed.size, signed.root) == (12, signed.root)

    got = await svc.GetEntries(audit_pb2.GetEntriesRequest(start=2, end=50), None)
    assert len(got.entries) == 10

    proof = await svc.GetInclusionProof(audit_pb2.GetInclusionProofRequest(index=4), None)
    assert proof.tree_size == 12
    assert proof.leaf_hash == merkle.leaf_hash(got.entries[2])
    assert SignedCheckpoint.parse(proof.signed_note).size == 12
    merkle.verify_inclusion(4, 12, proof.leaf_hash, list(proof.hashes), cp.root_hash)

    cons = await svc.GetConsistencyProof(
        audit_pb2.GetConsistencyProofRequest(first=3, second=12), None
    )
    root3 = merkle.root_of([merkle.leaf_hash(x) for x in (await log.entries(0, 3))])
    merkle.verify_consistency(3, 12, list(cons.hashes), root3, cp.root_hash)


@pytest.mark.parametrize(
    ("rpc", "request_", "error"),
    [
        ("GetEntries", audit_pb2.GetEntriesRequest(start=12, end=13), InvalidArgument),
        ("GetEntries", audit_pb2.GetEntriesRequest(start=0, end=1001), InvalidArgument),
        ("GetEntries", audit_pb2.GetEntriesRequest(start=3, end=3), InvalidArgument),
        ("GetInclusionProof", audit_pb2.GetInclusionProofRequest(index=12), InvalidArgument),
        ("GetInclusionProof", audit_pb2.GetInclusionProofRequest(index=0, tree_size=99), NotFound),
        (
            "GetConsistencyProof",
            audit_pb2.GetConsistencyProofRequest(first=0, second=3),
            InvalidArgument,
        ),
        (
            "GetConsistencyProof",
            audit_pb2.GetConsistencyProofRequest(first=4, second=3),
            InvalidArgument,
        ),
        ("GetConsistencyProof", audit_pb2.GetConsistencyProofRequest(first=1, second=13), NotFound),
    ],
)
async def test_bad_requests(log: AuditLog, rpc: str, request_: Any, error: type[Exception]) -> None:
    as_caller("auditor")
    with pytest.raises(error):
        await getattr(AuditServicer(log, PEPPER), rpc)(request_, None)


async def test_roles(log: AuditLog) -> None:
    svc = AuditServicer(log, PEPPER)
    as_caller("portal")
    with pytest.raises(PermissionDenied):
        await svc.GetCheckpoint(audit_pb2.GetCheckpointRequest(), None)
    as_caller("approval")
    with pytest.raises(PermissionDenied):
        await svc.ListAccesses(audit_pb2.ListAccessesRequest(id_number=ID_A), None)


async def test_list_accesses_hides_covert_from_the_portal(log: AuditLog) -> None:
    svc = AuditServicer(log, PEPPER)
    as_caller("portal")
    page = await svc.ListAccesses(audit_pb2.ListAccessesRequest(id_number=ID_A, page_size=2), None)
    seen = [a.audit_index for a in page.accesses]
    while page.next_page_token:
        page = await svc.ListAccesses(
            audit_pb2.ListAccessesRequest(
                id_number=ID_A, page_size=2, page_token=page.next_page_token
            ),
            None,
        )
        seen += [a.audit_index for a in page.accesses]
    assert seen == [1, 3, 7, 9, 11]  # 5 is covert until 2999, 7's embargo is over
    first = (await svc.ListAccesses(audit_pb2.ListAccessesRequest(id_number=ID_A), None)).accesses[
        0
    ]
    assert (first.caller, first.service_item, first.purpose) == (
        "approval-b", "11000000000000002", "birth registration",
    )  # fmt: skip
    assert first.time.ToJsonString() == "2026-11-21T10:00:01Z"
    as_caller("auditor")
    page = await svc.ListAccesses(audit_pb2.ListAccessesRequest(id_number=ID_A.lower()), None)
    assert [a.audit_index for a in page.accesses] == [1, 3, 5, 7, 9, 11]


@pytest.mark.parametrize(
    ("id_number", "token"),
    [("", ""), ("1" * 19, ""), (ID_A, "abc"), (ID_A, "²"), (ID_A, "٣"), (ID_A, "9" * 5000)],
)
async def test_list_accesses_bad_input(log: AuditLog, id_number: str, token: str) -> None:
    as_caller("portal")
    with pytest.raises(InvalidArgument):
        await AuditServicer(log, PEPPER).ListAccesses(
            audit_pb2.ListAccessesRequest(id_number=id_number, page_token=token), None
        )
