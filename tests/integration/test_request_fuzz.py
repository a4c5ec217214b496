"""Hostile request fields and metadata over real gRPC: hypothesis sends arbitrary text
(control characters, NULs, unicode, strings up to the message limit) in every string field of
the requests and in the metadata. Every answer must be a clean status (never INTERNAL or
UNKNOWN), never echo the input or an ID number in the error, leave exactly one audit entry
per request that reached the gateway, and leave the server healthy.

Examples per test come from a hypothesis profile: PROOFLESS_FUZZ_PROFILE=ci (the default,
a few hundred examples in all) or =quick; the 10,000-case run lives in the hostile-input suite.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import pytest_asyncio
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gateway.devtools.pki import DevPki
from proofless.v1 import verification_pb2 as pb
from proofless.v1 import verification_pb2_grpc as pb_grpc
from tests.support.stack import ROOT, Stack, rich_details, running_stack

pytestmark = pytest.mark.asyncio(loop_scope="module")

settings.register_profile(
    "proofless-fuzz-ci",
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "proofless-fuzz-quick",
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FUZZ = settings.get_profile(f"proofless-fuzz-{os.environ.get('PROOFLESS_FUZZ_PROFILE', 'ci')}")

CALLER = "quangang-window"
CLEAN = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.RESOURCE_EXHAUSTED,  # a message over the size limit
}
#: inputs shorter than this may appear in an error message by coincidence ("name", "3")
ECHO_MIN = 8
_PLAIN_WORD = re.compile(r"[a-z]{1,16}")
_FRESH_ID = re.compile(r"^[0-9a-f]{32}$")
_SANE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
POLICY = ROOT / "deploy" / "config" / "policy.toml"

ITEMS = ["housing-transfer", "subsistence-allowance", "nurse-licence", "ss-card", "retirement"]
CLAIM_TYPES = [
    "household.residence",
    "household.kinship",
    "social_security.contribution",
    "property.ownership",
    "property.encumbrance",
]
FIELDS = [
    *pb.HouseholdRecord.DESCRIPTOR.fields_by_name,
    *pb.PropertyRecord.DESCRIPTOR.fields_by_name,
]
PARAM_KEYS = ["region", "owns", "months", "since", "until", "relation", "other_id_number"]

# Any code point but lone surrogates (not UTF-8, so not a protobuf string): control
# characters, NUL, line breaks, bidi overrides, CJK, emoji.
any_char = st.characters(blacklist_categories=["Cs"])
huge = st.builds(
    lambda c, n: c * n,
    st.sampled_from(["A", "\x00", "户", "\u202e", "😀", "\n"]),
    st.integers(1, 300_000),
)
text = st.one_of(st.text(any_char, max_size=80), st.text(any_char, min_size=60, max_size=600), huge)


def some(known: list[str]) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(known), text)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def fuzz_stack(pki: DevPki, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """The module's gateway, with the demo policy but rates no fuzz run reaches: a refusal
    by the rate limiter would hide the validation the fuzzing is about."""
    state = tmp_path_factory.mktemp("fuzz-state")
    policy = state / "policy.toml"
    shutil.copy(POLICY, policy)
    policy.write_text(
        re.sub(
            r"rate = \{[^}]*\}",
            "rate = { per_second = 100000, burst = 100000 }",
            policy.read_text(),
        )
    )
    async with running_stack(pki, state, {"policy": {"file": str(policy)}}) as s:
        yield s


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def stub(fuzz_stack: Stack) -> pb_grpc.VerificationServiceStub:
    return await fuzz_stack.verification(CALLER)


def id_numbers(stack: Stack) -> st.SearchStrategy[str]:
    valid = sorted(stack.scenarios.values())
    mutated = st.builds(
        lambda idn, i, c: idn[:i] + c + idn[i + 1 :],
        st.sampled_from(valid),
        st.integers(0, 17),
        any_char,
    )
    return st.one_of(st.sampled_from(valid), mutated, text)


def contexts() -> st.SearchStrategy[pb.RequestContext]:
    return st.builds(
        pb.RequestContext,
        service_item=some(ITEMS),
        case_id=some(["QG-2026-000123"]),
        purpose=some(["transfer registration"]),
        consent_token=st.one_of(st.just(""), text),
    )


def metadata() -> st.SearchStrategy[list[tuple[str, str]]]:
    """Legal HTTP/2 header values (grpc refuses others before sending): request ids,
    identity spoofing attempts, header injection."""
    value = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=200)
    key = st.sampled_from(
        [
            "x-request-id",
            "x-caller",
            "x-proofless-caller",
            "x-forwarded-client-cert",
            "authorization",
        ]
    )
    return st.lists(st.tuples(key, value), max_size=4)


def error_text(err: grpc.aio.AioRpcError) -> str:
    """Everything a refused caller reads: the message and every detail."""
    parts = [err.details() or ""]
    for d in rich_details(err):
        if isinstance(d, error_details_pb2.BadRequest):
            parts += [f"{v.field} {v.description}" for v in d.field_violations]
        elif isinstance(d, error_details_pb2.ErrorInfo):
            parts += [d.reason, d.domain, *d.metadata.keys(), *d.metadata.values()]
    return "\n".join(parts)


async def exchange(
    stack: Stack, call: Any, request: Any, inputs: list[str], md: list[tuple[str, str]]
) -> tuple[grpc.StatusCode, Any]:
    """Send one fuzzed request; check the status, the error text, the request id and the
    audit log; return the status and the response (None on error)."""
    log = stack.gateway.audit
    before = log.tree_size
    call_obj = call(request, timeout=20, metadata=md or None)
    response: Any = None
    err: grpc.aio.AioRpcError | None = None
    try:
        response = await call_obj
    except grpc.aio.AioRpcError as exc:
        err = exc
    code = grpc.StatusCode.OK if err is None else err.code()
    if err is not None:
        assert code in CLEAN, f"{code.name}: {err.details()}"
        shown = error_text(err)
        for value in inputs:
            # a plain lowercase word ("required", "unknown") may be the gateway's own wording;
            # what must never come back is the caller's text: numbers, names, tokens
            if len(value) < ECHO_MIN or _PLAIN_WORD.fullmatch(value):
                continue
            assert value not in shown, "input echoed in the error"
        for idn in stack.scenarios.values():
            assert idn not in shown
    trailing = dict(await call_obj.trailing_metadata() or ())
    reached = "x-request-id" in trailing
    if reached:
        sane = [v for k, v in md if k == "x-request-id" and _SANE_ID.match(v)]
        assert trailing["x-request-id"] == (sane[0] if sane else trailing["x-request-id"])
        if not sane:
            assert _FRESH_ID.match(trailing["x-request-id"])
        # one entry per request, and no ID number in clear in it
        assert log.tree_size == before + 1
        [raw] = await log.entries(before, before + 1)
        entry = json.loads(raw)
        assert entry["request_id"] == trailing["x-request-id"]
        assert entry["caller"] == CALLER  # metadata cannot change who is calling
        for idn in stack.scenarios.values():
            assert idn.encode() not in raw
    else:
        # refused by grpc before any handler ran: only a message over the size limit
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert request.ByteSize() > stack.config.server.max_message_bytes
        assert log.tree_size == before
    event(f"status {code.name}" + ("" if reached else " (transport)"))
    return code, response


@FUZZ
@given(data=st.data())
async def test_record_requests(
    fuzz_stack: Stack, stub: pb_grpc.VerificationServiceStub, data: st.DataObject
) -> None:
    ctx = data.draw(contexts(), "context")
    applicant = pb.Applicant(
        id_number=data.draw(id_numbers(fuzz_stack), "id_number"),
        name=data.draw(some(["张三"]), "name"),
    )
    req = pb.RecordRequest(context=ctx, applicant=applicant)
    req.read_mask.paths.extend(data.draw(st.lists(some(FIELDS), max_size=6), "read_mask"))
    md = data.draw(metadata(), "metadata")
    rpc = data.draw(
        st.sampled_from(
            [stub.GetHouseholdRecord, stub.GetPropertyRecords, stub.GetSocialSecurityRecord]
        ),
        "rpc",
    )
    inputs = [
        ctx.service_item,
        ctx.case_id,
        ctx.purpose,
        ctx.consent_token,
        applicant.id_number,
        applicant.name,
        *req.read_mask.paths,
    ]
    inputs = [v for v in inputs if v not in {*ITEMS, *FIELDS}]
    await exchange(fuzz_stack, rpc, req, inputs, md)


@FUZZ
@given(data=st.data())
async def test_verify_claims(
    fuzz_stack: Stack, stub: pb_grpc.VerificationServiceStub, data: st.DataObject
) -> None:
    ctx = data.draw(contexts(), "context")
    idn = data.draw(id_numbers(fuzz_stack), "id_number")
    claims = data.draw(
        st.lists(
            st.builds(
                pb.Claim,
                id=st.one_of(st.just(""), text),
                type=some(CLAIM_TYPES),
                params=st.dictionaries(
                    some(PARAM_KEYS), some(["350505", "true", "12"]), max_size=4
                ),
            ),
            max_size=5,
        ),
        "claims",
    )
    req = pb.VerifyClaimsRequest(context=ctx, applicant=pb.Applicant(id_number=idn), claims=claims)
    md = data.draw(metadata(), "metadata")
    inputs = [ctx.service_item, ctx.case_id, ctx.purpose, ctx.consent_token, idn]
    for c in claims:
        inputs += [c.id, c.type, *c.params.keys(), *c.params.values()]
    inputs = [v for v in inputs if v not in {*ITEMS, *CLAIM_TYPES, *PARAM_KEYS}]
    await exchange(fuzz_stack, stub.VerifyClaims, req, inputs, md)


@FUZZ
@given(data=st.data())
async def test_one_hostile_field_in_a_valid_request(
    fuzz_stack: Stack, stub: pb_grpc.VerificationServiceStub, data: st.DataObject
) -> None:
    """A request that would be granted, with one field replaced: gets past validation far
    more often than all-random requests, into the policy, the departments and the proofs."""
    req = pb.RecordRequest(
        context=pb.RequestContext(
            service_item="housing-transfer", case_id="QG-2026-000123", purpose="transfer"
        ),
        applicant=pb.Applicant(id_number=fuzz_stack.scenarios["household_head"]),
    )
    req.read_mask.paths.extend(["name", "region_code"])
    where = data.draw(
        st.sampled_from(["service_item", "case_id", "purpose", "id_number", "name", "read_mask"]),
        "field",
    )
    value = data.draw(text, "value")
    if where == "read_mask":
        req.read_mask.paths.append(value)
    elif where in ("id_number", "name"):
        setattr(req.applicant, where, value)
    else:
        setattr(req.context, where, value)
    await exchange(fuzz_stack, stub.GetHouseholdRecord, req, [value], [])


@FUZZ
@given(md=metadata())
async def test_metadata_cannot_change_the_caller(
    fuzz_stack: Stack, stub: pb_grpc.VerificationServiceStub, md: list[tuple[str, str]]
) -> None:
    code, response = await exchange(
        fuzz_stack, stub.ListServiceItems, pb.ListServiceItemsRequest(), [], md
    )
    assert code == grpc.StatusCode.OK
    assert response.caller == CALLER


async def test_server_is_healthy_after_the_fuzzing(
    fuzz_stack: Stack, stub: pb_grpc.VerificationServiceStub
) -> None:
    health = health_pb2_grpc.HealthStub(await fuzz_stack.channel(CALLER))
    reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    req = pb.RecordRequest(
        context=pb.RequestContext(service_item="housing-transfer", case_id="QG-1", purpose="p"),
        applicant=pb.Applicant(id_number=fuzz_stack.scenarios["household_head"]),
    )
    req.read_mask.paths.append("name")
    resp = await stub.GetHouseholdRecord(req, timeout=5)
    assert resp.record.name
    # the log the fuzzing filled still verifies end to end: every leaf is canonical JSON
    log = fuzz_stack.gateway.audit
    kinds = [json.loads(raw)["kind"] for raw in await log.entries(0, log.tree_size)]
    assert kinds[0] == "config"  # the rules it started with
    assert set(kinds[1:]) == {"access"}
