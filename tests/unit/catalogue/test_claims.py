"""Claims from the evidence catalogue: parameter parsing, fetch planning and evaluation, case
by case, on the deployed catalogue (deploy/catalogue) and canonical records (plain dicts,
enum values lower_snake) as the connectors deliver them."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.catalogue.claims import (
    DOES_NOT_HOLD,
    HOLDS,
    UNDETERMINED,
    ClaimOutcome,
    Fetch,
    Need,
    ParsedClaim,
    Results,
    evaluate,
    fetch_plan,
    parse_claim,
)
from gateway.catalogue.converters import FAILURES, month6
from gateway.catalogue.functions import KIN_RELATIONS, kin_relation
from gateway.crypto.proofs import binding
from gateway.domain.errors import (
    DepartmentMalformed,
    DepartmentTimeout,
    DepartmentUnavailable,
    ProoflessError,
    RecordNotFound,
)
from gateway.domain.idnumber import make_id
from tests.support.rules import catalogue

CATALOGUE = catalogue()
TODAY = date(2025, 6, 1)
T1 = datetime(2025, 5, 30, 8, 0, tzinfo=UTC)
T2 = datetime(2025, 5, 31, 9, 0, tzinfo=UTC)
ME = make_id("350505", date(1980, 4, 2), 31)
OTHER = make_id("350505", date(2008, 9, 14), 42)
THIRD = make_id("350583", date(1955, 1, 20), 17)
KEY = bytes(range(16))

FLAGSHIP = {
    "household.residence": "household",
    "household.kinship": "household",
    "social_security.contribution": "social_security",
    "property.ownership": "property",
    "property.encumbrance": "property",
}


def bind(person: str) -> str:
    return binding(KEY, person)


def claim(type_: str, cid: str = "c", **params: str) -> ParsedClaim:
    parsed, violations = parse_claim(0, cid, type_, params, CATALOGUE, applicant=ME, today=TODAY)
    assert violations == []
    assert parsed is not None
    return parsed


def violations_of(type_: str, **params: str) -> dict[str, str]:
    parsed, violations = parse_claim(3, "", type_, params, CATALOGUE, applicant=ME, today=TODAY)
    assert parsed is None
    assert violations
    return {v.field: v.description for v in violations}


def household(
    id_number: str = ME,
    *,
    region: str = "350505",
    status: str = "active",
    hh: str = "HH-001",
    rel: str = "head",
    as_of: datetime = T1,
) -> Fetch:
    record = {
        "name": "陈明",
        "id_number": id_number,
        "gender": "male",
        "ethnicity": "汉",
        "birth_date": "1980-04-02",
        "household_number": hh,
        "address": "泉港区山腰街道",
        "region_code": region,
        "relation_to_head": rel,
        "registration_authority": "山腰派出所",
        "status": status,
    }
    return Fetch("household", record, as_of)


def paid(month: str, type_: str = "pension", region: str = "350505") -> dict[str, Any]:
    return {"month": month, "type": type_, "region_code": region, "base_cents": 500_000}


def contributions(
    *months: str,
    type_: str = "pension",
    region: str = "350505",
    extra: tuple[dict[str, Any], ...] = (),
) -> Fetch:
    history = [paid(m, type_, region) for m in months]
    record = {"name": "陈明", "id_number": ME, "insurances": [], "history": [*history, *extra]}
    return Fetch("social_security", record, T1)


def months(start: str, count: int) -> list[str]:
    y, m = int(start[:4]), int(start[5:])
    out = []
    for _ in range(count):
        out.append(f"{y:04d}-{m:02d}")
        m += 1
        if m == 13:
            y, m = y + 1, 1
    return out


def properties(*records: dict[str, Any]) -> Fetch:
    return Fetch("property", list(records), T2)


def flat(
    cert: str, region: str = "350505", *, mortgaged: bool = False, seized: bool = False
) -> dict[str, Any]:
    return {
        "certificate_number": cert,
        "location": "泉港区前黄镇",
        "region_code": region,
        "area_square_meters": 89.5,
        "usage": "residential",
        "co_ownership": "sole",
        "share": 1.0,
        "registration_date": "2021-03-04",
        "mortgaged": mortgaged,
        "seized": seized,
    }


def outcome_of(c: ParsedClaim, results: Results, applicant: str = ME) -> ClaimOutcome:
    return evaluate(c, applicant, results, today=TODAY, catalogue=CATALOGUE, bind=bind)


def run(c: ParsedClaim, results: Results, applicant: str = ME) -> tuple[str, ClaimOutcome]:
    outcome = outcome_of(c, results, applicant)
    return outcome.verdict, outcome


NOT, UNDET = DOES_NOT_HOLD, UNDETERMINED
HH_ME = Need("household", ME)
HH_OTHER = Need("household", OTHER)
SS_ME = Need("social_security", ME)
PR_ME = Need("property", ME)


# ---- the catalogue's claims ----------------------------------------------------------------


def test_flagship_claims_and_their_departments() -> None:
    assert {
        code: CATALOGUE.evidence[spec.evidence].department
        for code, spec in CATALOGUE.claims.items()
        if code in FLAGSHIP  # the departments added by file: test_claims_new.py
    } == FLAGSHIP
    for spec in CATALOGUE.claims.values():
        assert spec.description
        assert spec.params
        assert all(p.description for p in spec.params)
        assert spec.code.startswith(spec.evidence + ".")


def test_declared_parameters_and_types() -> None:
    assert {code: CATALOGUE.claim_params(code) for code in FLAGSHIP} == {
        "household.residence": {"region": "region"},
        "household.kinship": {"other_id_number": "person", "relation": "enum"},
        "social_security.contribution": {
            "min_months": "integer",
            "from": "month",
            "to": "month",
            "region": "region",
            "type": "enum",
        },
        "property.ownership": {"region": "region", "owns": "bool"},
        "property.encumbrance": {"certificate_number": "string", "kind": "enum"},
    }
    required = {
        code: sorted(p.name for p in spec.params if p.required)
        for code, spec in CATALOGUE.claims.items()
        if code in FLAGSHIP
    }
    assert required == {
        "household.residence": ["region"],
        "household.kinship": ["other_id_number", "relation"],
        "social_security.contribution": ["min_months"],
        "property.ownership": [],
        "property.encumbrance": ["certificate_number"],
    }
    contribution = CATALOGUE.claims["social_security.contribution"]
    months_param = contribution.param("min_months")
    assert months_param is not None
    assert (months_param.minimum, months_param.maximum) == (1, 600)
    insurance = contribution.param("type")
    assert insurance is not None
    assert insurance.values == ("pension", "medical", "unemployment", "work_injury", "maternity")
    encumbrance = CATALOGUE.claims["property.encumbrance"].param("certificate_number")
    assert encumbrance is not None
    assert (encumbrance.max_length, encumbrance.normalize) == (64, True)
    assert CATALOGUE.claims["household.kinship"].persons == {"other": "other_id_number"}


# ---- parsing -------------------------------------------------------------------------------


def test_parse_keeps_values_as_given_and_fills_defaults_in_effective() -> None:
    c = claim("social_security.contribution", min_months="180")
    assert c.values == {"min_months": 180, "from": None, "to": None, "region": None, "type": None}
    assert c.effective == {
        "min_months": 180,
        "from": None,
        "to": None,
        "region": None,
        "type": "pension",
    }
    assert c.type == "social_security.contribution"
    o = claim("property.ownership")
    assert o.values == {"region": None, "owns": None}
    assert o.effective == {"region": None, "owns": True}
    assert claim("property.ownership", owns="false").effective == {"region": None, "owns": False}
    e = claim("property.encumbrance", certificate_number=" 闽（2021）泉港区不动产权第0001234号 ")
    assert e.effective == {"certificate_number": "闽(2021)泉港区不动产权第0001234号", "kind": "any"}


def test_parse_kinship_normalises_other_id() -> None:
    other = make_id("110105", date(1949, 12, 31), 2)
    assert other.endswith("X")
    c = claim("household.kinship", other_id_number=other.lower(), relation="parent")
    assert c.values == {"other_id_number": other, "relation": "parent"}
    assert c.persons == {"other": other}


@pytest.mark.parametrize(
    ("type_", "params", "field", "rule"),
    [
        ("", {}, "claims[3].type", "required"),
        ("household.address", {}, "claims[3].type", "unknown claim type"),
        ("household.residence", {}, "claims[3].params.region", "required"),
        ("household.residence", {"region": ""}, "claims[3].params.region", "required"),
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
        (  # nobody is their own kin: the table would call a child/child pair siblings
            "household.kinship",
            {"other_id_number": ME, "relation": "sibling"},
            "claims[3].params.other_id_number",
            "another person",
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
        ("property.ownership", {"owns": "True"}, "claims[3].params.owns", "true, false"),
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
            {"certificate_number": "   "},
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
    spec = CATALOGUE.claims.get(type_)
    unknown = [n for n in params if spec is not None and spec.param(n) is None]
    for text in [*params.values(), *unknown]:  # neither a value nor an unknown name is quoted
        if len(text) > 3:
            assert all(text not in d for d in found.values()), (text, found)


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
    assert "extra" not in found["claims[3].params"]


def test_the_applicant_is_only_excluded_when_known() -> None:
    # Without an applicant (the applicant's own ID failed validation) the rule cannot apply;
    # the request is refused for the applicant's ID anyway (gateway.server.requests).
    parsed, violations = parse_claim(
        0,
        "",
        "household.kinship",
        {"other_id_number": ME, "relation": "child"},
        CATALOGUE,
        today=TODAY,
    )
    assert violations == []
    assert parsed is not None


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
        st.sampled_from(
            ["350505", "350000", "12", "2020-01", "true", "false", OTHER, ME, "child", "any"]
        ),
    ),
    max_size=6,
)


@given(st.one_of(st.sampled_from(sorted(CATALOGUE.claims)), st.text(max_size=30)), params_strategy)
def test_parse_never_raises_on_arbitrary_input(type_: str, params: dict[str, str]) -> None:
    parsed, violations = parse_claim(0, "x", type_, params, CATALOGUE, applicant=ME, today=TODAY)
    assert (parsed is None) == bool(violations)
    for v in violations:
        assert v.field.startswith("claims[0].")
        assert v.description
        assert ME not in v.description
        assert OTHER not in v.description
    if parsed is not None:
        assert set(parsed.values) == {p.name for p in parsed.spec.params}
        assert set(params) <= set(parsed.values)


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
    assert claims[0].needs(ME) == (HH_ME,)
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
        ("350505", household(status="moved_out"), NOT),
        ("350505", household(status="deceased"), NOT),
        ("350505", household(status="unspecified"), NOT),
        ("350505", RecordNotFound("no such person"), NOT),
    ],
)
def test_residence(region: str, answer: Any, verdict: str) -> None:
    got, outcome = run(claim("household.residence", region=region), {HH_ME: answer})
    assert got == verdict
    assert (outcome.status, outcome.message) == ("OK", "")
    assert outcome.department == "household"
    assert outcome.as_of == (T1 if isinstance(answer, Fetch) else None)


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (DepartmentUnavailable("down"), "UNAVAILABLE"),
        (DepartmentMalformed("bad body"), "UNAVAILABLE"),
        (DepartmentTimeout("slow"), "DEADLINE_EXCEEDED"),
    ],
)
def test_department_error_is_undetermined(error: ProoflessError, status: str) -> None:
    for c, need in [
        (claim("household.residence", region="350505"), HH_ME),
        (claim("social_security.contribution", min_months="1"), SS_ME),
        (claim("property.ownership", owns="false"), PR_ME),
        (claim("property.encumbrance", certificate_number="A1"), PR_ME),
    ]:
        verdict, outcome = run(c, {need: error})
        assert verdict == UNDET
        assert outcome.status == status
        department = CATALOGUE.evidence[need.evidence].department
        assert outcome.message == f"the {department} department could not answer ({error.reason})"
        assert ME not in outcome.message
        assert outcome.as_of is None
        assert outcome.disclosed["verdict"] == "UNDETERMINED"


def test_missing_answer_is_undetermined() -> None:
    c = claim("household.residence", region="350505")
    verdict, outcome = run(c, {})
    assert (verdict, outcome.status) == (UNDET, "INTERNAL")
    assert outcome.message == "no answer from the household department"
    # an answer for someone else is no answer about the applicant
    verdict, outcome = run(c, {HH_OTHER: household(OTHER)})
    assert (verdict, outcome.status) == (UNDET, "INTERNAL")


@pytest.mark.parametrize(
    "record",
    [
        [household().record],  # a list where the evidence is one record
        "陈明",
        None,
        {"region_code": "350505"},  # a required field missing
    ],
    ids=["list", "text", "none", "no-status"],
)
def test_a_record_of_the_wrong_shape_is_undetermined(record: Any) -> None:
    """A connector bug must not fail the whole request: rules.py promises that any error
    during evaluation makes the claim UNDETERMINED (the old code: INTERNAL, 'unexpected
    record type'), with a message that quotes nothing of the record."""
    c = claim("household.residence", region="350505")
    verdict, outcome = run(c, {HH_ME: Fetch("household", record, T1)})
    assert (verdict, outcome.status) == (UNDET, "INTERNAL")
    assert "陈明" not in outcome.message
    assert "350505" not in outcome.message


# ---- household.kinship -------------------------------------------------------------------

CERTAIN = sorted(KIN_RELATIONS.items())


@pytest.mark.parametrize(("pair", "relation"), CERTAIN, ids=[f"{a}-{o}" for (a, o), _ in CERTAIN])
def test_kinship_every_derivation_in_the_table_holds(pair: tuple[str, str], relation: str) -> None:
    mine, theirs = pair
    c = claim("household.kinship", other_id_number=OTHER, relation=relation)
    results: Results = {
        HH_ME: household(rel=mine, as_of=T2),
        HH_OTHER: household(OTHER, rel=theirs, as_of=T1),
    }
    got, outcome = run(c, results)
    assert got == HOLDS
    assert outcome.as_of == T1  # the older record bounds the answer
    # and no other relation holds for the same pair
    for other_relation in {r for r in KIN_RELATIONS.values() if r != relation}:
        c = claim("household.kinship", other_id_number=OTHER, relation=other_relation)
        assert run(c, results)[0] == NOT


@pytest.mark.parametrize(
    ("mine", "theirs", "relation"),
    [
        ("head", "child", "parent"),  # the direction matters
        ("head", "spouse", "child"),
        ("grandchild", "grandchild", "sibling"),  # maybe cousins
        ("spouse", "parent", "parent"),  # a parent-in-law
        ("other", "head", "child"),
        ("unspecified", "head", "parent"),
        ("head", "other", "child"),
        ("head", "head", "spouse"),  # two heads: a broken registry answer
    ],
)
def test_kinship_uncertain_pairs_do_not_hold(mine: str, theirs: str, relation: str) -> None:
    c = claim("household.kinship", other_id_number=OTHER, relation=relation)
    results: Results = {
        HH_ME: household(rel=mine, as_of=T1),
        HH_OTHER: household(OTHER, rel=theirs, as_of=T2),
    }
    got, outcome = run(c, results)
    assert got == NOT
    assert outcome.as_of == T1


def test_kinship_table_is_consistent_both_ways() -> None:
    inverse = {
        "spouse": "spouse",
        "sibling": "sibling",
        "child": "parent",
        "parent": "child",
        "grandchild": "grandparent",
        "grandparent": "grandchild",
    }
    for (a, o), relation in KIN_RELATIONS.items():
        assert KIN_RELATIONS[(o, a)] == inverse[relation]
        assert kin_relation(a, o) == relation
    assert kin_relation("grandchild", "grandchild") == ""


def test_kinship_table_speaks_the_catalogue_vocabulary() -> None:
    relation = CATALOGUE.claims["household.kinship"].param("relation")
    assert relation is not None
    assert set(KIN_RELATIONS.values()) == set(relation.values)
    field = CATALOGUE.evidence["household"].field("relation_to_head")
    assert field is not None
    assert field.enum is not None
    assert {r for pair in KIN_RELATIONS for r in pair} <= set(field.enum.values)


@pytest.mark.parametrize(
    ("mine", "theirs"),
    [
        ({}, {"hh": "HH-002"}),  # different households
        ({"hh": ""}, {"hh": ""}),  # no household number is no household
        ({}, {"status": "moved_out"}),
        ({}, {"status": "deceased"}),
        ({"status": "moved_out"}, {}),
    ],
)
def test_kinship_needs_both_active_in_one_household(
    mine: dict[str, Any], theirs: dict[str, Any]
) -> None:
    c = claim("household.kinship", other_id_number=OTHER, relation="child")
    results: Results = {
        HH_ME: household(rel="head", **mine),
        HH_OTHER: household(OTHER, rel="child", **theirs),
    }
    assert run(c, results)[0] == NOT


def test_kinship_not_found_and_errors() -> None:
    c = claim("household.kinship", other_id_number=OTHER, relation="child")
    me, them = household(rel="head"), household(OTHER, rel="child")
    assert run(c, {HH_ME: me, HH_OTHER: them})[0] == HOLDS
    verdict, outcome = run(c, {HH_ME: RecordNotFound("x"), HH_OTHER: them})
    assert (verdict, outcome.status, outcome.as_of) == (NOT, "OK", None)
    assert run(c, {HH_ME: me, HH_OTHER: RecordNotFound("x")})[0] == NOT
    verdict, outcome = run(c, {HH_ME: me, HH_OTHER: DepartmentUnavailable("down")})
    assert (verdict, outcome.status) == (UNDET, "UNAVAILABLE")
    assert OTHER not in outcome.message
    assert ME not in outcome.message
    verdict, outcome = run(c, {HH_ME: DepartmentTimeout("t"), HH_OTHER: them})
    assert (verdict, outcome.status) == (UNDET, "DEADLINE_EXCEEDED")
    # one person unknown to the registry decides it even when the other fetch failed
    assert run(c, {HH_ME: RecordNotFound("x"), HH_OTHER: DepartmentTimeout("t")})[0] == NOT
    assert run(c, {HH_ME: DepartmentTimeout("t"), HH_OTHER: RecordNotFound("x")})[0] == NOT
    # the other person's record missing altogether is not an answer
    verdict, outcome = run(c, {HH_ME: me})
    assert (verdict, outcome.status) == (UNDET, "INTERNAL")


def test_kinship_disclosure_binds_the_other_person_never_hashes_the_id() -> None:
    c = claim("household.kinship", cid="k1", other_id_number=OTHER, relation="child")
    results: Results = {
        HH_ME: household(rel="head"),
        HH_OTHER: household(OTHER, rel="child"),
    }
    outcome = outcome_of(c, results)
    assert outcome.disclosed == {
        "claim": "household.kinship",
        "id": "k1",
        "params": {"other_id_number_binding": bind(OTHER), "relation": "child"},
        "verdict": "HOLDS",
    }
    text = json.dumps(outcome.disclosed, ensure_ascii=False)
    for secret in (OTHER, ME, "陈明", "HH-001", hashlib.sha256(OTHER.encode()).hexdigest()):
        assert secret not in text
    # the binding is keyed: another key, another binding
    other = evaluate(
        c, ME, results, today=TODAY, catalogue=CATALOGUE, bind=lambda p: binding(b"x" * 16, p)
    )
    assert other.disclosed["params"]["other_id_number_binding"] != bind(OTHER)


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
        ({"min_months": "1", "from": "2020-06", "to": "2020-06"}, GAP, HOLDS),  # one month
        ({"min_months": "18", "region": "350505"}, GAP, HOLDS),
        ({"min_months": "18", "region": "350500"}, GAP, HOLDS),
        ({"min_months": "18", "region": "350000"}, GAP, HOLDS),
        ({"min_months": "1", "region": "350100"}, GAP, NOT),
        ({"min_months": "1", "region": "350583"}, GAP, NOT),  # a sibling county
        ({"min_months": "1", "type": "medical"}, GAP, NOT),
        ({"min_months": "18", "type": "pension"}, GAP, HOLDS),
        (
            {"min_months": "3", "type": "medical"},
            contributions("2020-01", "2020-02", "2020-03", type_="medical"),
            HOLDS,
        ),
        (
            {"min_months": "1"},
            contributions("2020-01", "2020-02", "2020-03", type_="medical"),
            NOT,  # pension by default
        ),
        (
            {"min_months": "1", "type": "work_injury"},
            contributions("2020-01", type_="work_injury"),
            HOLDS,
        ),
        # the same month paid twice (two employers) counts once
        ({"min_months": "2"}, contributions("2020-01", "2020-01"), NOT),
        ({"min_months": "1"}, contributions("2020-01", "2020-01"), HOLDS),
        (
            {"min_months": "2"},
            contributions("2020-01", extra=(paid("2020-01", "medical"),)),
            NOT,  # another insurance in the same month is not another month
        ),
        ({"min_months": "1"}, contributions(), NOT),
        ({"min_months": "1"}, RecordNotFound("x"), NOT),
        (
            {"min_months": "2", "region": "350505"},
            contributions("2020-01", extra=(paid("2020-02", region="350100"),)),
            NOT,
        ),
        (
            {"min_months": "2", "region": "350000"},
            contributions("2020-01", extra=(paid("2020-02", region="350100"),)),
            HOLDS,  # both months are in Fujian
        ),
    ],
)
def test_contribution(params: dict[str, str], answer: Any, verdict: str) -> None:
    got, outcome = run(claim("social_security.contribution", **params), {SS_ME: answer})
    assert got == verdict
    assert outcome.department == "social_security"
    assert outcome.status == "OK"


def test_contribution_months_after_today_do_not_count() -> None:
    prepaid = contributions(*months("2025-01", 12))  # the history runs to 2025-12
    c = claim("social_security.contribution", min_months="6")
    assert run(c, {SS_ME: prepaid})[0] == HOLDS  # Jan..Jun: today's month closes the period
    c = claim("social_security.contribution", min_months="7")
    assert run(c, {SS_ME: prepaid})[0] == NOT
    later = evaluate(
        c, ME, {SS_ME: prepaid}, today=date(2025, 7, 1), catalogue=CATALOGUE, bind=bind
    )
    assert later.verdict == HOLDS  # a month on, July counts
    c = claim("social_security.contribution", min_months="3", to="2025-03")
    assert run(c, {SS_ME: prepaid})[0] == HOLDS
    c = claim("social_security.contribution", min_months="1", **{"from": "2025-07"})
    assert run(c, {SS_ME: prepaid})[0] == NOT  # a `to` beyond today does not open it either
    c = claim("social_security.contribution", min_months="7", to="2025-12")
    assert run(c, {SS_ME: prepaid})[0] == NOT


def test_malformed_months_never_reach_the_rule() -> None:
    """The old claim skipped malformed months itself; now the mapping's month converter
    refuses them, so a history reaching a rule holds only YYYY-MM months."""
    assert month6("202001") == "2020-01"
    for raw in ("20201", "bad", "202013", "202000", "2020-01", True):
        with pytest.raises(FAILURES):
            month6(raw)


def test_contribution_disclosure_has_defaults_and_no_history() -> None:
    outcome = outcome_of(claim("social_security.contribution", min_months="18"), {SS_ME: GAP})
    assert outcome.disclosed["params"] == {"min_months": 18, "type": "pension"}
    assert outcome.disclosed["verdict"] == "HOLDS"
    assert outcome.as_of == T1
    windowed = claim(
        "social_security.contribution",
        min_months="12",
        region="350500",
        type="medical",
        **{"from": "2018-01", "to": "2018-12"},
    )
    assert outcome_of(windowed, {SS_ME: GAP}).disclosed["params"] == {
        "min_months": 12,
        "from": "2018-01",
        "to": "2018-12",
        "region": "350500",
        "type": "medical",
    }
    text = json.dumps(outcome.disclosed)
    assert "2018-01" not in text
    assert "500000" not in text


# ---- property.ownership ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "answer", "verdict"),
    [
        ({}, properties(flat("A1")), HOLDS),
        ({}, properties(), NOT),
        ({"owns": "true"}, properties(flat("A1"), flat("A2")), HOLDS),
        ({"owns": "false"}, properties(), HOLDS),  # the no-property certificate
        ({"owns": "false"}, RecordNotFound("x"), HOLDS),  # unknown to the registry
        ({"owns": "true"}, RecordNotFound("x"), NOT),
        ({"owns": "false"}, properties(flat("A1")), NOT),
        ({"region": "350500"}, properties(flat("A1", "350583")), HOLDS),
        ({"region": "350583"}, properties(flat("A1", "350583")), HOLDS),
        ({"region": "350100"}, properties(flat("A1", "350583")), NOT),
        ({"region": "350100", "owns": "false"}, properties(flat("A1", "350583")), HOLDS),
        (
            {"region": "350100", "owns": "false"},
            properties(flat("A1", "350583"), flat("A2", "350102")),
            NOT,
        ),
        (
            {"region": "350100", "owns": "true"},
            properties(flat("A1", "350583"), flat("A2", "350102")),
            HOLDS,
        ),
    ],
)
def test_ownership(params: dict[str, str], answer: Any, verdict: str) -> None:
    got, outcome = run(claim("property.ownership", **params), {PR_ME: answer})
    assert got == verdict
    assert outcome.department == "property"
    assert outcome.status == "OK"
    assert outcome.as_of == (T2 if isinstance(answer, Fetch) else None)


def test_ownership_disclosure() -> None:
    outcome = outcome_of(claim("property.ownership", cid="h"), {PR_ME: properties(flat("A1"))})
    assert outcome.disclosed == {
        "claim": "property.ownership",
        "id": "h",
        "params": {"owns": True},
        "verdict": "HOLDS",
    }
    c = claim("property.ownership", region="350500", owns="false")
    assert outcome_of(c, {PR_ME: properties()}).disclosed["params"] == {
        "region": "350500",
        "owns": False,
    }


# ---- property.encumbrance ----------------------------------------------------------------

HOLDINGS = properties(
    flat("闽(2021)泉港区不动产权第0000001号"),
    flat("M", mortgaged=True),
    flat("S", seized=True),
    flat("B", mortgaged=True, seized=True),
    flat("Ｗ１"),  # written full-width by the registry
)


@pytest.mark.parametrize(
    ("cert", "kind", "verdict"),
    [
        ("闽(2021)泉港区不动产权第0000001号", "any", NOT),
        ("闽（2021）泉港区不动产权第0000001号", "any", NOT),  # full-width brackets match
        (" 闽(2021)泉港区不动产权第0000001号  ", "mortgage", NOT),  # so do stray spaces
        ("M", "any", HOLDS),
        ("M", "mortgage", HOLDS),
        ("M", "seizure", NOT),
        ("S", "any", HOLDS),
        ("S", "mortgage", NOT),
        ("S", "seizure", HOLDS),
        ("B", "any", HOLDS),
        ("B", "mortgage", HOLDS),
        ("B", "seizure", HOLDS),
        ("W1", "any", NOT),  # the registry's full-width spelling is normalised too
    ],
)
def test_encumbrance(cert: str, kind: str, verdict: str) -> None:
    c = claim("property.encumbrance", certificate_number=cert, kind=kind)
    got, outcome = run(c, {PR_ME: HOLDINGS})
    assert (got, outcome.status) == (verdict, "OK")
    assert outcome.as_of == T2


def test_encumbrance_kind_defaults_to_any() -> None:
    c = claim("property.encumbrance", certificate_number="S")
    assert run(c, {PR_ME: HOLDINGS})[0] == HOLDS
    assert outcome_of(c, {PR_ME: HOLDINGS}).disclosed["params"] == {
        "certificate_number": "S",
        "kind": "any",
    }


@pytest.mark.parametrize(
    "answer", [HOLDINGS, properties(), RecordNotFound("x")], ids=["others", "none", "unknown"]
)
def test_encumbrance_of_a_property_not_held_is_undetermined_not_found(answer: Any) -> None:
    c = claim("property.encumbrance", certificate_number="Z-404")
    verdict, outcome = run(c, {PR_ME: answer})
    assert (verdict, outcome.status) == (UNDET, "NOT_FOUND")
    assert outcome.message == "the applicant holds no property with the given certificate number"
    assert "Z-404" not in outcome.message


# ---- outcomes ------------------------------------------------------------------------------


def test_outcome_fields() -> None:
    c = claim("property.ownership", cid="no-house", owns="false")
    outcome = outcome_of(c, {PR_ME: properties()})
    assert outcome.claim_id == "no-house"
    assert outcome.claim_type == "property.ownership"
    assert outcome.verdict == HOLDS
    assert (outcome.status, outcome.message) == ("OK", "")
    assert outcome.department == "property"
    assert outcome.as_of == T2


def test_the_subjects_own_data_never_reaches_an_outcome() -> None:
    c = claim("household.residence", cid="r", region="350500")
    outcome = outcome_of(c, {HH_ME: household()})
    text = json.dumps(outcome.disclosed, ensure_ascii=False) + outcome.message
    for secret in (ME, "陈明", "HH-001", "泉港区山腰街道", "350505"):
        assert secret not in text
