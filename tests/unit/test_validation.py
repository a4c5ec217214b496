"""Boundary validation: every violation of a request, collected, with google.rpc field paths.

The per-part validators (gateway.domain.validation) and the request readers that compose them
(gateway.server.requests), against the deployed catalogue, plus one organisation evidence type
laid over it for the organisation applicant.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from hypothesis import given
from hypothesis import strategies as st

from gateway.catalogue import Catalogue, parse_catalogue
from gateway.domain.creditcode import check_character, organisation_check_character
from gateway.domain.errors import InvalidArgument
from gateway.domain.idnumber import make_id
from gateway.domain.validation import (
    MAX_CLAIMS,
    ValidRequest,
    claim_id_violations,
    claims_count_violations,
    validate_context,
    validate_organisation,
    validate_person,
    validate_read_mask,
)
from gateway.server.requests import (
    ClaimsRequest,
    RecordRequest,
    claims_request,
    evidence_request,
    record_request,
)
from proofless.v1 import verification_pb2 as pb
from tests.support.rules import CATALOGUE_DIR, catalogue

TODAY = date(2025, 6, 1)
ME = make_id("350505", date(1980, 4, 2), 31)
ME_X = "11010519491231002X"
OTHER = make_id("350505", date(2008, 9, 14), 42)
CATALOGUE = catalogue()
HOUSEHOLD = CATALOGUE.evidence["household"]
PROPERTY = CATALOGUE.evidence["property"]
SOCIAL_SECURITY = CATALOGUE.evidence["social_security"]


def credit_code(org8: str = "MA2Y0K7D", authority: str = "91", region: str = "350505") -> str:
    org = org8 + organisation_check_character(org8)
    first17 = authority + region + org
    return first17 + check_character(first17)


COMPANY = credit_code()

# An organisation evidence type and claim beside the deployed (person) ones.
MARKET = b"""
[department]
code = "market"
name = "market regulation"
english = "Market regulation"
connector = "http_json"
endpoint = "http://127.0.0.1:8109"

[enums.licence_status]
values = ["active", "revoked"]
codes = { "1" = "active", "2" = "revoked" }

[evidence.business_licence]
name = "business licence"
description = "An organisation's business licence."
subject = "organisation"
cardinality = "one"
subject_field = "TYSHXYDM"

[evidence.business_licence.http]
method = "POST"
path = "/licence"
body = { TYSHXYDM = "{subject}" }
data = "data"

[[evidence.business_licence.field]]
name = "name"
type = "string"
from = "MC"
description = "name"

[[evidence.business_licence.field]]
name = "status"
type = "enum"
enum = "licence_status"
from = "ZT"
description = "status"

[evidence.business_licence.claims.active]
description = "the licence is active"
rule = 'record.status == "active"'

[[evidence.business_licence.claims.active.param]]
name = "since"
type = "date"
description = "founded on or before"
"""


@pytest.fixture(scope="module")
def with_market() -> Catalogue:
    files = {p.name: p.read_bytes() for p in sorted(Path(CATALOGUE_DIR).glob("*.toml"))}
    files.pop("business_licence.toml", None)  # the stand-in below takes the real one's place
    files["market.toml"] = MARKET
    return parse_catalogue(files)


def ctx(**overrides: str) -> pb.RequestContext:
    fields = {
        "service_item": "FJ-350505-ESF.001",
        "case_id": "QG2025-000123",
        "purpose": "二手房交易 卖方核验",
        "consent_token": "",
    }
    fields.update(overrides)
    return pb.RequestContext(**fields)


def read(
    id_number: str = ME,
    name: str = "陈明",
    paths: tuple[str, ...] = (),
    evidence: object = HOUSEHOLD,
    **context: str,
) -> RecordRequest:
    return record_request(
        ctx(**context),
        pb.Applicant(id_number=id_number, name=name),
        list(paths),
        evidence,  # type: ignore[arg-type]
        today=TODAY,
    )


def verify(
    *claims: pb.Claim,
    id_number: str = ME,
    credit_code: str = "",
    today: date | None = TODAY,
    catalogue_: Catalogue = CATALOGUE,
    **context: str,
) -> ClaimsRequest:
    req = pb.VerifyClaimsRequest(
        context=ctx(**context),
        applicant=pb.Applicant(id_number=id_number, credit_code=credit_code),
        claims=list(claims),
    )
    return claims_request(req, catalogue_, today=today)


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
        ({"case_id": "11010519491231002X"}, "context.case_id", "resident ID"),
        ({"case_id": "QG-110105491231002"}, "context.case_id", "resident ID"),  # 15 digits
        ({"case_id": "TEL13912345678"}, "context.case_id", "mobile"),
        ({"purpose": "申请人11010519491231002x户籍"}, "context.purpose", "resident ID"),
        ({"purpose": "call 139 1234 5678 or 13912345678"}, "context.purpose", "mobile"),
        ({"consent_token": "t" * 4097}, "context.consent_token", "4096"),
        ({"consent_token": "a.b c.d"}, "context.consent_token", "compact JWS"),
    ],
)
def test_context_violations(overrides: dict[str, str], field: str, rule: str) -> None:
    found = {v.field: v.description for v in validate_context(ctx(**overrides))}
    assert list(found) == [field]
    assert rule in found[field]
    for value in overrides.values():
        if len(value) > 3:
            assert value not in found[field]


@pytest.mark.parametrize(
    "case",
    ["QG2025-000123", "350100-20261121-0001", "FZ2026112100000012345", "12345678901", "QG-2026"],
)
def test_case_ids_that_are_not_personal_numbers_pass(case: str) -> None:
    assert validate_context(ctx(case_id=case)) == []


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


# ---- applicants --------------------------------------------------------------------------


def test_person_is_normalised() -> None:
    assert validate_person(pb.Applicant(id_number=ME_X.lower(), name="陈明"), TODAY) == (ME_X, [])


@pytest.mark.parametrize(
    ("applicant", "field", "rule"),
    [
        (pb.Applicant(), "applicant.id_number", "required"),
        (pb.Applicant(id_number=ME, credit_code=COMPANY), "applicant.credit_code", "empty"),
        (pb.Applicant(id_number=ME, name="名" * 65), "applicant.name", "at most 64"),
        (pb.Applicant(id_number=ME, name="陈\u202e明"), "applicant.name", "control"),
    ],
)
def test_person_violations(applicant: pb.Applicant, field: str, rule: str) -> None:
    subject, found = validate_person(applicant, TODAY)
    assert {v.field for v in found} == {field}
    assert rule in found[0].description
    assert COMPANY not in found[0].description
    if field == "applicant.id_number":
        assert subject == ""


def test_organisation_is_normalised() -> None:
    assert validate_organisation(pb.Applicant(credit_code=f" {COMPANY.lower()} ")) == (COMPANY, [])


@pytest.mark.parametrize(
    ("applicant", "field", "rule"),
    [
        (pb.Applicant(), "applicant.credit_code", "required"),
        (pb.Applicant(credit_code=COMPANY[:-1]), "applicant.credit_code", "18 characters"),
        (pb.Applicant(credit_code=COMPANY[:-1] + "I"), "applicant.credit_code", "without I"),
        (
            pb.Applicant(credit_code=COMPANY[:-1] + ("0" if COMPANY[-1] != "0" else "1")),
            "applicant.credit_code",
            "check character",
        ),
        (
            pb.Applicant(credit_code=COMPANY[:16] + ("0" if COMPANY[16] != "0" else "1") + "0"),
            "applicant.credit_code",
            "organisation code",
        ),
        (pb.Applicant(credit_code=COMPANY, id_number=ME), "applicant.id_number", "empty"),
        (pb.Applicant(credit_code=COMPANY, name="\x00"), "applicant.name", "control"),
    ],
)
def test_organisation_violations(applicant: pb.Applicant, field: str, rule: str) -> None:
    subject, found = validate_organisation(applicant)
    assert {v.field for v in found} == {field}
    assert rule in found[0].description
    for value in (applicant.credit_code, ME):
        assert not value or value[:17] not in found[0].description
    if field == "applicant.credit_code":
        assert subject == ""


# ---- read masks --------------------------------------------------------------------------


def test_read_mask_paths_are_top_level_fields() -> None:
    names = HOUSEHOLD.record.names
    assert validate_read_mask(["name", "status"], names, "household") == (("name", "status"), [])
    mask, found = validate_read_mask(["name", "members.name", "name", "hukou"], names, "household")
    assert mask == ("name", "members.name", "name", "hukou")  # refused as a whole by the reader
    assert [(v.field, v.description.split(":")[0]) for v in found] == [
        ("read_mask.paths[1]", "must be a top-level field of household"),
        ("read_mask.paths[2]", "duplicate path"),
        ("read_mask.paths[3]", "must be a top-level field of household"),
    ]
    # the fields are listed in the catalogue's order, none of them quoted from the request
    assert found[0].description.endswith(": " + ", ".join(names))
    assert "hukou" not in found[2].description


# ---- record requests ---------------------------------------------------------------------


def test_valid_record_request_is_normalised() -> None:
    valid = read(ME_X.lower(), paths=("name", "region_code", "status"))
    assert valid == RecordRequest(
        common=ValidRequest(
            subject=ME_X,
            service_item="FJ-350505-ESF.001",
            case_id="QG2025-000123",
            purpose="二手房交易 卖方核验",
            consent_token="",
            name="陈明",
        ),
        evidence=HOUSEHOLD,
        read_mask=("name", "region_code", "status"),
    )


def test_empty_read_mask_means_everything_allowed() -> None:
    assert read(evidence=PROPERTY).read_mask == ()


def test_record_request_collects_every_violation() -> None:
    with pytest.raises(InvalidArgument) as exc:
        read(
            ME[:-1] + ("0" if ME[-1] != "0" else "1"),
            name="名" * 65,
            paths=("name", "hukou", "name", "members.name"),
            service_item="",
            case_id="",
        )
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
    assert "household" in found["read_mask.paths[1]"]
    assert exc.value.code == grpc.StatusCode.INVALID_ARGUMENT
    # the wire form: one google.rpc.BadRequest with the same paths, no personal value anywhere
    status = exc.value.to_status()
    bad = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad)
    assert {v.field for v in bad.field_violations} == set(found)
    wire = status.SerializeToString().decode("utf-8", "replace")
    assert ME[:17] not in wire
    assert "名名" not in wire
    assert "hukou" not in wire


def test_read_mask_fields_depend_on_the_evidence_type() -> None:
    assert read(paths=("certificate_number",), evidence=PROPERTY).read_mask == (
        "certificate_number",
    )
    with pytest.raises(InvalidArgument) as exc:
        read(paths=("certificate_number",), evidence=SOCIAL_SECURITY)
    found = fields_of(exc)
    assert list(found) == ["read_mask.paths[0]"]
    assert "social_security" in found["read_mask.paths[0]"]


def test_read_mask_at_most_32_paths() -> None:
    with pytest.raises(InvalidArgument) as exc:
        read(paths=tuple(["name"] * 33))
    assert list(fields_of(exc)) == ["read_mask.paths"]
    assert read(paths=tuple(HOUSEHOLD.record.names)).read_mask == HOUSEHOLD.record.names


def test_missing_applicant() -> None:
    with pytest.raises(InvalidArgument) as exc:
        record_request(ctx(), pb.Applicant(), [], HOUSEHOLD)
    assert fields_of(exc) == {"applicant.id_number": "required: an 18-character resident ID number"}


@pytest.mark.parametrize(
    ("id_number", "rule"),
    [
        ("12345", "18 characters"),
        ("3505051980040203１X", "digit or X"),
        ("99050519800402031X", "province"),
        ("350505198002300311", "calendar date"),
        (make_id("350505", date(2025, 6, 2), 31), "between 1900 and today"),
    ],
)
def test_bad_ids(id_number: str, rule: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        read(id_number)
    found = fields_of(exc)
    assert list(found) == ["applicant.id_number"]
    assert rule in found["applicant.id_number"]
    assert id_number not in exc.value.message
    assert id_number not in exc.value.diagnostics()


def test_organisation_evidence_reads_the_credit_code(with_market: Catalogue) -> None:
    licence = with_market.evidence["business_licence"]
    valid = record_request(ctx(), pb.Applicant(credit_code=COMPANY), ["status"], licence)
    assert valid.common.subject == COMPANY
    with pytest.raises(InvalidArgument) as exc:
        record_request(ctx(), pb.Applicant(id_number=ME), [], licence)
    assert set(fields_of(exc)) == {"applicant.credit_code", "applicant.id_number"}


# ---- evidence requests -------------------------------------------------------------------


def test_evidence_request() -> None:
    req = pb.EvidenceRequest(
        context=ctx(), applicant=pb.Applicant(id_number=ME), evidence_type="property"
    )
    req.read_mask.paths.extend(["location"])
    valid = evidence_request(req, CATALOGUE, today=TODAY)
    assert (valid.evidence, valid.read_mask, valid.common.subject) == (PROPERTY, ("location",), ME)


@pytest.mark.parametrize(
    ("evidence_type", "rule"), [("", "required"), ("passport", "unknown; see ListEvidenceTypes")]
)
def test_evidence_request_needs_a_known_type(evidence_type: str, rule: str) -> None:
    req = pb.EvidenceRequest(
        context=ctx(case_id=""), applicant=pb.Applicant(id_number=ME), evidence_type=evidence_type
    )
    with pytest.raises(InvalidArgument) as exc:
        evidence_request(req, CATALOGUE, today=TODAY)
    # without a type the read mask and the applicant's kind cannot be judged; the context can
    found = fields_of(exc)
    assert set(found) == {"context.case_id", "evidence_type"}
    assert found["evidence_type"] == rule


# ---- claims requests ---------------------------------------------------------------------


def test_valid_claims_request() -> None:
    valid = verify(
        pb.Claim(
            id="kin",
            type="household.kinship",
            params={"other_id_number": OTHER, "relation": "child"},
        ),
        pb.Claim(id="nohouse", type="property.ownership", params={"owns": "false"}),
        pb.Claim(type="household.residence", params={"region": "350500"}),
        pb.Claim(type="household.residence", params={"region": "350000"}),  # ids are optional
    )
    assert isinstance(valid, ClaimsRequest)
    assert valid.common.subject == ME
    assert [c.id for c in valid.claims] == ["kin", "nohouse", "", ""]
    assert valid.claims[0].values == {"other_id_number": OTHER, "relation": "child"}
    assert valid.claims[1].values == {"region": None, "owns": False}


def test_claims_request_collects_every_violation() -> None:
    with pytest.raises(InvalidArgument) as exc:
        verify(
            pb.Claim(id="a", type="household.residence", params={"region": "350505"}),
            pb.Claim(id="a", type="household.residence", params={"region": "350505"}),
            pb.Claim(id="b", type="household.adress"),
            pb.Claim(id="c", type="social_security.contribution", params={"min_months": "0"}),
            pb.Claim(id="x" * 65, type="property.ownership"),
            pb.Claim(
                id="d",
                type="household.kinship",
                params={"other_id_number": ME, "relation": "child"},
            ),
            case_id="",
        )
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
    assert ME[:17] not in exc.value.to_status().SerializeToString().decode("utf-8", "replace")


def test_claim_ids() -> None:
    claims = [
        pb.Claim(id="a"),
        pb.Claim(),
        pb.Claim(),  # an empty id is never a duplicate
        pb.Claim(id="a"),
        pb.Claim(id="x" * 65),
        pb.Claim(id="t\tab"),
        pb.Claim(id="x" * 64),
    ]
    assert [(v.field, v.description) for v in claim_id_violations(claims)] == [
        ("claims[3].id", "duplicate claim id"),
        ("claims[4].id", "must be at most 64 printable characters"),
        ("claims[5].id", "must be at most 64 printable characters"),
    ]


def test_no_claims_and_too_many_claims() -> None:
    assert [v.field for v in claims_count_violations([])] == ["claims"]
    with pytest.raises(InvalidArgument) as exc:
        verify()
    assert list(fields_of(exc)) == ["claims"]
    many = [pb.Claim(id=str(i), type="property.ownership") for i in range(MAX_CLAIMS + 1)]
    with pytest.raises(InvalidArgument) as exc:
        verify(*many)
    assert "at most 16" in fields_of(exc)["claims"]
    assert len(verify(*many[:MAX_CLAIMS]).claims) == MAX_CLAIMS


def test_too_many_claims_are_not_parsed() -> None:
    # one violation for the count, not one per bad claim beyond it
    many = [pb.Claim(type="household.adress") for _ in range(MAX_CLAIMS + 1)]
    with pytest.raises(InvalidArgument) as exc:
        verify(*many)
    assert list(fields_of(exc)) == ["claims"]


def test_claim_violations_with_a_bad_applicant_id() -> None:
    with pytest.raises(InvalidArgument) as exc:
        verify(
            pb.Claim(
                type="household.kinship", params={"other_id_number": OTHER, "relation": "child"}
            ),
            id_number="bad",
        )
    assert list(fields_of(exc)) == ["applicant.id_number"]


def test_claims_about_an_organisation(with_market: Catalogue) -> None:
    licence = pb.Claim(id="l", type="business_licence.active", params={"since": "2020-01-31"})
    valid = verify(licence, id_number="", credit_code=COMPANY, catalogue_=with_market)
    assert valid.common.subject == COMPANY
    assert valid.claims[0].values == {"since": "2020-01-31"}
    with pytest.raises(InvalidArgument) as exc:
        verify(licence, catalogue_=with_market)  # a person's ID for an organisation claim
    assert set(fields_of(exc)) == {"applicant.credit_code", "applicant.id_number"}
    with pytest.raises(InvalidArgument) as exc:
        verify(
            pb.Claim(type="business_licence.active", params={"since": "2020-02-30"}),
            id_number="",
            credit_code=COMPANY,
            catalogue_=with_market,
        )
    assert list(fields_of(exc)) == ["claims[0].params.since"]


def test_persons_and_organisations_are_not_mixed(with_market: Catalogue) -> None:
    with pytest.raises(InvalidArgument) as exc:
        verify(
            pb.Claim(type="household.residence", params={"region": "350505"}),
            pb.Claim(type="business_licence.active"),
            catalogue_=with_market,
        )
    found = fields_of(exc)
    assert "two requests" in found["claims"]


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
            type=st.one_of(st.sampled_from(sorted(CATALOGUE.claims)), texts),
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
        claims_request(req, CATALOGUE, today=TODAY)
    except InvalidArgument as exc:
        caught = exc
    else:
        return
    assert caught.violations
    assert all(v.field and v.description for v in caught.violations)
