"""AuditServicer, called directly with a caller identity in the contextvar: roles from the
policy, ListAccesses bound to the citizen by the identity provider's token, covert entries
filtered before a page is cut, and page tokens sealed for one subject."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client import CollectorRegistry

from gateway.audit import merkle
from gateway.audit.entry import subject_of
from gateway.audit.log import AuditLog
from gateway.audit.note import NoteVerifier, SignedCheckpoint
from gateway.crypto import jws
from gateway.crypto.citizen import issue_citizen_token
from gateway.crypto.keys import IssuerKeys
from gateway.domain.errors import InvalidArgument, NotFound, PermissionDenied
from gateway.ops.metrics import Metrics
from gateway.server.audit_service import AuditDeps, AuditServicer
from gateway.server.call import Audited, Call, current_call
from gateway.server.identity import Caller, current_caller
from gateway.server.ratelimit import LocalRateLimiter
from proofless.v1 import audit_pb2
from tests.support.auditlog import ID_A, ID_B, PEPPER, access, open_log
from tests.support.rules import policy_from

ISSUER = Ed25519PrivateKey.generate()
POLICY = policy_from(
    b"""
[callers.portal]
name = "citizen portal"
roles = ["portal"]
[callers.other-portal]
name = "another portal"
roles = ["portal"]
[callers.auditor]
name = "auditor"
roles = ["auditor"]
[callers.approval]
name = "an approval system"
roles = ["approval"]
"""
)


def as_caller(caller_id: str, *cert_roles: str) -> None:
    """The caller's certificate names `cert_roles`; its roles in force come from POLICY."""
    caller = Caller(caller_id, frozenset(cert_roles), 1, datetime.now(UTC))
    current_caller.set(caller)
    current_call.set(Call(rpc="ListAccesses", request_id="r-1", caller=caller))


def servicer(log: AuditLog, policy: Any = POLICY) -> AuditServicer:
    return AuditServicer(
        AuditDeps(
            log=log,
            pepper=PEPPER,
            policy=lambda: policy,
            citizen_keys=lambda: IssuerKeys.trusting(
                {jws.kid_of(ISSUER.public_key()): ISSUER.public_key()}, ["proofless-dev-consent"]
            ),
            limiter=LocalRateLimiter(),
            audited=Audited(log, Metrics(CollectorRegistry())),
        )
    )


def token(id_number: str = ID_A, portal: str = "portal", **kw: Any) -> str:
    return issue_citizen_token(ISSUER, id_number=id_number, portal=portal, **kw)


def listing(id_number: str = ID_A, **kw: Any) -> audit_pb2.ListAccessesRequest:
    if "citizen_token" not in kw:
        kw["citizen_token"] = token(id_number)
    return audit_pb2.ListAccessesRequest(id_number=id_number, **kw)


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
    svc = servicer(log)
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
        await getattr(servicer(log), rpc)(request_, None)


async def test_roles_come_from_the_policy_not_the_certificate(log: AuditLog) -> None:
    svc = servicer(log)
    as_caller("portal", "auditor")  # a certificate naming a role the policy does not give
    with pytest.raises(PermissionDenied) as info:
        await svc.GetCheckpoint(audit_pb2.GetCheckpointRequest(), None)
    assert info.value.reason == "ROLE_NOT_ALLOWED"
    as_caller("approval", "portal")
    with pytest.raises(PermissionDenied):
        await svc.ListAccesses(listing(), None)
    # removing the auditor from the policy revokes the role at once
    as_caller("auditor", "auditor")
    await svc.GetCheckpoint(audit_pb2.GetCheckpointRequest(), None)
    without = policy_from(b'[callers.auditor]\nname = "auditor"\nroles = ["approval"]\n')
    with pytest.raises(PermissionDenied):
        await servicer(log, without).GetCheckpoint(audit_pb2.GetCheckpointRequest(), None)


async def pages(svc: AuditServicer, request: audit_pb2.ListAccessesRequest) -> list[list[int]]:
    out = []
    while True:
        page = await svc.ListAccesses(request, None)
        out.append([a.audit_index for a in page.accesses])
        if not page.next_page_token:
            return out
        request.page_token = page.next_page_token


async def test_list_accesses_hides_covert_from_the_portal(log: AuditLog) -> None:
    svc = servicer(log)
    as_caller("portal")
    got = await pages(svc, listing(page_size=2))
    # 5 is covert until 2999 (hidden), 7's embargo is over; each listing is itself an access
    # about the citizen, so later listings see the earlier ones (12, 13, ...)
    assert got[0] == [1, 3]
    assert [i for page in got for i in page][:5] == [1, 3, 7, 9, 11]
    first = (await svc.ListAccesses(listing(), None)).accesses[0]
    assert (first.caller, first.service_item, first.purpose) == (
        "approval-b", "11000000000000002", "birth registration",
    )  # fmt: skip
    assert first.time.ToJsonString() == "2026-11-21T10:00:01Z"
    as_caller("auditor")
    page = await svc.ListAccesses(audit_pb2.ListAccessesRequest(id_number=ID_A.lower()), None)
    assert [a.audit_index for a in page.accesses][:6] == [1, 3, 5, 7, 9, 11]


async def test_a_covert_access_shapes_no_page_and_no_token(log: AuditLog) -> None:
    """Red-team item 1: with page_size=1 the token used to be the covert entry's index.
    Filtered first, the page after index 3 starts at 7, and the token is opaque."""
    svc = servicer(log)
    as_caller("portal")
    request = listing(page_size=1)
    seen, tokens = [], []
    for _ in range(4):
        page = await svc.ListAccesses(request, None)
        seen += [a.audit_index for a in page.accesses]
        tokens.append(page.next_page_token)
        request.page_token = page.next_page_token
    assert seen == [1, 3, 7, 9]
    for t in tokens:
        assert len(t) == 59
        assert not any(str(n) == t for n in range(100))
    assert len(set(tokens)) == len(tokens)


async def test_a_page_token_is_bound_to_its_citizen(log: AuditLog) -> None:
    svc = servicer(log)
    as_caller("portal")
    page = await svc.ListAccesses(listing(page_size=1), None)
    assert page.next_page_token
    with pytest.raises(InvalidArgument):
        await svc.ListAccesses(listing(ID_B, page_size=1, page_token=page.next_page_token), None)
    forged = page.next_page_token[:-2] + ("AA" if page.next_page_token[-2:] != "AA" else "BB")
    with pytest.raises(InvalidArgument):
        await svc.ListAccesses(listing(page_size=1, page_token=forged), None)


@pytest.mark.parametrize(
    ("make_token", "reason"),
    [
        (lambda: "", "CITIZEN_TOKEN_MISSING"),
        (lambda: token(ID_B), "CITIZEN_TOKEN_WRONG_CITIZEN"),
        (lambda: token(portal="other-portal"), "CITIZEN_TOKEN_WRONG_PORTAL"),
        (lambda: token(now=1_000_000, ttl=600), "CITIZEN_TOKEN_EXPIRED"),
        (lambda: token(ttl=7200), "CITIZEN_TOKEN_INVALID"),
        (
            lambda: issue_citizen_token(
                Ed25519PrivateKey.generate(), id_number=ID_A, portal="portal"
            ),
            "CITIZEN_TOKEN_INVALID",
        ),
    ],
    ids=["missing", "other-citizen", "other-portal", "expired", "too-long", "untrusted-key"],
)
async def test_a_portal_lists_only_the_citizen_its_token_names(
    log: AuditLog, make_token: Any, reason: str
) -> None:
    """Red-team item 4: any portal certificate could list any citizen's accesses."""
    as_caller("portal")
    with pytest.raises(PermissionDenied) as info:
        await servicer(log).ListAccesses(listing(citizen_token=make_token()), None)
    assert info.value.reason == reason
    assert ID_A not in str(info.value)


async def test_each_listing_is_audited_under_the_citizen(log: AuditLog) -> None:
    svc = servicer(log)
    as_caller("portal")
    before = log.tree_size
    await svc.ListAccesses(listing(), None)
    with pytest.raises(PermissionDenied):
        await svc.ListAccesses(listing(citizen_token=""), None)
    (granted, denied) = [json.loads(e) for e in await log.entries(before, before + 2)]
    assert (granted["rpc"], granted["outcome"], granted["caller"]) == (
        "ListAccesses", "granted", "portal"
    )  # fmt: skip
    assert granted["subject"] == subject_of(PEPPER, ID_A)
    assert granted["record_type"] == "accesses"
    assert (denied["outcome"], denied["reason"]) == ("denied", "CITIZEN_TOKEN_MISSING")


async def test_the_portal_is_held_to_its_rate(log: AuditLog) -> None:
    slow = policy_from(
        b'[callers.portal]\nname = "p"\nroles = ["portal"]\nrate = { per_second = 1, burst = 2 }\n'
    )
    svc = servicer(log, slow)
    as_caller("portal")
    await svc.ListAccesses(listing(), None)
    await svc.ListAccesses(listing(), None)
    with pytest.raises(Exception) as info:
        await svc.ListAccesses(listing(), None)
    assert getattr(info.value, "reason", "") == "RATE_LIMITED"


@pytest.mark.parametrize(
    ("id_number", "page_token"),
    [
        ("", ""),
        ("1" * 19, ""),
        ("110105194912310021", ""),  # the check character does not match
        (ID_A, "abc"),
        (ID_A, "²"),
        (ID_A, "٣"),
        (ID_A, "9" * 5000),
        (ID_A, "1"),  # a bare index, as tokens used to be
    ],
)
async def test_list_accesses_bad_input(log: AuditLog, id_number: str, page_token: str) -> None:
    as_caller("portal")
    with pytest.raises(InvalidArgument):
        await servicer(log).ListAccesses(
            audit_pb2.ListAccessesRequest(
                id_number=id_number, page_token=page_token, citizen_token=token()
            ),
            None,
        )
