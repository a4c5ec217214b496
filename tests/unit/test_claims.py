"""The claims catalogue: parameter parsing, fetch planning and evaluation, case by case."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime
from typing import Any

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.base import (
    DepartmentMalformed,
    DepartmentTimeout,
    DepartmentUnavailable,
    Fetched,
    RecordNotFound,
)
from gateway.domain.claims import (
    CATALOGUE,
    KINSHIP_TABLE,
    ContributionParams,
    EncumbranceParams,
    KinshipParams,
    Need,
    OwnershipParams,
    ParsedClaim,
    ResidenceParams,
    evaluate,
    fetch_plan,
    parse_claim,
)
from gateway.domain.errors import ProoflessError
from gateway.domain.idnumber import make_id
from proofless.v1 import verification_pb2 as pb

TODAY = date(2025, 6, 1)
T1 = datetime(2025, 5, 30, 8, 0, tzinfo=UTC)
T2 = datetime(2025, 5, 31, 9, 0, tzinfo=UTC)
ME = make_id("350505", date(1980, 4, 2), 31)
OTHER = make_id("350505", date(2008, 9, 14), 42)
THIRD = make_id("350583", date(1955, 1, 20), 17)

Results = dict[Need, Fetched[Any] | ProoflessError]


def claim(type_: str, cid: str = "c", **params: str) -> ParsedClaim:
    parsed, violations = parse_claim(0, pb.Claim(id=cid, type=type_, params=params), today=TODAY)
    assert violations == []
    assert parsed is not None
    return parsed


def violations_of(type_: str, **params: str) -> dict[str, str]:
    parsed, violations = parse_claim(3, pb.Claim(type=type_, params=params), today=TODAY)
    assert parsed is None
    assert violations
    return {v.field: v.description for v in violations}


def household(
    id_number: str = ME,
    *,
    region: str = "350505",
    status: int = pb.HOUSEHOLD_STATUS_ACTIVE,
    hh: str = "HH-001",
    rel: int = pb.RELATION_HEAD,
    as_of: datetime = T1,
) -> Fetched[pb.HouseholdRecord]:
    record = pb.HouseholdRecord(
        name="陈明",
        id_number=id_number,
        region_code=region,
        status=status,  # type: ignore[arg-type]
        household_number=hh,
        relation_to_head=rel,  # type: ignore[arg-type]
    )
    return Fetched("household", record, as_of)


def contributions(
    *months: str,
    type_: int = pb.INSURANCE_TYPE_PENSION,
    region: str = "350505",
    extra: tuple[pb.Contribution, ...] = (),
) -> Fetched[pb.SocialSecurityRecord]:
    history = [
        pb.Contribution(month=m, type=type_, region_code=region)  # type: ignore[arg-type]
        for m in months
    ]
    record = pb.SocialSecurityRecord(id_number=ME, history=[*history, *extra])
    return Fetched("social_security", record, T1)


def months(start: str, count: int) -> list[str]:
    y, m = int(start[:4]), int(start[5:])
    out = []
    for _ in range(count):
        out.append(f"{y:04d}-{m:02d}")
        m += 1
        if m == 13:
            y, m = y + 1, 1
    return out


def properties(*records: pb.PropertyRecord) -> Fetched[list[pb.PropertyRecord]]:
    return Fetched("property", list(records), T2)


def flat(
    cert: str, region: str = "350505", *, mortgaged: bool = False, seized: bool = False
) -> pb.PropertyRecord:
    return pb.PropertyRecord(
        certificate_number=cert, region_code=region, share=1.0, mortgaged=mortgaged, seized=seized
    )


def run(c: ParsedClaim, results: Results, applicant: str = ME) -> tuple[int, Any]:
    outcome = evaluate(c, applicant, results)
    return outcome.verdict, outcome


HOLDS, NOT, UNDET = pb.VERDICT_HOLDS, pb.VERDICT_DOES_NOT_HOLD, pb.VERDICT_UNDETERMINED
HH_ME = Need("household", ME)
HH_OTHER = Need("household", OTHER)
SS_ME = Need("social_security", ME)
PR_ME = Need("property", ME)


# ---- catalogue and parsing ---------------------------------------------------------------


def test_catalogue_names_and_departments() -> None:
    assert {t: s.department for t, s in CATALOGUE.items()} == {
        "household.residence": "household",
        "household.kinship": "household",
        "social_security.contribution": "social_security",
        "property.ownership": "property",
        "property.encumbrance": "property",
    }
    for spec in CATALOGUE.values():
        assert spec.description
        assert spec.params
        assert spec.type in spec.help()


def test_parse_fills_defaults() -> None:
    c = claim("social_security.contribution", min_months="180")
    assert c.params == ContributionParams(180, None, None, None, "pension")
    assert claim("property.ownership").params == OwnershipParams(None, owns=True)
    e = claim("property.encumbrance", certificate_number=" 闽（2021）泉港区不动产权第0001234号 ")
    assert e.params == EncumbranceParams("闽(2021)泉港区不动产权第0001234号", "any")


def test_parse_kinship_normalises_other_id() -> None:
    other = make_id("110105", date(1949, 12, 31), 2)
    assert other.endswith("X")
    c = claim("household.kinship", other_id_number=other.lower(), relation="parent")
    assert c.params == KinshipParams(other, "parent")


@pytest.mark.parametrize(
    ("type_", "params", "field", "rule"),
    [
        ("", {}, "claims[3].type", "required"),
        ("household.address", {}, "claims[3].type", "unknown claim type"),
        ("household.residence", {}, "claims[3].params.region", "required"),
        ("household.residence", {"region": "12345"}, "claims[3].params.region", "6-digit"),
        ("household.residence", {"region": "990000"}, "claims[3].params.region", "6-digit"),
        (
            "household.residence",
            {"region": "350505", "radius": "5"},
            "claims[3].params",
            "unknown parameter",
        ),
        (
            "household.residence",
            {"region": "350505", "bad name!": "5"},
            "claims[3].params",
            "unknown parameter",
        ),
        (  # an ID number sent as a parameter name is not quoted back
            "household.residence",
            {"region": "350505", OTHER: "5"},
            "claims[3].params",
            "unknown parameter",
        ),
        (
            "household.kinship",
            {"relation": "child"},
            "claims[3].params.other_id_number",
            "required",
        ),
        (
            "household.kinship",
            {"other_id_number": OTHER[:-1] + "0", "relation": "child"},
            "claims[3].params.other_id_number",
            "check character",
        ),
        (
            "household.kinship",
            {"other_id_number": OTHER, "relation": "cousin"},
            "claims[3].params.relation",
            "one of",
        ),
        ("household.kinship", {"other_id_number": OTHER}, "claims[3].params.relation", "required"),
        ("social_security.contribution", {}, "claims[3].params.min_months", "required"),
        (
            "social_security.contribution",
            {"min_months": "0"},
            "claims[3].params.min_months",
            "1 to 600",
        ),
        (
            "social_security.contribution",
            {"min_months": "601"},
            "claims[3].params.min_months",
            "1 to 600",
        ),
        (
            "social_security.contribution",
            {"min_months": "-3"},
            "claims[3].params.min_months",
            "1 to 600",
        ),
        (
            "social_security.contribution",
            {"min_months": "1e2"},
            "claims[3].params.min_months",
            "1 to 600",
        ),
        (
            "social_security.contribution",
            {"min_months": "１２"},
            "claims[3].params.min_months",
            "1 to 600",
        ),
        (
            "social_security.contribution",
            {"min_months": "12", "from": "2020-13"},
            "claims[3].params.from",
            "YYYY-MM",
        ),
        (
            "social_security.contribution",
            {"min_months": "12", "to": "2020-1"},
            "claims[3].params.to",
            "YYYY-MM",
        ),
        (
            "social_security.contribution",
            {"min_months": "12", "from": "2021-01", "to": "2020-12"},
            "claims[3].params.to",
            "before",
        ),
        (
            "social_security.contribution",
            {"min_months": "12", "type": "pensions"},
            "claims[3].params.type",
            "one of",
        ),
        (
            "social_security.contribution",
            {"min_months": "12", "region": "x"},
            "claims[3].params.region",
            "region",
        ),
        ("property.ownership", {"owns": "yes"}, "claims[3].params.owns", "true, false"),
        ("property.ownership", {"region": "3x05"}, "claims[3].params.region", "region"),
        ("property.encumbrance", {}, "claims[3].params.certificate_number", "required"),
        (
            "property.encumbrance",
            {"certificate_number": "x" * 65},
            "claims[3].params.certificate_number",
            "1 to 64",
        ),
        (
            "property.encumbrance",
            {"certificate_number": "A\n1"},
            "claims[3].params.certificate_number",
            "printable",
        ),
        (
            "property.encumbrance",
            {"certificate_number": "A1", "kind": "lien"},
            "claims[3].params.kind",
            "one of",
        ),
    ],
)
def test_parse_violations(type_: str, params: dict[str, str], field: str, rule: str) -> None:
    found = violations_of(type_, **params)
    assert field in found, found
    assert rule in found[field]
    for value in params.values():
        if len(value) > 3:
            assert all(value not in d for d in found.values())


def test_parse_collects_every_violation_of_a_claim() -> None:
    found = violations_of(
        "social_security.contribution",
        min_months="0",
        to="20-01",
        region="1",
        type="x",
        extra="1",
    )
    assert set(found) == {
        "claims[3].params.min_months",
        "claims[3].params.to",
        "claims[3].params.region",
        "claims[3].params.type",
        "claims[3].params",  # an unknown name is not quoted back
    }


params_strategy = st.dictionaries(
    st.one_of(
        st.sampled_from(
            [
                "region",
                "other_id_number",
                "relation",
                "min_months",
                "from",
                "to",
                "type",
                "owns",
                "certificate_number",
                "kind",
            ]
        ),
        st.text(max_size=12),
    ),
    st.one_of(
        st.text(max_size=70),
        st.sampled_from(["350505", "350000", "12", "2020-01", "true", "false", OTHER, "child"]),
    ),
    max_size=6,
)


@given(st.one_of(st.sampled_from(sorted(CATALOGUE)), st.text(max_size=30)), params_strategy)
def test_parse_never_raises_on_arbitrary_input(type_: str, params: dict[str, str]) -> None:
    parsed, violations = parse_claim(0, pb.Claim(id="x", type=type_, params=params), today=TODAY)
    assert (parsed is None) == bool(violations)
    for v in violations:
        assert v.field.startswith("claims[0].")
        assert v.description


# ---- fetch plan ----------------------------------------------------------------------------


def test_fetch_plan_fetches_each_record_once() -> None:
    claims = [
        claim("household.residence", region="350500"),
        claim("household.kinship", other_id_number=OTHER, relation="child"),
        claim("social_security.contribution", min_months="12"),
        claim("social_security.contribution", min_months="24", type="medical"),
        claim("property.ownership", owns="false"),
        claim("property.encumbrance", certificate_number="A1"),
    ]
    assert fetch_plan(claims, ME) == frozenset({HH_ME, HH_OTHER, SS_ME, PR_ME})
    assert claims[1].needs(ME) == (HH_ME, HH_OTHER)
    assert fetch_plan([], ME) == frozenset()


# ---- household.residence -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("region", "answer", "verdict"),
    [
        ("350505", household(region="350505"), HOLDS),  # the county itself
        ("350500", household(region="350505"), HOLDS),  # Quanzhou contains Quangang
        ("350000", household(region="350505"), HOLDS),  # Fujian contains it
        ("350100", household(region="350505"), NOT),  # Fuzhou does not
        ("350583", household(region="350505"), NOT),  # a sibling county
        ("350505", household(status=pb.HOUSEHOLD_STATUS_MOVED_OUT), NOT),
        ("350505", household(status=pb.HOUSEHOLD_STATUS_DECEASED), NOT),
        ("350505", household(status=pb.HOUSEHOLD_STATUS_UNSPECIFIED), NOT),
        ("350505", RecordNotFound("no such person"), NOT),
    ],
)
def test_residence(region: str, answer: Any, verdict: int) -> None:
    got, outcome = run(claim("household.residence", region=region), {HH_ME: answer})
    assert got == verdict
    assert outcome.grpc_code == grpc.StatusCode.OK
    assert outcome.department == "household"
    assert outcome.as_of == (T1 if isinstance(answer, Fetched) else None)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (DepartmentUnavailable("down"), grpc.StatusCode.UNAVAILABLE),
        (DepartmentMalformed("bad body"), grpc.StatusCode.UNAVAILABLE),
        (DepartmentTimeout("slow"), grpc.StatusCode.DEADLINE_EXCEEDED),
    ],
)
def test_department_error_is_undetermined(error: ProoflessError, code: grpc.StatusCode) -> None:
    for c, need in [
        (claim("household.residence", region="350505"), HH_ME),
        (claim("social_security.contribution", min_months="1"), SS_ME),
        (claim("property.ownership", owns="false"), PR_ME),
        (claim("property.encumbrance", certificate_number="A1"), PR_ME),
    ]:
        verdict, outcome = run(c, {need: error})
        assert verdict == UNDET
        assert outcome.grpc_code == code
        assert outcome.status_code == code.value[0]
        assert need.department in outcome.status_message
        assert error.reason in outcome.status_message
        assert ME not in outcome.status_message
        result = outcome.to_result()
        assert result.status.code == code.value[0]
        assert result.verdict == UNDET


def test_missing_answer_and_wrong_record_type_are_undetermined() -> None:
    c = claim("household.residence", region="350505")
    verdict, outcome = run(c, {})
    assert (verdict, outcome.grpc_code) == (UNDET, grpc.StatusCode.INTERNAL)
    wrong = Fetched("household", pb.SocialSecurityRecord(), T1)
    verdict, outcome = run(c, {HH_ME: wrong})
    assert (verdict, outcome.grpc_code) == (UNDET, grpc.StatusCode.INTERNAL)


# ---- household.kinship -------------------------------------------------------------------

R = pb.Relation


@pytest.mark.parametrize(
    ("mine", "theirs", "relation", "verdict"),
    [
        (R.RELATION_HEAD, R.RELATION_SPOUSE, "spouse", HOLDS),
        (R.RELATION_SPOUSE, R.RELATION_HEAD, "spouse", HOLDS),
        (R.RELATION_HEAD, R.RELATION_CHILD, "child", HOLDS),
        (R.RELATION_SPOUSE, R.RELATION_CHILD, "child", HOLDS),
        (R.RELATION_CHILD, R.RELATION_HEAD, "parent", HOLDS),
        (R.RELATION_CHILD, R.RELATION_SPOUSE, "parent", HOLDS),
        (R.RELATION_CHILD, R.RELATION_CHILD, "sibling", HOLDS),
        (R.RELATION_HEAD, R.RELATION_GRANDCHILD, "grandchild", HOLDS),
        (R.RELATION_GRANDCHILD, R.RELATION_HEAD, "grandparent", HOLDS),
        (R.RELATION_HEAD, R.RELATION_PARENT, "parent", HOLDS),
        (R.RELATION_PARENT, R.RELATION_HEAD, "child", HOLDS),
        (R.RELATION_CHILD, R.RELATION_PARENT, "grandparent", HOLDS),
        (R.RELATION_HEAD, R.RELATION_CHILD, "parent", NOT),  # the direction matters
        (R.RELATION_HEAD, R.RELATION_SPOUSE, "child", NOT),
        (R.RELATION_GRANDCHILD, R.RELATION_GRANDCHILD, "sibling", NOT),  # maybe cousins
        (R.RELATION_SPOUSE, R.RELATION_PARENT, "parent", NOT),  # a parent-in-law
        (R.RELATION_OTHER, R.RELATION_HEAD, "child", NOT),
        (R.RELATION_UNSPECIFIED, R.RELATION_HEAD, "parent", NOT),
    ],
)
def test_kinship_relations(mine: int, theirs: int, relation: str, verdict: int) -> None:
    c = claim("household.kinship", other_id_number=OTHER, relation=relation)
    results: Results = {
        HH_ME: household(rel=mine, as_of=T2),
        HH_OTHER: household(OTHER, rel=theirs, as_of=T1),
    }
    got, outcome = run(c, results)
    assert got == verdict
    assert outcome.as_of == T1  # the older record bounds the answer


def test_kinship_table_is_consistent_both_ways() -> None:
    inverse = {
        "spouse": "spouse",
        "sibling": "sibling",
        "child": "parent",
        "parent": "child",
        "grandchild": "grandparent",
        "grandparent": "grandchild",
    }
    for (a, o), relation in KINSHIP_TABLE.items():
        assert KINSHIP_TABLE[(o, a)] == inverse[relation]


@pytest.mark.parametrize(
    ("mine", "theirs"),
    [
        ({}, {"hh": "HH-002"}),  # different households
        ({"hh": ""}, {"hh": ""}),  # no household number is no household
        ({}, {"status": pb.HOUSEHOLD_STATUS_MOVED_OUT}),
        ({}, {"status": pb.HOUSEHOLD_STATUS_DECEASED}),
        ({"status": pb.HOUSEHOLD_STATUS_MOVED_OUT}, {}),
    ],
)
def test_kinship_needs_both_active_in_one_household(
    mine: dict[str, Any], theirs: dict[str, Any]
) -> None:
    c = claim("household.kinship", other_id_number=OTHER, relation="child")
    results: Results = {
        HH_ME: household(rel=R.RELATION_HEAD, **mine),
        HH_OTHER: household(OTHER, rel=R.RELATION_CHILD, **theirs),
    }
    assert run(c, results)[0] == NOT


def test_kinship_not_found_and_errors() -> None:
    c = claim("household.kinship", other_id_number=OTHER, relation="child")
    me, them = household(rel=R.RELATION_HEAD), household(OTHER, rel=R.RELATION_CHILD)
    assert run(c, {HH_ME: me, HH_OTHER: them})[0] == HOLDS
    assert run(c, {HH_ME: RecordNotFound("x"), HH_OTHER: them})[0] == NOT
    assert run(c, {HH_ME: me, HH_OTHER: RecordNotFound("x")})[0] == NOT
    verdict, outcome = run(c, {HH_ME: me, HH_OTHER: DepartmentUnavailable("down")})
    assert (verdict, outcome.grpc_code) == (UNDET, grpc.StatusCode.UNAVAILABLE)
    assert OTHER not in outcome.status_message
    # one person unknown to the registry decides it even when the other fetch failed
    assert run(c, {HH_ME: RecordNotFound("x"), HH_OTHER: DepartmentTimeout("t")})[0] == NOT
    assert run(c, {HH_ME: DepartmentTimeout("t"), HH_OTHER: RecordNotFound("x")})[0] == NOT


def test_kinship_with_oneself_never_holds() -> None:
    c = claim("household.kinship", other_id_number=ME, relation="sibling")
    assert run(c, {HH_ME: household(rel=R.RELATION_CHILD)})[0] == NOT


def test_kinship_disclosure_hashes_the_other_id() -> None:
    c = claim("household.kinship", cid="k1", other_id_number=OTHER, relation="child")
    results: Results = {
        HH_ME: household(rel=R.RELATION_HEAD),
        HH_OTHER: household(OTHER, rel=R.RELATION_CHILD),
    }
    outcome = evaluate(c, ME, results)
    assert outcome.disclosed == {
        "claim": "household.kinship",
        "id": "k1",
        "params": {
            "other_id_number_sha256": hashlib.sha256(OTHER.encode()).hexdigest(),
            "relation": "child",
        },
        "verdict": "HOLDS",
    }
    text = json.dumps(outcome.disclosed, ensure_ascii=False)
    assert OTHER not in text
    assert ME not in text
    assert "陈明" not in text


# ---- social_security.contribution --------------------------------------------------------

GAP = contributions(*months("2018-01", 12), *months("2020-01", 6))  # 2019 missing


@pytest.mark.parametrize(
    ("params", "answer", "verdict"),
    [
        ({"min_months": "18"}, GAP, HOLDS),
        ({"min_months": "19"}, GAP, NOT),  # the gap year does not count
        ({"min_months": "12", "from": "2018-01", "to": "2018-12"}, GAP, HOLDS),  # bounds inclusive
        ({"min_months": "12", "from": "2018-02", "to": "2018-12"}, GAP, NOT),
        ({"min_months": "12", "from": "2018-01", "to": "2018-11"}, GAP, NOT),
        ({"min_months": "6", "from": "2019-01"}, GAP, HOLDS),
        ({"min_months": "7", "from": "2019-01"}, GAP, NOT),
        ({"min_months": "12", "to": "2019-12"}, GAP, HOLDS),
        ({"min_months": "1", "from": "2019-01", "to": "2019-12"}, GAP, NOT),
        ({"min_months": "18", "region": "350500"}, GAP, HOLDS),
        ({"min_months": "18", "region": "350000"}, GAP, HOLDS),
        ({"min_months": "1", "region": "350100"}, GAP, NOT),
        ({"min_months": "1", "type": "medical"}, GAP, NOT),
        (
            {"min_months": "3", "type": "medical"},
            contributions("2020-01", "2020-02", "2020-03", type_=pb.INSURANCE_TYPE_MEDICAL),
            HOLDS,
        ),
        # the same month paid twice (two employers) counts once
        ({"min_months": "2"}, contributions("2020-01", "2020-01"), NOT),
        ({"min_months": "1"}, contributions(), NOT),
        ({"min_months": "1"}, RecordNotFound("x"), NOT),
        ({"min_months": "1"}, contributions("2020-1", "bad"), NOT),  # malformed months ignored
        (
            {"min_months": "2", "region": "350505"},
            contributions(
                "2020-01",
                extra=(
                    pb.Contribution(
                        month="2020-02", type=pb.INSURANCE_TYPE_PENSION, region_code="350100"
                    ),
                ),
            ),
            NOT,
        ),
    ],
)
def test_contribution(params: dict[str, str], answer: Any, verdict: int) -> None:
    got, outcome = run(claim("social_security.contribution", **params), {SS_ME: answer})
    assert got == verdict
    assert outcome.department == "social_security"


def test_contribution_months_after_today_do_not_count() -> None:
    prepaid = contributions(*months("2025-01", 12))  # the history runs to 2025-12
    c = claim("social_security.contribution", min_months="6")
    assert evaluate(c, ME, {SS_ME: prepaid}, today=TODAY).verdict == HOLDS  # Jan..Jun
    c = claim("social_security.contribution", min_months="7")
    assert evaluate(c, ME, {SS_ME: prepaid}, today=TODAY).verdict == NOT
    assert evaluate(c, ME, {SS_ME: prepaid}).verdict == HOLDS  # no today: no cap
    c = claim("social_security.contribution", min_months="3", to="2025-03")
    assert evaluate(c, ME, {SS_ME: prepaid}, today=TODAY).verdict == HOLDS


def test_contribution_disclosure_has_defaults_and_no_history() -> None:
    outcome = evaluate(claim("social_security.contribution", min_months="18"), ME, {SS_ME: GAP})
    assert outcome.disclosed["params"] == {"min_months": 18, "type": "pension"}
    assert outcome.disclosed["verdict"] == "HOLDS"
    assert outcome.as_of == T1


# ---- property.ownership ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "answer", "verdict"),
    [
        ({}, properties(flat("A1")), HOLDS),
        ({}, properties(), NOT),
        ({"owns": "false"}, properties(), HOLDS),  # the no-property certificate
        ({"owns": "false"}, RecordNotFound("x"), HOLDS),  # unknown to the registry
        ({"owns": "true"}, RecordNotFound("x"), NOT),
        ({"owns": "false"}, properties(flat("A1")), NOT),
        ({"region": "350500"}, properties(flat("A1", "350583")), HOLDS),
        ({"region": "350100"}, properties(flat("A1", "350583")), NOT),
        ({"region": "350100", "owns": "false"}, properties(flat("A1", "350583")), HOLDS),
        (
            {"region": "350100", "owns": "false"},
            properties(flat("A1", "350583"), flat("A2", "350102")),
            NOT,
        ),
        (
            {},
            Fetched("property", pb.PropertyRecordsResponse(records=[flat("A1")]), T2),
            HOLDS,
        ),
    ],
)
def test_ownership(params: dict[str, str], answer: Any, verdict: int) -> None:
    got, outcome = run(claim("property.ownership", **params), {PR_ME: answer})
    assert got == verdict
    assert outcome.department == "property"


# ---- property.encumbrance ----------------------------------------------------------------

HOLDINGS = properties(
    flat("闽(2021)泉港区不动产权第0000001号"),
    flat("M", mortgaged=True),
    flat("S", seized=True),
    flat("B", mortgaged=True, seized=True),
)


@pytest.mark.parametrize(
    ("cert", "kind", "verdict"),
    [
        ("闽(2021)泉港区不动产权第0000001号", "any", NOT),
        ("闽（2021）泉港区不动产权第0000001号", "any", NOT),  # full-width brackets match
        ("M", "any", HOLDS),
        ("M", "mortgage", HOLDS),
        ("M", "seizure", NOT),
        ("S", "any", HOLDS),
        ("S", "mortgage", NOT),
        ("S", "seizure", HOLDS),
        ("B", "mortgage", HOLDS),
        ("B", "seizure", HOLDS),
    ],
)
def test_encumbrance(cert: str, kind: str, verdict: int) -> None:
    c = claim("property.encumbrance", certificate_number=cert, kind=kind)
    assert run(c, {PR_ME: HOLDINGS})[0] == verdict


@pytest.mark.parametrize("answer", [HOLDINGS, properties(), RecordNotFound("x")])
def test_encumbrance_of_a_property_not_held_is_undetermined_not_found(answer: Any) -> None:
    c = claim("property.encumbrance", certificate_number="Z-404")
    verdict, outcome = run(c, {PR_ME: answer})
    assert (verdict, outcome.grpc_code) == (UNDET, grpc.StatusCode.NOT_FOUND)
    assert "Z-404" not in outcome.status_message
    assert outcome.to_result().status.code == grpc.StatusCode.NOT_FOUND.value[0]


def test_outcome_to_result() -> None:
    c = claim("property.ownership", cid="no-house", owns="false")
    result = evaluate(c, ME, {PR_ME: properties()}).to_result()
    assert result.id == "no-house"
    assert result.type == "property.ownership"
    assert result.verdict == HOLDS
    assert result.status.code == 0
    assert result.source_department == pb.DEPARTMENT_PROPERTY
    assert result.as_of.ToDatetime(tzinfo=UTC) == T2


def test_params_types_are_the_declared_ones() -> None:
    assert isinstance(claim("household.residence", region="350000").params, ResidenceParams)
