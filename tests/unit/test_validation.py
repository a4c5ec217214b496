"""Boundary validation: every violation of a request, collected, with google.rpc field paths."""

from __future__ import annotations

from datetime import date

import grpc
import pytest
from google.rpc import error_details_pb2
from hypothesis import given
from hypothesis import strategies as st

from gateway.domain.claims import KinshipParams, OwnershipParams
from gateway.domain.errors import InvalidArgument
from gateway.domain.idnumber import make_id
from gateway.domain.validation import (
    MAX_CLAIMS,
    ValidClaimsRequest,
    ValidRecordRequest,
    validate_context,
    validate_record_request,
    validate_verify_claims,
)
from proofless.v1 import verification_pb2 as pb

TODAY = date(2025, 6, 1)
ME = make_id("350505", date(1980, 4, 2), 31)
ME_X = "11010519491231002X"
OTHER = make_id("350505", date(2008, 9, 14), 42)


def ctx(**overrides: str) -> pb.RequestContext:
    fields = {
        "service_item": "FJ-350505-ESF.001",
        "case_id": "QG2025-000123",
        "purpose": "二手房交易 卖方核验",
        "consent_token": "",
    }
    fields.update(overrides)
    return pb.RequestContext(**fields)


def record_request(
    id_number: str = ME, name: str = "陈明", paths: tuple[str, ...] = (), **context: str
) -> pb.RecordRequest:
    req = pb.RecordRequest(
        context=ctx(**context), applicant=pb.Applicant(id_number=id_number, name=name)
    )
    req.read_mask.paths.extend(paths)
    return req


def claims_request(
    *claims: pb.Claim, id_number: str = ME, **context: str
) -> pb.VerifyClaimsRequest:
    return pb.VerifyClaimsRequest(
        context=ctx(**context),
        applicant=pb.Applicant(id_number=id_number),
        claims=list(claims),
    )


def fields_of(exc: pytest.ExceptionInfo[InvalidArgument]) -> dict[str, str]:
    return {v.field: v.description for v in exc.value.violations}


# ---- context -----------------------------------------------------------------------------


def test_valid_context_has_no_violations() -> None:
    assert validate_context(ctx()) == []
    assert validate_context(ctx(purpose="", consent_token="eyJhbGciOiJFZERTQSJ9.e30.c2ln")) == []


@pytest.mark.parametrize(
    ("overrides", "field", "rule"),
    [
        ({"service_item": ""}, "context.service_item", "required"),
        ({"service_item": "a" * 65}, "context.service_item", "1 to 64"),
        ({"service_item": "二手房"}, "context.service_item", "A-Z"),
        ({"service_item": "ESF 001"}, "context.service_item", "A-Z"),
        ({"case_id": ""}, "context.case_id", "required"),
        ({"case_id": "c" * 65}, "context.case_id", "1 to 64"),
        ({"case_id": "QG\x002025"}, "context.case_id", "control"),
        ({"case_id": "QG\u202e2025"}, "context.case_id", "control"),  # bidi override
        ({"purpose": "p" * 513}, "context.purpose", "512"),
        ({"purpose": "line\nbreak"}, "context.purpose", "control"),
        ({"purpose": "a\u2028b"}, "context.purpose", "control"),
        ({"consent_token": "t" * 4097}, "context.consent_token", "4096"),
        ({"consent_token": "a.b c.d"}, "context.consent_token", "compact JWS"),
    ],
)
def test_context_violations(overrides: dict[str, str], field: str, rule: str) -> None:
    found = {v.field: v.description for v in validate_context(ctx(**overrides))}
    assert list(found) == [field]
    assert rule in found[field]


def test_limits_are_inclusive() -> None:
    assert validate_context(ctx(service_item="a" * 64, case_id="办" * 64, purpose="p" * 512)) == []
    assert validate_context(ctx(consent_token="t" * 4096)) == []


def test_context_collects_all() -> None:
    found = validate_context(pb.RequestContext(purpose="\x07"))
    assert [v.field for v in found] == [
        "context.service_item",
        "context.case_id",
        "context.purpose",
    ]


# ---- record requests ---------------------------------------------------------------------


def test_valid_record_request_is_normalised() -> None:
    req = record_request(ME_X.lower(), paths=("name", "region_code", "status"))
    valid = validate_record_request(req, pb.HouseholdRecord, today=TODAY)
    assert valid == ValidRecordRequest(
        id_number=ME_X,
        service_item="FJ-350505-ESF.001",
        case_id="QG2025-000123",
        purpose="二手房交易 卖方核验",
        consent_token="",
        name="陈明",
        read_mask=("name", "region_code", "status"),
    )


def test_empty_read_mask_means_everything_allowed() -> None:
    assert validate_record_request(record_request(), pb.PropertyRecord).read_mask == ()


def test_record_request_collects_every_violation() -> None:
    req = record_request(
        ME[:-1] + ("0" if ME[-1] != "0" else "1"),
        name="名" * 65,
        paths=("name", "hukou", "name", "members.name"),
        service_item="",
        case_id="",
    )
    with pytest.raises(InvalidArgument) as exc:
        validate_record_request(req, pb.HouseholdRecord, today=TODAY)
    found = fields_of(exc)
    assert set(found) == {
        "context.service_item",
        "context.case_id",
        "applicant.id_number",
        "applicant.name",
        "read_mask.paths[1]",
        "read_mask.paths[2]",
        "read_mask.paths[3]",
    }
    assert "check character" in found["applicant.id_number"]
    assert "duplicate" in found["read_mask.paths[2]"]
    assert "HouseholdRecord" in found["read_mask.paths[1]"]
    assert exc.value.code == grpc.StatusCode.INVALID_ARGUMENT
    # the wire form: one google.rpc.BadRequest with the same paths, no personal value anywhere
    status = exc.value.to_status()
    bad = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad)
    assert {v.field for v in bad.field_violations} == set(found)
    wire = status.SerializeToString().decode("utf-8", "replace")
    assert ME[:17] not in wire
    assert "名名" not in wire


def test_read_mask_fields_depend_on_the_record_type() -> None:
    req = record_request(paths=("certificate_number",))
    assert validate_record_request(req, pb.PropertyRecord).read_mask == ("certificate_number",)
    with pytest.raises(InvalidArgument) as exc:
        validate_record_request(req, pb.SocialSecurityRecord)
    assert list(fields_of(exc)) == ["read_mask.paths[0]"]


def test_read_mask_at_most_32_paths() -> None:
    many = tuple(["name"] * 33)
    with pytest.raises(InvalidArgument) as exc:
        validate_record_request(record_request(paths=many), pb.HouseholdRecord)
    assert list(fields_of(exc)) == ["read_mask.paths"]


def test_missing_applicant() -> None:
    req = pb.RecordRequest(context=ctx())
    with pytest.raises(InvalidArgument) as exc:
        validate_record_request(req, pb.HouseholdRecord)
    assert fields_of(exc) == {"applicant.id_number": "required: an 18-character resident ID number"}


@pytest.mark.parametrize(
    ("id_number", "rule"),
    [
        ("12345", "18 characters"),
        ("3505051980040203１X", "digit or X"),
        ("99050519800402031X", "province"),
        ("350505198002300311", "calendar date"),
    ],
)
def test_bad_ids(id_number: str, rule: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        validate_record_request(record_request(id_number), pb.HouseholdRecord, today=TODAY)
    found = fields_of(exc)
    assert list(found) == ["applicant.id_number"]
    assert rule in found["applicant.id_number"]
    assert id_number not in exc.value.message
    assert id_number not in exc.value.diagnostics()


# ---- claims requests ---------------------------------------------------------------------


def test_valid_claims_request() -> None:
    req = claims_request(
        pb.Claim(
            id="kin",
            type="household.kinship",
            params={"other_id_number": OTHER, "relation": "child"},
        ),
        pb.Claim(id="nohouse", type="property.ownership", params={"owns": "false"}),
        pb.Claim(type="household.residence", params={"region": "350500"}),
        pb.Claim(type="household.residence", params={"region": "350000"}),  # ids are optional
    )
    valid = validate_verify_claims(req, today=TODAY)
    assert isinstance(valid, ValidClaimsRequest)
    assert valid.id_number == ME
    assert [c.id for c in valid.claims] == ["kin", "nohouse", "", ""]
    assert valid.claims[0].params == KinshipParams(OTHER, "child")
    assert valid.claims[1].params == OwnershipParams(None, owns=False)


def test_claims_request_collects_every_violation() -> None:
    req = claims_request(
        pb.Claim(id="a", type="household.residence", params={"region": "350505"}),
        pb.Claim(id="a", type="household.residence", params={"region": "350505"}),
        pb.Claim(id="b", type="household.adress"),
        pb.Claim(id="c", type="social_security.contribution", params={"min_months": "0"}),
        pb.Claim(id="x" * 65, type="property.ownership"),
        pb.Claim(
            id="d", type="household.kinship", params={"other_id_number": ME, "relation": "child"}
        ),
        case_id="",
    )
    with pytest.raises(InvalidArgument) as exc:
        validate_verify_claims(req, today=TODAY)
    found = fields_of(exc)
    assert set(found) == {
        "context.case_id",
        "claims[1].id",
        "claims[2].type",
        "claims[3].params.min_months",
        "claims[4].id",
        "claims[5].params.other_id_number",
    }
    assert "duplicate" in found["claims[1].id"]
    assert "another person" in found["claims[5].params.other_id_number"]


def test_no_claims_and_too_many_claims() -> None:
    with pytest.raises(InvalidArgument) as exc:
        validate_verify_claims(claims_request())
    assert list(fields_of(exc)) == ["claims"]
    many = [pb.Claim(id=str(i), type="property.ownership") for i in range(MAX_CLAIMS + 1)]
    with pytest.raises(InvalidArgument) as exc:
        validate_verify_claims(claims_request(*many))
    assert "at most 16" in fields_of(exc)["claims"]
    assert len(validate_verify_claims(claims_request(*many[:MAX_CLAIMS])).claims) == MAX_CLAIMS


def test_claim_violations_with_a_bad_applicant_id() -> None:
    req = claims_request(
        pb.Claim(type="household.kinship", params={"other_id_number": OTHER, "relation": "child"}),
        id_number="bad",
    )
    with pytest.raises(InvalidArgument) as exc:
        validate_verify_claims(req)
    assert list(fields_of(exc)) == ["applicant.id_number"]


texts = st.text(max_size=80)


@given(
    st.builds(
        pb.RequestContext,
        service_item=texts,
        case_id=texts,
        purpose=st.text(max_size=600),
        consent_token=texts,
    ),
    texts,
    texts,
    st.lists(
        st.builds(
            pb.Claim,
            id=st.text(max_size=70),
            type=st.one_of(st.sampled_from(["household.residence", "property.ownership"]), texts),
            params=st.dictionaries(texts, texts, max_size=4),
        ),
        max_size=18,
    ),
)
def test_arbitrary_requests_only_ever_raise_invalid_argument(
    context: pb.RequestContext, id_number: str, name: str, claims: list[pb.Claim]
) -> None:
    req = pb.VerifyClaimsRequest(
        context=context, applicant=pb.Applicant(id_number=id_number, name=name), claims=claims
    )
    try:
        validate_verify_claims(req, today=TODAY)
    except InvalidArgument as exc:
        caught = exc
    else:
        return
    assert caught.violations
    assert all(v.field and v.description for v in caught.violations)
