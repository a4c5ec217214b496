"""The synthetic population: valid IDs, determinism, and every named scenario as named."""

from __future__ import annotations

import itertools
from datetime import date

import pytest

from adapters.simulators import datagen
from adapters.simulators.datagen import Population, check_character, generate, is_valid_id_number
from adapters.simulators.fujian import ID_REGIONS, REGIONS
from gateway.catalogue import converters
from tests.support.rules import catalogue


def codes(evidence: str, field: str, sub: str = "") -> frozenset[str]:
    """The department codes the catalogue's code table for `field` knows."""
    spec = catalogue().evidence[evidence].field(sub or field)
    if sub:
        assert spec is not None
        assert spec.record is not None
        spec = spec.record.field(field)
    assert spec is not None
    assert spec.enum is not None
    return frozenset(spec.enum.codes)


@pytest.fixture(scope="module")
def population() -> Population:
    return generate(20261121, 2000)


def test_check_character_matches_the_standard_example() -> None:
    # GB 11643-1999 worked example: 11010519491231002X.
    assert check_character("11010519491231002") == "X"
    assert is_valid_id_number("11010519491231002X")
    assert not is_valid_id_number("110105194912310021")
    assert not is_valid_id_number("11010519490231002X")  # no 31 February… nor 02-31


def test_every_id_is_valid_unique_and_consistent(population: Population) -> None:
    assert len(population.people) >= 2000
    for id_number, person in population.people.items():
        assert person.id_number == id_number
        assert is_valid_id_number(id_number), id_number
        assert id_number[:6] in ID_REGIONS
        assert id_number[6:14] == f"{person.birth_date:%Y%m%d}"
        assert int(id_number[16]) % 2 == (1 if person.gender == "1" else 0)
        assert person.birth_date <= datagen.REFERENCE_DATE


def test_generation_is_deterministic_and_seeded() -> None:
    # Bypass the cache: two independent builds must agree.
    a = datagen._Builder(7).build(300)
    b = datagen._Builder(7).build(300)
    c = datagen._Builder(8).build(300)
    assert a.people == b.people
    assert a.properties == b.properties
    assert a.social_security == b.social_security
    assert a.scenarios == b.scenarios
    assert set(a.people) != set(c.people)


def test_small_populations_still_hold_every_scenario() -> None:
    small = datagen._Builder(1).build(10)
    assert set(small.scenarios) == set(datagen.SCENARIO_NAMES)


def test_households_are_well_formed(population: Population) -> None:
    for household in population.households.values():
        assert 1 <= len(household.member_ids) <= 6
        relations = [population.people[i].relation for i in household.member_ids]
        assert relations[0] == "户主"
        assert relations.count("户主") == 1
        assert household.region_code in REGIONS
        assert household.address.startswith(REGIONS[household.region_code].address_prefix)
        assert household.authority.endswith("派出所")
        for i in household.member_ids:
            person = population.people[i]
            assert person.household_number == household.number
            # Every value the registry sends must be one the catalogue's code tables know.
            assert person.relation in codes("household", "relation_to_head")
            assert person.status in codes("household", "status")
            assert person.gender in codes("household", "gender")


def test_population_has_she_people_in_ningde(population: Population) -> None:
    she = [p for p in population.people.values() if p.ethnicity == "畲族"]
    assert she
    assert {population.household_of(p.id_number).region_code for p in she} <= {"350981", "350902"}


def test_social_security_is_consistent(population: Population) -> None:
    for n, account in enumerate(population.social_security.values()):
        assert account.id_number in population.people
        spells = account.spells
        for earlier, later in itertools.pairwise(spells):
            assert earlier.end < later.start
        for summary in account.insurances():
            assert summary.type_code in codes("social_security", "type", "insurances")
            assert summary.status in codes("social_security", "status", "insurances")
            assert summary.total_months == account.total_months(summary.type_code)
        if n % 10:
            continue  # materialising every row of 1,500 careers is slow; a tenth will do
        rows = account.contributions()
        assert len(rows) == sum((s.end - s.start + 1) * len(s.types) for s in spells)
        assert [r.month for r in rows] == sorted(r.month for r in rows)
        assert {r.type_code for r in rows} <= codes("social_security", "type", "history")
        months = account.months()
        middle = account.contributions(months[len(months) // 3], months[2 * len(months) // 3])
        assert middle == [
            r for r in rows if months[len(months) // 3] <= r.month <= months[2 * len(months) // 3]
        ]


def test_property_values_are_readable(population: Population) -> None:
    for prop in population.properties:
        assert prop.usage in codes("property", "usage")
        assert prop.certificate_number.startswith("闽(")
        assert prop.certificate_number.endswith("号")
        for owner in prop.owners:
            assert owner.co_ownership in codes("property", "co_ownership")
            assert 0 < converters.share(owner.co_ownership, owner.share) <= 1


# ---- the named scenarios ------------------------------------------------------------------


def test_every_scenario_is_present(population: Population) -> None:
    assert set(population.scenarios) == set(datagen.SCENARIO_NAMES)
    for name, id_number in population.scenarios.items():
        assert is_valid_id_number(id_number), name
        assert (id_number in population.people) == (name != "unknown"), name


def test_property_scenarios(population: Population) -> None:
    s = population.scenarios
    assert population.properties_of(s["no_property"]) == []
    assert s["no_property"] in population.social_security
    assert len(population.properties_of(s["several_properties"])) >= 2
    # …and the sold one is on record but not current.
    assert len(population.properties_of(s["several_properties"], include_ended=True)) > len(
        population.properties_of(s["several_properties"])
    )
    assert any(p.mortgaged for p in population.properties_of(s["mortgaged_property"]))
    assert not any(p.seized for p in population.properties_of(s["mortgaged_property"]))
    assert any(p.seized for p in population.properties_of(s["seized_property"]))


def test_household_status_scenarios(population: Population) -> None:
    s = population.scenarios
    assert population.people[s["moved_out"]].status == "迁出"
    assert population.people[s["deceased"]].status == "死亡"
    head, child = population.people[s["household_head"]], population.people[s["household_child"]]
    assert head.household_number == child.household_number
    assert head.relation == "户主"
    assert child.relation in ("子", "女")
    assert child.status == head.status == "正常"


def test_social_security_scenarios(population: Population) -> None:
    s = population.scenarios
    assert s["household_only"] in population.people
    assert s["household_only"] not in population.social_security
    unknown = s["unknown"]
    assert unknown not in population.social_security
    assert population.properties_of(unknown, include_ended=True) == []

    long_ = population.social_security[s["long_contributor"]]
    assert long_.total_months("110") >= 180

    months = population.social_security[s["broken_contributions"]].months()
    assert any(b - a > 1 for a, b in itertools.pairwise(months))

    pensioner = population.people[s["pensioner_quangang"]]
    account = population.social_security[pensioner.id_number]
    assert population.household_of(pensioner.id_number).region_code == "350505"
    assert account.retired
    assert account.total_months("110") >= 180
    assert {sp.region_code for sp in account.spells} == {"350505"}
    assert datagen.REFERENCE_DATE.year - pensioner.birth_date.year >= 60
    assert pensioner.birth_date > date(1900, 1, 1)
