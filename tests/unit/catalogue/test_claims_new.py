"""The claims of the departments added by catalogue file, decided by their CEL rules on the
deployed catalogue (deploy/catalogue) over canonical records as the connectors deliver them:
case by case, with the edge each rule turns on."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from gateway.catalogue.claims import (
    DOES_NOT_HOLD,
    HOLDS,
    UNDETERMINED,
    ClaimOutcome,
    Fetch,
    Need,
    evaluate,
    parse_claim,
)
from gateway.domain.errors import DepartmentUnavailable, ProoflessError, RecordNotFound
from gateway.domain.idnumber import make_id
from tests.support.rules import catalogue

CATALOGUE = catalogue()
TODAY = date(2026, 12, 6)
AS_OF = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
ME = make_id("350505", date(1981, 6, 22), 25)
SPOUSE = make_id("350304", date(1991, 11, 11), 298)
OTHER = make_id("350102", date(1990, 1, 2), 44)


def decide(
    type_: str,
    records: dict[str, Any | ProoflessError],
    *,
    applicant: str = ME,
    **params: str,
) -> ClaimOutcome:
    """The claim `type_` with `params`, decided over `records` (evidence code → the canonical
    record(s) or the department's error) fetched for `applicant`."""
    parsed, violations = parse_claim(
        0, "c", type_, params, CATALOGUE, applicant=applicant, today=TODAY
    )
    assert violations == [], violations
    assert parsed is not None
    results: dict[Need, Fetch | ProoflessError] = {}
    for code, value in records.items():
        department = CATALOGUE.evidence[code].department
        need = Need(code, applicant)
        fetched = Fetch(department, value, AS_OF)
        results[need] = value if isinstance(value, ProoflessError) else fetched
    assert set(results) >= set(parsed.needs(applicant)), "a record the claim reads is missing"
    return evaluate(
        parsed, applicant, results, today=TODAY, catalogue=CATALOGUE, bind=lambda p: "b:" + p[:2]
    )


def verdict(type_: str, records: dict[str, Any], **params: str) -> str:
    return decide(type_, records, **params).verdict


# ---- marriage --------------------------------------------------------------------------


def registration(kind: str, day: str, husband: str = ME, wife: str = SPOUSE) -> dict[str, Any]:
    return {
        "kind": kind,
        "registration_date": day,
        "certificate_number": "J350505-2005-145937",
        "authority": "泉州市泉港区民政局",
        "husband_name": "李杰斌",
        "husband_id_number": husband,
        "wife_name": "杨颖静",
        "wife_id_number": wife,
    }


MARRIED = [registration("marriage", "2012-05-20")]
DIVORCED = [*MARRIED, registration("divorce", "2018-09-12")]
REMARRIED = [*DIVORCED, registration("marriage", "2021-10-01", wife=OTHER)]
REISSUED = [*MARRIED, registration("reissue", "2016-03-02")]


@pytest.mark.parametrize(
    ("records", "married", "divorced", "unmarried"),
    [
        (MARRIED, HOLDS, DOES_NOT_HOLD, DOES_NOT_HOLD),
        (REISSUED, HOLDS, DOES_NOT_HOLD, DOES_NOT_HOLD),
        (DIVORCED, DOES_NOT_HOLD, HOLDS, DOES_NOT_HOLD),
        (REMARRIED, HOLDS, DOES_NOT_HOLD, DOES_NOT_HOLD),
        ([], DOES_NOT_HOLD, DOES_NOT_HOLD, HOLDS),
    ],
)
def test_marriage_status(records: list[Any], married: str, divorced: str, unmarried: str) -> None:
    got = [verdict("marriage.status", {"marriage": records}, status=s) for s in
           ("married", "divorced", "unmarried")]  # fmt: skip
    assert got == [married, divorced, unmarried]


def test_marriage_unknown_to_the_registry_is_unmarried() -> None:
    # The registry answers 1004 for a person it has no registration of: 0..n evidence,
    # so the empty list, which the rule decides.
    unknown = RecordNotFound("marriage: no such subject")
    assert verdict("marriage.status", {"marriage": unknown}, status="unmarried") == HOLDS
    assert verdict("marriage.status", {"marriage": unknown}, status="married") == DOES_NOT_HOLD


def test_marriage_registry_down_is_undetermined_without_personal_data() -> None:
    outcome = decide(
        "marriage.status", {"marriage": DepartmentUnavailable("marriage: down")}, status="married"
    )
    assert outcome.verdict == UNDETERMINED
    assert outcome.status == "UNAVAILABLE"
    assert "marriage" in outcome.message
    assert ME not in outcome.message


def test_marriage_spouse() -> None:
    assert verdict("marriage.spouse", {"marriage": MARRIED}, spouse_id_number=SPOUSE) == HOLDS
    assert verdict("marriage.spouse", {"marriage": DIVORCED}, spouse_id_number=SPOUSE) == (
        DOES_NOT_HOLD
    )
    assert verdict("marriage.spouse", {"marriage": REMARRIED}, spouse_id_number=OTHER) == HOLDS
    assert verdict("marriage.spouse", {"marriage": REMARRIED}, spouse_id_number=SPOUSE) == (
        DOES_NOT_HOLD
    )
    assert verdict("marriage.spouse", {"marriage": MARRIED}, spouse_id_number=OTHER) == (
        DOES_NOT_HOLD
    )
    # The wife asks about her husband: the same registration, the other side of it.
    outcome = decide(
        "marriage.spouse", {"marriage": MARRIED}, applicant=SPOUSE, spouse_id_number=ME
    )
    assert outcome.verdict == HOLDS
    # The spouse is named in the proof only by the caller's binding, never by ID number.
    assert outcome.disclosed["params"] == {"spouse_id_number_binding": "b:" + ME[:2]}


def test_marriage_parameters_are_checked() -> None:
    _, bad = parse_claim(0, "c", "marriage.status", {"status": "widowed"}, CATALOGUE)
    assert [v.field for v in bad] == ["claims[0].params.status"]
    _, bad = parse_claim(
        0, "c", "marriage.spouse", {"spouse_id_number": ME}, CATALOGUE, applicant=ME
    )
    assert [v.description for v in bad] == ["must be another person than the applicant"]
    _, bad = parse_claim(
        0, "c", "marriage.spouse", {"spouse_id_number": ME[:-1] + "0"}, CATALOGUE, applicant=ME
    )
    assert bad
    assert ME[:-1] not in bad[0].description


# ---- medical insurance -------------------------------------------------------------------


def enrolment(status: str = "active", scheme: str = "resident") -> dict[str, Any]:
    return {
        "name": "李杰斌",
        "id_number": ME,
        "scheme": scheme,
        "status": status,
        "region_code": "350902",
        "enrolled_on": "2017-01-12",
    }


def test_medical_insurance_enrolled() -> None:
    def v(record: Any, **params: str) -> str:
        return verdict("medical_insurance.enrolled", {"medical_insurance": record}, **params)

    assert v(enrolment()) == HOLDS
    assert v(enrolment(), scheme="resident", region="350900") == HOLDS
    assert v(enrolment(), region="350000") == HOLDS
    assert v(enrolment(), scheme="employee") == DOES_NOT_HOLD
    assert v(enrolment(), region="350500") == DOES_NOT_HOLD
    assert v(enrolment("suspended")) == DOES_NOT_HOLD
    assert v(enrolment("terminated", "employee"), scheme="employee") == DOES_NOT_HOLD
    assert v(RecordNotFound("medical_insurance: no such subject")) == DOES_NOT_HOLD
    down = decide("medical_insurance.enrolled", {"medical_insurance": DepartmentUnavailable("x")})
    assert (down.verdict, down.status) == (UNDETERMINED, "UNAVAILABLE")
    _, bad = parse_claim(0, "c", "medical_insurance.enrolled", {"scheme": "private"}, CATALOGUE)
    assert [v.field for v in bad] == ["claims[0].params.scheme"]


# ---- business licence ----------------------------------------------------------------------

SOLE_TRADER = "92350206MAP8BQ6M9N"


def licence(status: str = "existing", scope: str = "餐饮服务；小吃服务") -> dict[str, Any]:
    return {
        "credit_code": SOLE_TRADER,
        "name": "厦门市湖里区方记沙茶面店",
        "kind": "sole_trader",
        "representative": "方斌强",
        "representative_id_number": ME,
        "scope": scope,
        "status": status,
        "founded_on": "2016-04-12",
        "authority": "厦门市湖里区市场监督管理局",
        "address": "福建省厦门市湖里区云顶北路25号",
    }


def test_business_licence_active_with_scope_keyword() -> None:
    def v(record: Any, **params: str) -> str:
        return verdict(
            "business_licence.active",
            {"business_licence": record},
            applicant=SOLE_TRADER,
            **params,
        )

    assert v(licence()) == HOLDS
    assert v(licence("operating")) == HOLDS
    assert v(licence(), scope="餐饮服务") == HOLDS
    assert v(licence(), scope="　餐饮服务 ") == HOLDS  # full-width space: NFKC and trimmed
    assert v(licence(), scope="烟草制品零售") == DOES_NOT_HOLD
    assert v(licence("revoked")) == DOES_NOT_HOLD
    assert v(licence("cancelled"), scope="餐饮服务") == DOES_NOT_HOLD
    assert v(RecordNotFound("business_licence: no such subject")) == DOES_NOT_HOLD


def test_business_licence_represented_by() -> None:
    def v(person: str) -> str:
        return verdict(
            "business_licence.represented_by",
            {"business_licence": licence()},
            applicant=SOLE_TRADER,
            person_id_number=person,
        )

    assert v(ME) == HOLDS
    assert v(OTHER) == DOES_NOT_HOLD
    outcome = decide(
        "business_licence.represented_by",
        {"business_licence": licence()},
        applicant=SOLE_TRADER,
        person_id_number=ME,
    )
    assert outcome.disclosed["params"] == {"person_id_number_binding": "b:" + ME[:2]}


# ---- nurse practising registration ----------------------------------------------------------

HOSPITAL = "宁德市蕉城区医院"


def registration_record(
    status: str = "valid", until: str = "2026-12-26", employer: str = HOSPITAL
) -> dict[str, Any]:
    return {
        "certificate_number": "201635523624",
        "name": "郑晶",
        "id_number": ME,
        "employer": employer,
        "region_code": "350902",
        "category": "nursing",
        "registered_on": "2021-12-27",
        "valid_until": until,
        "status": status,
    }


def enrolment_record(employer: str = HOSPITAL, status: str = "active") -> dict[str, Any]:
    insurance = {
        "type": "pension",
        "status": status,
        "employer": employer,
        "region_code": "350902",
        "first_month": "2019-08",
        "last_month": "2026-10",
        "total_months": 87,
    }
    return {"name": "郑晶", "id_number": ME, "insurances": [insurance], "history": []}


def nurse(record: Any, ss: Any = None, **params: str) -> str:
    records = {"nurse": record, "social_security": enrolment_record() if ss is None else ss}
    return verdict("nurse.registration_valid", records, **params)


def test_nurse_registration_valid_on_a_date() -> None:
    assert nurse(registration_record()) == HOLDS  # today, 2026-12-06
    assert nurse(registration_record(), on="2026-12-26") == HOLDS  # the last day
    assert nurse(registration_record(), on="2026-12-27") == DOES_NOT_HOLD
    assert nurse(registration_record(), on="2021-12-26") == DOES_NOT_HOLD  # before it began
    assert nurse(registration_record(until="2026-12-05")) == DOES_NOT_HOLD  # expired yesterday
    assert nurse(registration_record("suspended")) == DOES_NOT_HOLD
    assert nurse(registration_record("cancelled")) == DOES_NOT_HOLD


def test_nurse_employer_must_match_the_social_security_employer() -> None:
    moved = enrolment_record("福建省泉港石化有限公司")
    assert nurse(registration_record(), moved) == DOES_NOT_HOLD
    assert nurse(registration_record(), moved, employer_matches="false") == HOLDS
    # the same institution with a stray space still matches (both sides NFKC and trimmed)
    assert nurse(registration_record(employer="宁德市蕉城区医院 "), enrolment_record()) == HOLDS
    # an enrolment that has stopped is not the current employer
    assert nurse(registration_record(), enrolment_record(status="suspended")) == DOES_NOT_HOLD
    # never enrolled: the employer cannot be confirmed
    assert nurse(registration_record(), RecordNotFound("social_security")) == DOES_NOT_HOLD


def test_nurse_claim_reads_social_security_and_is_undetermined_when_it_is_down() -> None:
    parsed, _ = parse_claim(0, "c", "nurse.registration_valid", {}, CATALOGUE, applicant=ME)
    assert parsed is not None
    assert set(parsed.needs(ME)) == {Need("nurse", ME), Need("social_security", ME)}
    down = decide(
        "nurse.registration_valid",
        {"nurse": registration_record(), "social_security": DepartmentUnavailable("x")},
    )
    assert (down.verdict, down.status) == (UNDETERMINED, "UNAVAILABLE")
    assert "social_security" in down.message
    # not a nurse at all: the registry does not know the applicant
    assert nurse(RecordNotFound("nurse: no such subject")) == DOES_NOT_HOLD


def test_nurse_renewal_due_within_thirty_days() -> None:
    def due(until: str, **params: str) -> str:
        return verdict("nurse.renewal_due", {"nurse": registration_record(until=until)}, **params)

    assert due("2026-12-26") == HOLDS  # 20 days from today
    assert due("2027-01-05") == HOLDS  # the 30th day
    assert due("2027-01-06") == DOES_NOT_HOLD
    assert due("2026-12-05") == DOES_NOT_HOLD  # expired: a new registration, not a renewal
    assert due("2027-01-20", within_days="60") == HOLDS
    assert due("2026-12-26", on="2026-11-01") == DOES_NOT_HOLD
    _, bad = parse_claim(0, "c", "nurse.renewal_due", {"within_days": "365"}, CATALOGUE)
    assert [v.field for v in bad] == ["claims[0].params.within_days"]


# ---- disability certificate -----------------------------------------------------------------


def certificate(grade: int = 2, category: str = "physical", until: str = "2029-12-05") -> Any:
    return {
        "certificate_number": ME + "42",
        "name": "李杰斌",
        "id_number": ME,
        "category": category,
        "grade": grade,
        "issued_on": "2019-12-06",
        "valid_until": until,
    }


def test_disability_certified() -> None:
    def v(record: Any, **params: str) -> str:
        return verdict("disability.certified", {"disability": record}, **params)

    assert v(certificate()) == HOLDS
    assert v(certificate(), max_grade="2") == HOLDS  # 重度: grade 1 or 2
    assert v(certificate(3), max_grade="2") == DOES_NOT_HOLD
    assert v(certificate(1), max_grade="2") == HOLDS
    assert v(certificate(), category="physical") == HOLDS
    assert v(certificate(), category="visual") == DOES_NOT_HOLD
    assert v(certificate(until="2026-12-05")) == DOES_NOT_HOLD  # expired
    assert v(certificate(), on="2019-12-05") == DOES_NOT_HOLD  # not yet issued
    assert v(certificate(0)) == DOES_NOT_HOLD  # no grade is no certificate
    assert v(RecordNotFound("disability: no such subject")) == DOES_NOT_HOLD
    _, bad = parse_claim(0, "c", "disability.certified", {"max_grade": "5"}, CATALOGUE)
    assert [v.field for v in bad] == ["claims[0].params.max_grade"]
