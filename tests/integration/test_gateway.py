"""VerificationService end to end: a real grpc.aio server with real mutual TLS, the real
department simulators behind it, and the audit log on disk."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from joserfc import jws as jose_jws
from joserfc.jwk import KeySet

from gateway.crypto.proof_check import check_proof
from gateway.domain.errors import IntegrityError
from gateway.ops.logging import JsonFormatter
from proofless.v1 import audit_pb2
from proofless.v1 import verification_pb2 as pb
from tests.support.stack import Stack, rich_details

pytestmark = pytest.mark.asyncio(loop_scope="module")

CASE = "QG-2026-000123"


def ctx(
    item: str = "housing-transfer", purpose: str = "transfer registration", **kw: str
) -> pb.RequestContext:
    return pb.RequestContext(service_item=item, case_id=kw.pop("case", CASE), purpose=purpose, **kw)


def record_request(
    idn: str, *, item: str = "housing-transfer", fields: tuple[str, ...] = (), **kw: Any
) -> pb.RecordRequest:
    req = pb.RecordRequest(context=ctx(item, **kw), applicant=pb.Applicant(id_number=idn))
    req.read_mask.paths.extend(fields)
    return req


def reason_of(err: grpc.aio.AioRpcError) -> str:
    return next(d.reason for d in rich_details(err) if isinstance(d, error_details_pb2.ErrorInfo))


async def entries(stack: Stack) -> list[dict[str, Any]]:
    log = stack.gateway.audit
    raw = await log.entries(0, log.tree_size)
    return [json.loads(e) for e in raw]


async def test_household_record_is_masked_signed_and_audited(stack: Stack) -> None:
    idn = stack.scenarios["household_head"]
    stub = await stack.verification("quangang-window")
    before = stack.gateway.audit.tree_size
    resp = await stub.GetHouseholdRecord(
        record_request(idn, fields=("name", "region_code", "status", "address")), timeout=5
    )
    # address is not allowed for housing-transfer: read_mask ∩ policy
    assert sorted(resp.attestation.disclosed_fields) == ["name", "region_code", "status"]
    assert resp.record.name
    assert resp.record.region_code.startswith("35")
    assert resp.record.address == ""
    assert resp.record.id_number == ""
    assert resp.record.status == pb.HOUSEHOLD_STATUS_ACTIVE
    att = resp.attestation
    assert att.source_department == pb.DEPARTMENT_HOUSEHOLD
    assert att.as_of.seconds > 0
    assert att.audit_index >= before
    # the proof verifies with our checker and with an independent JOSE library
    report = check_proof(att.proof, dict(stack.gateway.signer.jwks()))
    payload = report["payload"]
    assert payload["audit"]["index"] == att.audit_index
    assert payload["case_id"] == CASE
    assert payload["caller"] == "quangang-window"
    assert payload["data"]["name"] == resp.record.name
    keyset = KeySet.import_key_set(dict(stack.gateway.signer.jwks()))
    obj = jose_jws.deserialize_compact(att.proof, keyset, algorithms=["EdDSA"])
    assert json.loads(obj.payload)["jti"] == att.proof_id
    # the audit entry is on disk before the reply, with the subject peppered, not in clear
    logged = (await entries(stack))[att.audit_index]
    assert logged["outcome"] == "granted"
    assert logged["proof_id"] == att.proof_id
    assert logged["digest"] == payload["digest"]
    assert idn not in json.dumps(logged)


async def test_property_records_several_and_none(stack: Stack) -> None:
    stub = await stack.verification("quangang-window")
    several = await stub.GetPropertyRecords(record_request(stack.scenarios["several_properties"]))
    assert len(several.records) >= 2
    assert all(r.certificate_number for r in several.records)
    none = await stub.GetPropertyRecords(record_request(stack.scenarios["no_property"]))
    assert list(none.records) == []
    assert none.attestation.proof


async def test_social_security_record(stack: Stack) -> None:
    stub = await stack.verification("fuan-hrss")
    resp = await stub.GetSocialSecurityRecord(
        record_request(stack.scenarios["long_contributor"], item="retirement")
    )
    assert resp.record.insurances
    assert resp.record.history
    assert resp.attestation.source_department == pb.DEPARTMENT_SOCIAL_SECURITY


async def test_caller_not_allowed_is_denied_and_audited(stack: Stack) -> None:
    stub = await stack.verification("quangang-window")
    before = stack.gateway.audit.tree_size
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.GetSocialSecurityRecord(
            record_request(stack.scenarios["long_contributor"], item="resident-pension")
        )
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert reason_of(info.value) == "ITEM_NOT_ALLOWED"
    logged = (await entries(stack))[before:]
    assert [e["outcome"] for e in logged] == ["denied"]
    assert logged[0]["reason"] == "ITEM_NOT_ALLOWED"


async def test_only_forbidden_fields_is_denied(stack: Stack) -> None:
    stub = await stack.verification("quangang-window")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.GetHouseholdRecord(
            record_request(stack.scenarios["household_head"], fields=("ethnicity",))
        )
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert reason_of(info.value) == "FIELD_NOT_ALLOWED"


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda idn: idn[:17], "applicant.id_number"),
        (lambda idn: idn[:16] + ("0" if idn[16] != "0" else "1") + idn[17], "applicant.id_number"),
        (lambda idn: idn[:10] + "AB" + idn[12:], "applicant.id_number"),
    ],
)
async def test_bad_id_number_is_invalid_argument_without_the_number(
    stack: Stack, mutate: Any, field: str
) -> None:
    bad = mutate(stack.scenarios["household_head"])
    stub = await stack.verification("quangang-window")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.GetHouseholdRecord(record_request(bad))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    violations = [
        v
        for d in rich_details(info.value)
        if isinstance(d, error_details_pb2.BadRequest)
        for v in d.field_violations
    ]
    assert [v.field for v in violations] == [field]
    assert bad not in info.value.details()
    assert bad not in violations[0].description


async def test_missing_item_and_case_are_both_reported(stack: Stack) -> None:
    stub = await stack.verification("quangang-window")
    req = pb.RecordRequest(applicant=pb.Applicant(id_number=stack.scenarios["household_head"]))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.GetHouseholdRecord(req)
    fields = {
        v.field
        for d in rich_details(info.value)
        if isinstance(d, error_details_pb2.BadRequest)
        for v in d.field_violations
    }
    assert {"context.service_item", "context.case_id"} <= fields


async def test_unknown_person_is_not_found(stack: Stack) -> None:
    stub = await stack.verification("quangang-window")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.GetHouseholdRecord(record_request(stack.scenarios["unknown"]))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert stack.scenarios["unknown"] not in (info.value.details() or "")


async def test_wrong_name_is_not_found(stack: Stack) -> None:
    stub = await stack.verification("quangang-window")
    req = record_request(stack.scenarios["household_head"])
    req.applicant.name = "不存在"
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.GetHouseholdRecord(req)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_verify_claims_across_departments_fetches_each_record_once(stack: Stack) -> None:
    s = stack.scenarios
    stub = await stack.verification("quangang-window")
    calls_before = _department_calls(stack)
    resp = await stub.VerifyClaims(
        pb.VerifyClaimsRequest(
            context=ctx("housing-transfer"),
            applicant=pb.Applicant(id_number=s["no_property"]),
            claims=[
                pb.Claim(id="no-house", type="property.ownership", params={"owns": "false"}),
                pb.Claim(
                    id="house-in-quangang", type="property.ownership", params={"region": "350505"}
                ),
                pb.Claim(id="lives", type="household.residence", params={"region": "350000"}),
            ],
        )
    )
    verdicts = {r.id: r.verdict for r in resp.results}
    assert verdicts["no-house"] == pb.VERDICT_HOLDS
    assert verdicts["house-in-quangang"] == pb.VERDICT_DOES_NOT_HOLD
    assert verdicts["lives"] in (pb.VERDICT_HOLDS, pb.VERDICT_DOES_NOT_HOLD)
    assert _department_calls(stack) - calls_before == 2  # property once, household once
    payload = check_proof(resp.attestation.proof, dict(stack.gateway.signer.jwks()))["payload"]
    assert {c["id"] for c in payload["data"]} == {"no-house", "house-in-quangang", "lives"}


async def test_kinship_claim(stack: Stack) -> None:
    s = stack.scenarios
    stub = await stack.verification("quangang-window")
    resp = await stub.VerifyClaims(
        pb.VerifyClaimsRequest(
            context=ctx("student-hukou-transfer"),
            applicant=pb.Applicant(id_number=s["household_child"]),
            claims=[
                pb.Claim(
                    id="k",
                    type="household.kinship",
                    params={"other_id_number": s["household_head"], "relation": "parent"},
                )
            ],
        )
    )
    assert resp.results[0].verdict == pb.VERDICT_HOLDS
    payload = check_proof(resp.attestation.proof, dict(stack.gateway.signer.jwks()))["payload"]
    assert s["household_head"] not in json.dumps(payload)


async def test_unknown_claim_is_invalid_argument(stack: Stack) -> None:
    stub = await stack.verification("quangang-window")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.VerifyClaims(
            pb.VerifyClaimsRequest(
                context=ctx(),
                applicant=pb.Applicant(id_number=stack.scenarios["household_head"]),
                claims=[pb.Claim(id="x", type="household.wealth")],
            )
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_list_service_items_shows_only_the_callers_items(stack: Stack) -> None:
    stub = await stack.verification("fuan-hrss")
    resp = await stub.ListServiceItems(pb.ListServiceItemsRequest())
    codes = {i.code for i in resp.items}
    assert {"resident-pension", "retirement", "ss-card"} <= codes
    assert "housing-transfer" not in codes
    assert resp.caller == "fuan-hrss"
    assert len(resp.policy_version) == 64


async def test_every_request_leaves_exactly_one_entry(stack: Stack) -> None:
    stub = await stack.verification("quangang-window")
    before = stack.gateway.audit.tree_size
    calls = [  # one after the other: grpc.aio starts a call as soon as it is made
        lambda: stub.GetHouseholdRecord(record_request(stack.scenarios["household_head"])),
        lambda: stub.GetHouseholdRecord(record_request(stack.scenarios["unknown"])),
        lambda: stub.GetHouseholdRecord(record_request("12345")),
        lambda: stub.GetSocialSecurityRecord(record_request(stack.scenarios["household_head"])),
        lambda: stub.ListServiceItems(pb.ListServiceItemsRequest()),
    ]
    for call in calls:
        with contextlib.suppress(grpc.aio.AioRpcError):
            await call()
    logged = (await entries(stack))[before:]
    assert [e["outcome"] for e in logged] == [
        "granted",
        "not_found",
        "invalid",
        "denied",
        "granted",
    ]


async def test_health_and_reflection(stack: Stack) -> None:
    channel = await stack.channel("quangang-window")
    health = health_pb2_grpc.HealthStub(channel)
    resp = await health.Check(
        health_pb2.HealthCheckRequest(service="proofless.v1.VerificationService")
    )
    assert resp.status == health_pb2.HealthCheckResponse.SERVING
    refl = reflection_pb2_grpc.ServerReflectionStub(channel)
    async for answer in refl.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    ):
        names = {s.name for s in answer.list_services_response.service}
        assert {"proofless.v1.VerificationService", "proofless.v1.AuditService"} <= names
        break


async def test_a_reflection_client_can_call_without_our_stubs(stack: Stack) -> None:
    """What grpcurl does: fetch the schema by reflection, build the request from it, call."""
    channel = await stack.channel("quangang-window")
    refl = reflection_pb2_grpc.ServerReflectionStub(channel)
    pool = descriptor_pool.DescriptorPool()
    loaded: set[str] = set()

    async def load(request: reflection_pb2.ServerReflectionRequest) -> None:
        async for answer in refl.ServerReflectionInfo(iter([request])):
            raw = answer.file_descriptor_response.file_descriptor_proto
            for proto in (descriptor_pb2.FileDescriptorProto.FromString(r) for r in raw):
                for dep in proto.dependency:
                    if dep not in loaded:
                        await load(reflection_pb2.ServerReflectionRequest(file_by_filename=dep))
                if proto.name not in loaded:
                    pool.Add(proto)
                    loaded.add(proto.name)
            break

    await load(
        reflection_pb2.ServerReflectionRequest(
            file_containing_symbol="proofless.v1.VerificationService"
        )
    )
    request_type = message_factory.GetMessageClass(
        pool.FindMessageTypeByName("proofless.v1.ListServiceItemsRequest")
    )
    response_type = message_factory.GetMessageClass(
        pool.FindMessageTypeByName("proofless.v1.ListServiceItemsResponse")
    )
    call = channel.unary_unary(
        "/proofless.v1.VerificationService/ListServiceItems",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=response_type.FromString,
    )
    answer = await call(request_type())
    assert answer.caller == "quangang-window"
    assert "housing-transfer" in {i.code for i in answer.items}


async def test_audit_service_for_auditor_only(stack: Stack) -> None:
    auditor = await stack.audit("auditor")
    checkpoint = await auditor.GetCheckpoint(audit_pb2.GetCheckpointRequest())
    assert checkpoint.signed_note.startswith(stack.config.audit.origin + "\n")
    approval = await stack.audit("quangang-window")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await approval.GetCheckpoint(audit_pb2.GetCheckpointRequest())
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED


def _department_calls(stack: Stack) -> float:
    total = 0.0
    for metric in stack.registry.collect():
        if metric.name == "proofless_department_requests":
            total += sum(s.value for s in metric.samples if s.name.endswith("_total"))
    return total


async def test_one_access_log_line_per_call_without_personal_data(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    idn = stack.scenarios["household_head"]
    stub = await stack.verification("quangang-window")
    caplog.set_level("INFO", logger="proofless.rpc")
    await stub.GetHouseholdRecord(record_request(idn), metadata=(("x-request-id", "req-42"),))
    with contextlib.suppress(grpc.aio.AioRpcError):
        await stub.GetHouseholdRecord(record_request(idn[:17]))
    lines = [
        json.loads(JsonFormatter().format(r)) for r in caplog.records if r.name == "proofless.rpc"
    ]
    assert [(x["rpc"], x["outcome"]) for x in lines] == [
        ("GetHouseholdRecord", "granted"),
        ("GetHouseholdRecord", "invalid"),
    ]
    assert lines[0]["request_id"] == "req-42"
    assert lines[0]["caller"] == "quangang-window"
    assert lines[0]["service_item"] == "housing-transfer"
    assert lines[0]["latency_ms"] > 0
    assert idn not in json.dumps(lines)


async def test_policy_is_asked_before_the_items_conditions(stack: Stack) -> None:
    """A system not entitled to an item is refused as such, not told the item needs a purpose."""
    stub = await stack.verification("fuan-hrss")
    req = record_request(stack.scenarios["household_head"], purpose="")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.GetHouseholdRecord(req)  # housing-transfer: purpose required, not fuan-hrss's
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert reason_of(info.value) == "ITEM_NOT_ALLOWED"
    window = await stack.verification("quangang-window")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await window.GetHouseholdRecord(req)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_failure_after_the_granted_entry_leaves_no_second_one(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Signing fails after the entry is on disk: the caller gets an error, the log keeps one
    entry (the access happened), never a second."""

    def broken_sign(claims: object) -> str:
        raise IntegrityError("signing key unavailable", reason="SIGNING_FAILED")

    monkeypatch.setattr(stack.gateway.signer, "sign", broken_sign)
    stub = await stack.verification("quangang-window")
    before = stack.gateway.audit.tree_size
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.GetHouseholdRecord(record_request(stack.scenarios["household_head"]))
    assert info.value.code() == grpc.StatusCode.DATA_LOSS
    logged = (await entries(stack))[before:]
    assert [e["outcome"] for e in logged] == ["granted"]
