"""Red-team items 1, 4 and 5: what a portal learns from "who accessed my records".

1. Covert accesses leaked through ListAccesses paging: the next-page token was the audit
   index of the entry after the page, set before hidden entries were filtered, so with
   page_size=1 a token named the index of a covert access (a fraud review under embargo).
4. ListAccesses was not bound to a citizen: any portal certificate listed any ID's accesses,
   with no checksum check, no rate limit and no audit entry.
5. Other people fetched were not audited under their own subject: a kinship claim reads a
   second person's household record, but only the applicant found the access.
"""

from __future__ import annotations

import base64
import json

import grpc
import pytest

from gateway.audit.entry import subject_of
from proofless.v1 import audit_pb2
from proofless.v1 import verification_pb2 as pb
from tests.support.stack import Stack

pytestmark = pytest.mark.asyncio(loop_scope="module")


def ownership(item: str, idn: str, purpose: str, case: str) -> pb.VerifyClaimsRequest:
    return pb.VerifyClaimsRequest(
        context=pb.RequestContext(service_item=item, case_id=case, purpose=purpose),
        applicant=pb.Applicant(id_number=idn),
        claims=[pb.Claim(id="owns", type="property.ownership", params={"owns": "false"})],
    )


async def test_a_covert_access_shapes_no_page_and_no_token(stack: Stack) -> None:
    idn = stack.scenarios["no_property"]
    window = await stack.verification("quangang-window")
    civil = await stack.verification("fuzhou-civil-affairs")
    first = await window.VerifyClaims(ownership("housing-transfer", idn, "transfer", "S1-1"))
    covert = await civil.VerifyClaims(ownership("subsistence-review", idn, "review", "S1-2"))
    last = await window.VerifyClaims(ownership("housing-transfer", idn, "transfer", "S1-3"))
    covert_index = covert.attestation.audit_index
    visible = {first.attestation.audit_index, last.attestation.audit_index}

    portal = await stack.audit("citizen-portal")
    request = audit_pb2.ListAccessesRequest(
        id_number=idn, page_size=1, citizen_token=stack.citizen_token(idn)
    )
    listed: list[int] = []
    tokens: list[str] = []
    while True:
        page = await portal.ListAccesses(request)
        listed += [a.audit_index for a in page.accesses]
        if not page.next_page_token:
            break
        tokens.append(page.next_page_token)
        request.page_token = page.next_page_token
    assert visible <= set(listed)
    assert covert_index not in listed
    for token in tokens:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        assert covert_index.to_bytes(8, "big") not in raw  # sealed, not merely encoded
        assert len(token) == 59
    # no page comes back empty: a hidden entry cannot announce itself by an extra page
    assert len(tokens) == len(listed) - 1


async def test_a_portal_must_present_the_citizens_token(stack: Stack, details: object) -> None:
    idn = stack.scenarios["no_property"]
    other = stack.scenarios["household_head"]
    portal = await stack.audit("citizen-portal")
    for request, reason in (
        (audit_pb2.ListAccessesRequest(id_number=idn), "CITIZEN_TOKEN_MISSING"),
        (
            audit_pb2.ListAccessesRequest(id_number=idn, citizen_token=stack.citizen_token(other)),
            "CITIZEN_TOKEN_WRONG_CITIZEN",
        ),
        (
            audit_pb2.ListAccessesRequest(
                id_number=idn, citizen_token=stack.citizen_token(idn, portal="another-portal")
            ),
            "CITIZEN_TOKEN_WRONG_PORTAL",
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await portal.ListAccesses(request)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        infos = [d for d in details(info.value) if hasattr(d, "reason")]  # type: ignore[operator]
        assert infos[0].reason == reason
        assert idn not in (info.value.details() or "")


async def test_a_bad_id_number_is_refused_before_anything_is_looked_up(stack: Stack) -> None:
    portal = await stack.audit("citizen-portal")
    bad = "110105194912310021"  # the check character does not match
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await portal.ListAccesses(
            audit_pb2.ListAccessesRequest(id_number=bad, citizen_token=stack.citizen_token(bad))
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad not in (info.value.details() or "")


async def test_each_listing_is_audited_under_the_citizen(stack: Stack) -> None:
    idn = stack.scenarios["no_property"]
    portal = await stack.audit("citizen-portal")
    await portal.ListAccesses(
        audit_pb2.ListAccessesRequest(id_number=idn, citizen_token=stack.citizen_token(idn))
    )
    log = stack.gateway.audit
    (line,) = await log.entries(log.tree_size - 1, log.tree_size)
    entry = json.loads(line)
    assert (entry["rpc"], entry["caller"], entry["outcome"]) == (
        "ListAccesses",
        "citizen-portal",
        "granted",
    )
    pepper = stack.config.audit.pepper_file.read_bytes()
    assert entry["subject"] == subject_of(pepper, idn)
    assert idn not in line.decode()


async def test_the_other_person_of_a_kinship_claim_sees_the_access(stack: Stack) -> None:
    head = stack.scenarios["household_head"]
    member = stack.scenarios["household_child"]
    window = await stack.verification("quangang-window")
    reply = await window.VerifyClaims(
        pb.VerifyClaimsRequest(
            context=pb.RequestContext(
                service_item="student-hukou-transfer", case_id="S5-1", purpose="school transfer"
            ),
            applicant=pb.Applicant(id_number=member),
            claims=[
                pb.Claim(
                    id="k",
                    type="household.kinship",
                    params={"other_id_number": head, "relation": "parent"},
                )
            ],
        )
    )
    index = reply.attestation.audit_index
    portal = await stack.audit("citizen-portal")
    seen = await portal.ListAccesses(
        audit_pb2.ListAccessesRequest(id_number=head, citizen_token=stack.citizen_token(head))
    )
    assert index in {a.audit_index for a in seen.accesses}


async def test_naming_a_covert_item_hides_nothing_from_the_citizen(stack: Stack) -> None:
    """A caller not entitled to the covert item cannot hide its attempt behind the item's
    embargo: its (denied) access stays in the citizen's view."""
    idn = stack.scenarios["no_property"]
    window = await stack.verification("quangang-window")  # not a caller of subsistence-review
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await window.VerifyClaims(ownership("subsistence-review", idn, "probe", "S6-1"))
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    log = stack.gateway.audit
    probe = log.tree_size - 1
    (line,) = await log.entries(probe, probe + 1)
    entry = json.loads(line)
    assert (entry["caller"], entry["outcome"]) == ("quangang-window", "denied")
    assert "covert_until" not in entry
    portal = await stack.audit("citizen-portal")
    seen = await portal.ListAccesses(
        audit_pb2.ListAccessesRequest(id_number=idn, citizen_token=stack.citizen_token(idn))
    )
    assert probe in {a.audit_index for a in seen.accesses}
