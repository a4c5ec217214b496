"""A deterministic synthetic population for the embedded departments.

`generate(seed, size)` builds the same citizens every time for the same arguments: households
with members and relations, social-security enrolment spells and real-estate holdings, with
GB 11643-1999 ID numbers, real birth dates and Fujian region codes. It uses one
`random.Random(seed)` and no global state.

Some citizens are edge cases on purpose; `Population.scenarios` names them (name → ID number)
so the demo and the tests can ask for "a person with a seized property" without searching.
Monthly contribution rows are not stored: they follow from the enrolment spells and are derived
on demand (`SocialSecurityAccount.contributions`), which keeps generation well under a second.

All data is invented. Any resemblance of a generated ID number to a real person's is chance.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import lru_cache

from adapters.simulators.fujian import (
    EMPLOYEE_TYPES,
    FEMALE_CHARS,
    ID_REGIONS,
    MALE_CHARS,
    REGIONS,
    RESIDENCE_WEIGHTS,
    RESIDENT_PAYER,
    RESIDENT_TYPES,
    SHE_SURNAMES,
    SURNAMES,
    Region,
)
from adapters.simulators.population import (
    FIRST_MONTH,
    REFERENCE_DATE,
    REFERENCE_MONTH,
    ContributionRow,
    Household,
    InsuranceSummary,
    Ownership,
    Person,
    Population,
    Property,
    SocialSecurityAccount,
    Spell,
    check_character,
    is_valid_id_number,
    make_id_number,
    month_index,
    month_text,
)

SCENARIO_NAMES = (
    "no_property",
    "several_properties",
    "mortgaged_property",
    "seized_property",
    "moved_out",
    "deceased",
    "broken_contributions",
    "household_only",
    "unknown",
    "household_head",
    "household_child",
    "long_contributor",
    "pensioner_quangang",
    # the departments added by catalogue file (datagen.registers); each names a person above,
    # so the typed RPCs' replay set (tests/support/replay.py) stays as it was recorded
    "nurse_renewal_due",
    "nurse_employer_changed",
    "married",
    "divorced",
    "business_owner",
    "insured",
    "disabled",
)


def generate(seed: int = 20261121, size: int = 2000) -> Population:
    """The population for `seed`: the scripted edge cases first, then random households until
    there are at least `size` people. Same arguments, same population."""
    return _cached(seed, size)


@lru_cache(maxsize=8)
def _cached(seed: int, size: int) -> Population:
    return _Builder(seed).build(size)


# ---- the generator -----------------------------------------------------------------------


@dataclass
class _Member:
    relation: str
    gender: str
    birth: date
    status: str = "正常"


class _Builder:
    def __init__(self, seed: int) -> None:
        self.seed = seed
        # Synthetic data, not secrets: a seeded, reproducible PRNG is the point.
        self.rng = random.Random(seed)  # noqa: S311
        self.people: dict[str, Person] = {}
        self.households: dict[str, Household] = {}
        self.accounts: dict[str, SocialSecurityAccount] = {}
        self.properties: list[Property] = []
        self.scenarios: dict[str, str] = {}
        self._household_seq: dict[str, int] = {}
        self._property_seq = 0

    # -- building blocks

    def _birth(self, year: int) -> date:
        born = date(year, 1, 1) + timedelta(days=self.rng.randrange(365))
        return min(born, REFERENCE_DATE - timedelta(days=1))  # nobody is born after "today"

    def _id(self, region: str, birth: date, gender: str) -> str:
        while True:
            seq = self.rng.randrange(1000)
            if (seq % 2 == 1) != (gender == "1"):
                seq = (seq + 1) % 1000
            id_number = make_id_number(region, birth, seq)
            if id_number not in self.people:
                return id_number

    def _given(self, gender: str) -> str:
        chars = MALE_CHARS if gender == "1" else FEMALE_CHARS
        return "".join(self.rng.choice(chars) for _ in range(self.rng.choice((1, 2, 2))))

    def _updated(self) -> datetime:
        start = datetime(2024, 1, 1, 8, 0, 0)
        return start + timedelta(seconds=self.rng.randrange(2 * 365 * 86400 + 300 * 86400))

    def _address(self, region: Region) -> str:
        street = self.rng.choice(region.streets)
        return f"{region.address_prefix}{street}{self.rng.randrange(1, 300)}号"

    def household(
        self,
        region_code: str,
        members: list[_Member],
        *,
        she: bool | None = None,
    ) -> list[str]:
        """Register a household; returns the member IDs in the order given (head first)."""
        region = REGIONS[region_code]
        seq = self._household_seq.get(region_code, 0) + 1
        self._household_seq[region_code] = seq
        number = f"{region_code}{seq:06d}"
        if she is None:
            she = self.rng.random() < region.she_share
        surnames = SHE_SURNAMES if she else SURNAMES
        family = self.rng.choice(surnames)
        ids: list[str] = []
        for m in members:
            # Children and grandchildren carry the head's surname; spouses and in-laws their own.
            blood = m.relation in ("户主", "子", "女", "父亲", "孙子", "孙女")
            surname = family if blood else self.rng.choice(surnames)
            id_region = region_code if self.rng.random() < 0.8 else self.rng.choice(ID_REGIONS)
            id_number = self._id(id_region, m.birth, m.gender)
            ethnicity = "畲族" if she and (blood or self.rng.random() < 0.5) else "汉族"
            self.people[id_number] = Person(
                id_number=id_number,
                name=surname + self._given(m.gender),
                gender=m.gender,
                ethnicity=ethnicity,
                birth_date=m.birth,
                household_number=number,
                relation=m.relation,
                status=m.status,
                updated_at=self._updated(),
            )
            ids.append(id_number)
        station = self.rng.choice(region.stations)
        self.households[number] = Household(
            number=number,
            region_code=region_code,
            address=self._address(region),
            authority=f"{region.police}{station}派出所",
            member_ids=tuple(ids),
        )
        return ids

    def account(
        self,
        id_number: str,
        spells: list[tuple[int, int, str, str]],
        *,
        resident: bool = False,
        retired: bool = False,
        base_cents: int | None = None,
    ) -> None:
        """`spells` are (start, end, employer, region) in month indexes."""
        types = RESIDENT_TYPES if resident else EMPLOYEE_TYPES
        out: list[Spell] = []
        for start, end, employer, region in spells:
            base = base_cents or self.rng.randrange(3000, 12000) * 100
            if resident:
                base = 10000 * self.rng.choice((1, 2, 3, 5))  # 缴费档次, yuan 100..500
            out.append(Spell(employer, region, start, end, base, types))
        person = self.people[id_number]
        self.accounts[id_number] = SocialSecurityAccount(
            id_number, person.name, tuple(out), retired, self._updated()
        )

    def property(
        self,
        region_code: str,
        owners: list[tuple[str, str, str]],
        *,
        usage: str = "住宅",
        mortgaged: bool = False,
        seized: bool = False,
        current: bool = True,
    ) -> None:
        """`owners` are (id_number, GYFS, FE)."""
        region = REGIONS[region_code]
        self._property_seq += 1
        seq = self._property_seq
        year = self.rng.randrange(
            2016, REFERENCE_DATE.year + 1
        )  # unified real-estate certificates began in 2015
        registered = datetime(year, 1, 1, 9, 0) + timedelta(
            days=self.rng.randrange(300), seconds=self.rng.randrange(8 * 3600)
        )
        estate = self.rng.choice(region.estates)
        street = self.rng.choice(region.streets)
        if usage == "车位":
            room = f"地下车位{self.rng.randrange(1, 400):03d}号"
            area = Decimal(self.rng.randrange(1200, 1600)) / 100
        else:
            building, floor = self.rng.randrange(1, 30), self.rng.randrange(2, 33)
            room = f"{building}幢{floor}{self.rng.randrange(1, 5):02d}室"
            area = Decimal(self.rng.randrange(4000, 20000)) / 100
        self.properties.append(
            Property(
                unit_number=f"{region_code}{seq:06d}GB{seq % 100000:05d}F{seq % 10000:04d}0001",
                certificate_number=(
                    f"闽({year}){region.short}不动产权第{seq * 7919 % 10_000_000:07d}号"
                ),
                location=f"{region.address_prefix}{street}{estate}{room}",
                region_code=region_code,
                area=area,
                usage=usage,
                registered_at=registered,
                mortgaged=mortgaged,
                seized=seized,
                current=current,
                owners=tuple(Ownership(i, self.people[i].name, gyfs, fe) for i, gyfs, fe in owners),
                updated_at=max(registered, self._updated()),
            )
        )

    # -- whole population

    def build(self, size: int) -> Population:
        self._scripted()
        while len(self.people) < size:
            self._random_household()
        self.scenarios["unknown"] = self._unknown_id()
        assert set(self.scenarios) == set(SCENARIO_NAMES)
        return Population(
            seed=self.seed,
            people=self.people,
            households=self.households,
            social_security=self.accounts,
            properties=tuple(self.properties),
            scenarios=self.scenarios,
        )

    def _unknown_id(self) -> str:
        while True:
            region = self.rng.choice(ID_REGIONS)
            gender = self.rng.choice("12")
            candidate = self._id(region, self._birth(self.rng.randrange(1950, 2005)), gender)
            if candidate not in self.people:
                return candidate

    def _employee(
        self,
        id_number: str,
        region: str,
        start: int,
        *,
        end: int = REFERENCE_MONTH,
        employer: str | None = None,
        retired: bool = False,
    ) -> None:
        employer = employer or self.rng.choice(REGIONS[region].employers)
        self.account(id_number, [(max(start, FIRST_MONTH), end, employer, region)], retired=retired)

    def _scripted(self) -> None:
        m = month_index
        # A Quangang family: the head works at the petrochemical plant; a student son (kinship).
        head, spouse, son, _daughter, _mother = self.household(
            "350505",
            [
                _Member("户主", "1", self._birth(1976)),
                _Member("配偶", "2", self._birth(1978)),
                _Member("子", "1", self._birth(2005)),
                _Member("女", "2", self._birth(2010)),
                _Member("母亲", "2", self._birth(1950)),
            ],
            she=False,
        )
        self.scenarios["household_head"] = head
        self.scenarios["household_child"] = son
        self.scenarios["married"] = head  # to the spouse above (民政 婚姻登记)
        self.scenarios["insured"] = head  # employee medical insurance at the plant
        self._employee(head, "350505", m(2001, 7), employer="福建省泉港石化有限公司")
        self._employee(spouse, "350505", m(2004, 3))
        self.account(son, [(m(2024, 1), REFERENCE_MONTH, RESIDENT_PAYER, "350505")], resident=True)
        self.property("350505", [(head, "共同共有", ""), (spouse, "共同共有", "")])

        # A Quangang pensioner: 1990s plant worker, retired at 60 in 2018.
        (pensioner, p_spouse) = self.household(
            "350505",
            [_Member("户主", "1", date(1958, 2, 14)), _Member("配偶", "2", self._birth(1961))],
        )
        self.scenarios["pensioner_quangang"] = pensioner
        self.account(
            pensioner,
            [
                (FIRST_MONTH, m(2006, 12), "泉港区山腰盐场", "350505"),
                (m(2007, 1), m(2018, 2), "福建省泉港石化有限公司", "350505"),
            ],
            retired=True,
        )
        self.property("350505", [(pensioner, "共同共有", ""), (p_spouse, "共同共有", "")])

        # A She family in Fu'an: the head has contributed since 2003 (long contributor).
        (long_, _wife) = self.household(
            "350981",
            [_Member("户主", "1", self._birth(1972)), _Member("配偶", "2", self._birth(1974))],
            she=True,
        )
        self.scenarios["long_contributor"] = long_
        self._employee(long_, "350981", m(2003, 5), employer="福建福安闽东亚南电机有限公司")

        # A young nurse in Jiaocheng who owns nothing (the no-property certificate).
        (nurse,) = self.household("350902", [_Member("户主", "2", self._birth(1996))])
        self.scenarios["no_property"] = nurse
        self.scenarios["nurse_renewal_due"] = nurse  # her registration ends in 20 days
        self._employee(nurse, "350902", m(2019, 8), employer="宁德市蕉城区医院")

        # A Huli landlord with three current properties and one sold long ago.
        (landlord, l_spouse) = self.household(
            "350206",
            [_Member("户主", "1", self._birth(1968)), _Member("配偶", "2", self._birth(1970))],
        )
        self.scenarios["several_properties"] = landlord
        self.scenarios["business_owner"] = landlord  # runs a snack bar and a catering company
        self._employee(landlord, "350206", m(1998, 3))
        self.property("350206", [(landlord, "单独所有", "")])
        self.property("350206", [(landlord, "按份共有", "60%")], usage="商业")
        self.property("350505", [(landlord, "共同共有", ""), (l_spouse, "共同共有", "")])
        self.property("350206", [(landlord, "单独所有", "")], usage="车位")
        self.property("350206", [(landlord, "单独所有", "")], current=False)

        # Gulou: a young couple with a mortgage.
        (borrower, b_spouse) = self.household(
            "350102",
            [_Member("户主", "1", self._birth(1987)), _Member("配偶", "2", self._birth(1988))],
        )
        self.scenarios["mortgaged_property"] = borrower
        self._employee(borrower, "350102", m(2010, 9))
        self._employee(b_spouse, "350102", m(2011, 2))
        self.property(
            "350102", [(borrower, "按份共有", "1/2"), (b_spouse, "按份共有", "1/2")], mortgaged=True
        )

        # Nan'an: a stone-trade owner whose workshop flat a court has seized.
        (debtor,) = self.household("350583", [_Member("户主", "1", self._birth(1970))])
        self.scenarios["seized_property"] = debtor
        self._employee(debtor, "350583", m(2000, 1), end=m(2019, 6))
        self.property("350583", [(debtor, "单独所有", "")], mortgaged=True, seized=True)
        self.property("350583", [(debtor, "单独所有", "")], usage="工业")

        # Licheng: a daughter who moved her registration away (迁出).
        (_father, _m2, moved) = self.household(
            "350304",
            [
                _Member("户主", "1", self._birth(1962)),
                _Member("配偶", "2", self._birth(1964)),
                _Member("女", "2", self._birth(1991), status="迁出"),
            ],
        )
        self.scenarios["moved_out"] = moved

        # Fu'an: a grandfather who has died (死亡), still listed with his son's household.
        (_son2, _dil, deceased) = self.household(
            "350981",
            [
                _Member("户主", "1", self._birth(1965)),
                _Member("配偶", "2", self._birth(1967)),
                _Member("父亲", "1", self._birth(1936), status="死亡"),
            ],
        )
        self.scenarios["deceased"] = deceased
        self.account(
            deceased, [(FIRST_MONTH, m(1996, 1), "福安市电机电器有限公司", "350981")], retired=True
        )

        # Quangang: a contract worker with two gaps in the contribution history.
        (broken,) = self.household("350505", [_Member("户主", "1", self._birth(1981))])
        self.scenarios["broken_contributions"] = broken
        # once a nurse at the district hospital, registered there still; divorced since 2018
        self.scenarios["nurse_employer_changed"] = broken
        self.scenarios["divorced"] = broken
        self.account(
            broken,
            [
                (m(2003, 7), m(2009, 12), "福建联合石油化工有限公司", "350505"),
                (m(2013, 4), m(2016, 8), "泉州市泉港区医院", "350505"),
                (m(2019, 1), REFERENCE_MONTH, "福建省泉港石化有限公司", "350505"),
            ],
        )

        # Jiaocheng: a farmer the social-security bureau has never enrolled.
        (farmer,) = self.household("350902", [_Member("户主", "1", self._birth(1988))])
        self.scenarios["household_only"] = farmer
        self.scenarios["disabled"] = farmer  # physical disability, grade 2 (残疾人证)

    def _random_household(self) -> None:
        rng = self.rng
        region = rng.choices(list(RESIDENCE_WEIGHTS), weights=list(RESIDENCE_WEIGHTS.values()))[0]
        head_year = rng.randrange(1945, 2001)
        head_gender = "1" if rng.random() < 0.7 else "2"
        members = [_Member("户主", head_gender, self._birth(head_year))]
        shape = rng.random()
        if shape > 0.15:  # not single
            members.append(
                _Member(
                    "配偶",
                    "2" if head_gender == "1" else "1",
                    self._birth(head_year + rng.randrange(-4, 6)),
                )
            )
        if shape > 0.3:
            for _ in range(rng.choice((1, 1, 2, 2, 3))):
                year = head_year + rng.randrange(22, 38)
                if year > REFERENCE_DATE.year:
                    break
                gender = rng.choice("12")
                members.append(_Member("子" if gender == "1" else "女", gender, self._birth(year)))
        if shape > 0.8 and head_year > 1965 and len(members) < 6:
            members.append(_Member(rng.choice(("父亲", "母亲")), "1", self._birth(head_year - 28)))
            if members[-1].relation == "母亲":
                members[-1].gender = "2"
        if shape > 0.9 and head_year < 1965:
            for _ in range(rng.choice((1, 2))):
                if len(members) >= 6:
                    break
                gender = rng.choice("12")
                rel = "孙子" if gender == "1" else "孙女"
                members.append(_Member(rel, gender, self._birth(min(head_year + 55, 2023))))
        for mem in members[:6]:
            age = REFERENCE_DATE.year - mem.birth.year
            roll = rng.random()
            if age > 75 and roll < 0.08:
                mem.status = "死亡"
            elif mem.relation in ("子", "女") and age > 18 and roll < 0.06:
                mem.status = "迁出"
        ids = self.household(region, members[:6])
        for id_number in ids:
            self._random_social_security(id_number, region)
        self._random_properties(ids, region)

    def _random_social_security(self, id_number: str, region: str) -> None:
        rng = self.rng
        person = self.people[id_number]
        age = REFERENCE_DATE.year - person.birth_date.year
        if age < 18 or rng.random() < 0.12:
            return
        retire_age = 60 if person.gender == "1" else 55
        start_year = person.birth_date.year + rng.randrange(20, 27)
        start = max(FIRST_MONTH, month_index(start_year, rng.randrange(1, 13)))
        if start > REFERENCE_MONTH:
            return
        if rng.random() < 0.25:  # urban-rural resident scheme, paid by the person
            self.account(
                id_number, [(start, REFERENCE_MONTH, RESIDENT_PAYER, region)], resident=True
            )
            return
        retired = age >= retire_age
        end = (
            month_index(person.birth_date.year + retire_age, person.birth_date.month) - 1
            if retired
            else REFERENCE_MONTH
        )
        if person.status == "死亡":
            end = min(end, month_index(2020, 1))
            retired = True
        if end < start:
            return
        spells: list[tuple[int, int, str, str]] = []
        cursor = start
        while cursor <= end:
            length = rng.randrange(12, 120)
            stop = min(end, cursor + length - 1)
            spell_region = region if rng.random() < 0.8 else rng.choice(list(REGIONS))
            spells.append((cursor, stop, rng.choice(REGIONS[spell_region].employers), spell_region))
            cursor = stop + 1 + (rng.randrange(1, 24) if rng.random() < 0.2 else 0)
        if not retired and rng.random() < 0.1:  # left work recently: suspended
            last = spells[-1]
            cut = max(last[0], last[1] - rng.randrange(1, 12))
            spells[-1] = (last[0], cut, last[2], last[3])
        self.account(id_number, spells, retired=retired)

    def _random_properties(self, ids: list[str], region: str) -> None:
        rng = self.rng
        adults = [
            i
            for i in ids
            if REFERENCE_DATE.year - self.people[i].birth_date.year >= 22
            and self.people[i].status == "正常"
        ]
        if not adults or rng.random() < 0.35:
            return
        head = ids[0]
        spouse = next((i for i in ids if self.people[i].relation == "配偶"), None)
        owners: list[tuple[str, str, str]]
        if spouse and self.people[head].status == "正常" and self.people[spouse].status == "正常":
            owners = [(head, "共同共有", ""), (spouse, "共同共有", "")]
        else:
            owners = [(adults[0], "单独所有", "")]
        self.property(region, owners, mortgaged=rng.random() < 0.3, seized=rng.random() < 0.02)
        if rng.random() < 0.15:
            self.property(region, [(adults[0], "单独所有", "")], usage=rng.choice(("车位", "商业")))
        if len(adults) > 2 and rng.random() < 0.3:
            self.property(region, [(adults[-1], "单独所有", "")], mortgaged=rng.random() < 0.5)


__all__ = [
    "REFERENCE_DATE",
    "SCENARIO_NAMES",
    "ContributionRow",
    "Household",
    "InsuranceSummary",
    "Ownership",
    "Person",
    "Population",
    "Property",
    "SocialSecurityAccount",
    "Spell",
    "check_character",
    "generate",
    "is_valid_id_number",
    "make_id_number",
    "month_index",
    "month_text",
]
