"""The registers of the departments added by catalogue file (adapters.simulators.registers):
consistent with the population across departments, deterministic, independent of the
population's size, and the population itself unchanged by them."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from adapters.simulators import datagen
from adapters.simulators.datagen import Population, generate
from adapters.simulators.population import Registers
from adapters.simulators.registers import registers
from gateway.domain.creditcode import is_credit_code, is_sole_trader

TODAY = date(2026, 12, 6)


@pytest.fixture(scope="module")
def population() -> Population:
    return generate(20261121, 2000)


@pytest.fixture(scope="module")
def regs(population: Population) -> Registers:
    return registers(population, TODAY)


def test_new_scenarios_name_people_already_named(population: Population) -> None:
    # The typed RPCs' replay set (tests/support/replay.py) is the named people plus a sample:
    # the departments added by file must not add anyone to it.
    old = {
        name: idn
        for name, idn in population.scenarios.items()
        if name in datagen.SCENARIO_NAMES[: datagen.SCENARIO_NAMES.index("pensioner_quangang") + 1]
    }
    assert set(population.scenarios.values()) == set(old.values())


def test_every_spouse_is_a_person_of_the_population(
    population: Population, regs: Registers
) -> None:
    assert len(regs.marriages) > 500
    for idn, records in regs.marriages.items():
        assert idn in population.people
        for r in records:
            assert idn in (r.husband_id, r.wife_id)
            husband, wife = population.people[r.husband_id], population.people[r.wife_id]
            assert (husband.gender, wife.gender) == ("1", "2")
            assert (husband.name, wife.name) == (r.husband_name, r.wife_name)
            assert r.registered_on >= husband.birth_date + timedelta(days=20 * 365)
    married = population.scenarios["married"]
    (marriage,) = regs.marriages[married]
    household = population.household_of(married)
    assert {marriage.husband_id, marriage.wife_id} <= set(household.member_ids)
    kinds = [r.kind for r in regs.marriages[population.scenarios["divorced"]]]
    assert kinds == ["结婚", "离婚"]


def test_nurses_work_where_social_security_has_them(
    population: Population, regs: Registers
) -> None:
    assert len(regs.nurses) > 30
    changed = population.scenarios["nurse_employer_changed"]
    for idn, n in regs.nurses.items():
        employer = population.social_security[idn].spells[-1].employer
        assert "医院" in n.employer
        assert (n.employer == employer) == (idn != changed)
        assert n.registered_on < n.valid_until
    due = regs.nurses[population.scenarios["nurse_renewal_due"]]
    assert (due.valid_until - TODAY).days == 20
    assert due.status == "有效"
    # the window follows the simulators' today, nothing else does
    later = registers(population, TODAY + timedelta(days=100))
    assert later.nurses[due.id_number].valid_until == due.valid_until + timedelta(days=100)
    assert later.marriages == regs.marriages
    assert later.licences == regs.licences


def test_licences_are_valid_codes_of_real_operators(
    population: Population, regs: Registers
) -> None:
    assert set(regs.organisations) == {
        "restaurant_sole_trader",
        "restaurant_company",
        "revoked_company",
    }
    for code, lic in regs.licences.items():
        assert is_credit_code(code), code
        assert is_sole_trader(code) == (lic.kind == "个体工商户")
        assert population.people[lic.representative_id].name == lic.representative_name
    owner = population.scenarios["business_owner"]
    assert {lic.credit_code for lic in regs.licences_of(owner)} == {
        regs.organisations["restaurant_sole_trader"],
        regs.organisations["restaurant_company"],
    }
    assert all("餐饮服务" in lic.scope for lic in regs.licences_of(owner))
    assert regs.licences[regs.organisations["revoked_company"]].status == "吊销"


def test_medical_insurance_follows_social_security(population: Population, regs: Registers) -> None:
    for idn, enrolment in regs.medical.items():
        account = population.social_security.get(idn)
        codes = {t for s in account.spells for t in s.types} if account else set()
        if "310" in codes:
            assert enrolment.scheme == "310"
        elif "390" in codes:
            assert enrolment.scheme == "390"
        else:
            assert enrolment.scheme == "390"
            assert population.people[idn].status == "正常"
    assert regs.medical[population.scenarios["insured"]].status == "1"
    assert population.scenarios["unknown"] not in regs.medical


def test_disability_certificates(population: Population, regs: Registers) -> None:
    farmer = regs.disability[population.scenarios["disabled"]]
    assert (farmer.category, farmer.grade) == ("4", "2")
    assert farmer.certificate_number == farmer.id_number + "42"
    for idn, c in regs.disability.items():
        assert population.people[idn].name == c.name
        assert c.category in "1234567"
        assert c.grade in "1234"


def test_deterministic_and_independent_of_the_population_size() -> None:
    small, large = datagen._Builder(5).build(300), datagen._Builder(5).build(900)
    a, b = registers(small, TODAY), registers(large, TODAY)
    again = registers(datagen._Builder(5).build(300), TODAY)
    assert (a.marriages, a.nurses, a.licences, a.medical, a.disability) == (
        again.marriages,
        again.nurses,
        again.licences,
        again.medical,
        again.disability,
    )
    # a person of both populations has the same records in both
    for idn in small.people:
        assert a.nurses.get(idn) == b.nurses.get(idn)
        assert a.medical.get(idn) == b.medical.get(idn)
        assert a.disability.get(idn) == b.disability.get(idn)
