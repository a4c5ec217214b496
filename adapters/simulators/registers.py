"""The registers of the five departments added by catalogue file, built from the population.

    registers(population, today) -> Registers

- civil affairs (民政 婚姻登记): every couple registered in one household married (husband
  and wife are both people of the population), some marriage certificates reissued (补发),
  and one scripted divorce between two people of different households;
- health commission (卫健 护士执业注册): practising registrations for nurses whose current
  social-security employer is a hospital, at that hospital, so the registration's employer
  matches the enrolment; scripted: one due for renewal in 20 days, one still registered at a
  hospital she has left;
- market regulation (市场监管 营业执照): sole traders (个体工商户, credit code type 92) run by
  heads of household and, scripted, a snack bar and a catering company of the same owner and
  a revoked stone company;
- medical insurance (医保 参保): derived from the social-security enrolment (employee
  medical insurance, 310) or the resident scheme (390), most other living people in the
  resident scheme;
- disabled persons' federation (残联 残疾人证): a few percent of the living, scripted: the
  farmer the social-security bureau never enrolled.

Deterministic: each record comes from a generator seeded by (population seed, register,
person), never from the population's own generator, so the population stays exactly what it
was, and a person's records do not depend on the population's size. Validity windows
(practising registrations, disability certificates) are placed relative to `today`, so a
registration due for renewal in 20 days is due whenever the simulators run; every other date
is fixed by the seed.
"""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta

from adapters.simulators.fujian import REGIONS
from adapters.simulators.population import (
    REFERENCE_DATE,
    REFERENCE_MONTH,
    BusinessLicence,
    DisabilityCertificate,
    MarriageRegistration,
    MedicalEnrolment,
    NurseRegistration,
    Person,
    Population,
    Registers,
)
from gateway.domain.creditcode import ALPHABET, check_character, organisation_check_character

MEDICAL_EMPLOYEE, MEDICAL_RESIDENT = "310", "390"
NURSE_TERM_YEARS = 5  # 护士执业注册 is valid for five years
DISABILITY_TERM_YEARS = 10  # a second-generation 残疾人证 is valid for ten years
RENEWAL_DUE_IN_DAYS = 20
_SHOPS = (
    ("沙茶面店", "餐饮服务；小吃服务；预包装食品销售（不含冷藏冷冻食品）"),
    ("小吃店", "餐饮服务；小吃服务"),
    ("便利店", "日用百货销售；预包装食品销售（不含冷藏冷冻食品）；烟草制品零售"),
    ("茶叶店", "茶叶及制品销售；预包装食品销售（不含冷藏冷冻食品）"),
    ("五金店", "五金产品零售；建筑材料销售"),
    ("服装店", "服装服饰零售；鞋帽零售"),
)
_ORG_BODY = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # GB 11714 characters a credit code allows


def _rng(population: Population, register: str, key: str) -> random.Random:
    # Synthetic data, not secrets: a seeded, reproducible PRNG per record is the point.
    return random.Random(f"{population.seed}/{register}/{key}")  # noqa: S311


def years_after(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February in a year without one
        return day.replace(year=day.year + years, day=28)


def _moment(day: date, rng: random.Random) -> datetime:
    return datetime(day.year, day.month, day.day, 9, 0) + timedelta(seconds=rng.randrange(8 * 3600))


def civil_affairs_bureau(region_code: str) -> str:
    """泉州市泉港区民政局: the registration authority of a county."""
    return REGIONS[region_code].address_prefix.removeprefix("福建省") + "民政局"


def market_bureau(region_code: str) -> str:
    return REGIONS[region_code].address_prefix.removeprefix("福建省") + "市场监督管理局"


def make_credit_code(kind: str, region_code: str, rng: random.Random) -> str:
    """A valid unified social credit code (GB 32100-2015): registered by market regulation
    (9), `kind` 1 for a company or 2 for a sole trader, a new-style organisation code (MA…)."""
    body = "MA" + "".join(rng.choice(_ORG_BODY) for _ in range(6))
    first17 = "9" + kind + region_code + body + organisation_check_character(body)
    assert all(c in ALPHABET for c in first17)
    return first17 + check_character(first17)


_CACHE: dict[tuple[int, date], tuple[Population, Registers]] = {}


def registers(population: Population, today: date) -> Registers:
    """The five registers for `population`, validity windows anchored at `today`. Cached
    per population object: the simulators and the tests that check them ask for the same."""
    key = (id(population), today)
    hit = _CACHE.get(key)
    if hit is not None and hit[0] is population:
        return hit[1]
    built = _Registrar(population, today).build()
    if len(_CACHE) >= 8:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[key] = (population, built)
    return built


class _Registrar:
    def __init__(self, population: Population, today: date) -> None:
        self.p = population
        self.today = today
        self.marriages: dict[str, list[MarriageRegistration]] = {}
        self.nurses: dict[str, NurseRegistration] = {}
        self.licences: dict[str, BusinessLicence] = {}
        self.medical: dict[str, MedicalEnrolment] = {}
        self.disability: dict[str, DisabilityCertificate] = {}
        self.organisations: dict[str, str] = {}

    def build(self) -> Registers:
        self._marriages()
        self._nurses()
        self._licences()
        self._medical()
        self._disability()
        return Registers(
            today=self.today,
            marriages={k: tuple(v) for k, v in self.marriages.items()},
            nurses=self.nurses,
            licences=self.licences,
            medical=self.medical,
            disability=self.disability,
            organisations=self.organisations,
        )

    def _age(self, person: Person) -> int:
        return REFERENCE_DATE.year - person.birth_date.year

    # -- civil affairs

    def _register(
        self,
        *,
        kind: str,
        husband: Person,
        wife: Person,
        day: date,
        region_code: str,
        rng: random.Random,
    ) -> None:
        prefix = {"结婚": "J", "离婚": "L", "补发": "BJ"}[kind]
        record = MarriageRegistration(
            kind=kind,
            husband_id=husband.id_number,
            husband_name=husband.name,
            wife_id=wife.id_number,
            wife_name=wife.name,
            registered_on=day,
            certificate_number=f"{prefix}{region_code}-{day.year}-{rng.randrange(1, 10**6):06d}",
            authority=civil_affairs_bureau(region_code),
            updated_at=_moment(day, rng),
        )
        for idn in (husband.id_number, wife.id_number):
            self.marriages.setdefault(idn, []).append(record)

    def _marriages(self) -> None:
        people = self.p.people
        for household in self.p.households.values():
            members = [people[i] for i in household.member_ids]
            spouse = next((m for m in members if m.relation == "配偶"), None)
            if spouse is None:
                continue
            head = members[0]
            husband, wife = (head, spouse) if head.gender == "1" else (spouse, head)
            rng = _rng(self.p, "marriage", husband.id_number)
            earliest = max(years_after(husband.birth_date, 22), years_after(wife.birth_date, 20))
            day = min(
                earliest + timedelta(days=rng.randrange(8 * 365)),
                REFERENCE_DATE - timedelta(days=1),
            )
            self._register(
                kind="结婚",
                husband=husband,
                wife=wife,
                day=day,
                region_code=household.region_code,
                rng=rng,
            )
            if rng.random() < 0.05 and day < REFERENCE_DATE - timedelta(days=400):
                again = day + timedelta(days=rng.randrange(365, (REFERENCE_DATE - day).days))
                self._register(
                    kind="补发",
                    husband=husband,
                    wife=wife,
                    day=again,
                    region_code=household.region_code,
                    rng=rng,
                )
        # Scripted: married in Licheng in 2012, divorced in Quangang in 2018; she has since
        # moved her household registration away, he lives alone.
        s = self.p.scenarios
        husband, wife = people[s["divorced"]], people[s["moved_out"]]
        rng = _rng(self.p, "marriage", husband.id_number)
        for kind, day, region in (
            ("结婚", date(2012, 5, 20), "350304"),
            ("离婚", date(2018, 9, 12), "350505"),
        ):
            self._register(
                kind=kind, husband=husband, wife=wife, day=day, region_code=region, rng=rng
            )

    # -- health commission

    def _nurse(
        self,
        person: Person,
        employer: str,
        region_code: str,
        valid_until: date,
        rng: random.Random,
        *,
        status: str = "有效",
        category: str = "护理",
    ) -> None:
        registered = years_after(valid_until, -NURSE_TERM_YEARS) + timedelta(days=1)
        first = registered.year - NURSE_TERM_YEARS * rng.randrange(0, 3)
        self.nurses[person.id_number] = NurseRegistration(
            certificate_number=f"{first}{region_code[:2]}{rng.randrange(10**6):06d}",
            id_number=person.id_number,
            name=person.name,
            employer=employer,
            region_code=region_code,
            category=category,
            registered_on=registered,
            valid_until=valid_until,
            status=status,
            updated_at=_moment(min(registered, self.today), rng),
        )

    def _nurses(self) -> None:
        s, people = self.p.scenarios, self.p.people
        for idn, account in self.p.social_security.items():
            person = people[idn]
            last = account.spells[-1]
            active = not account.retired and last.end == REFERENCE_MONTH
            if (
                idn in (s["nurse_renewal_due"], s["nurse_employer_changed"])
                or not active
                or "医院" not in last.employer
                or person.status == "死亡"
                or not 21 <= self._age(person) <= 60
            ):
                continue
            rng = _rng(self.p, "nurse", idn)
            if rng.random() >= (0.7 if person.gender == "2" else 0.15):
                continue
            valid_until = self.today + timedelta(days=rng.randrange(-200, NURSE_TERM_YEARS * 365))
            roll = rng.random()
            status = "注销" if roll < 0.03 else "暂停" if roll < 0.05 else "有效"
            category = "助产" if person.gender == "2" and rng.random() < 0.1 else "护理"
            self._nurse(
                person,
                last.employer,
                last.region_code,
                valid_until,
                rng,
                status=status,
                category=category,
            )
        due = people[s["nurse_renewal_due"]]
        spell = self.p.social_security[due.id_number].spells[-1]
        self._nurse(
            due,
            spell.employer,
            spell.region_code,
            self.today + timedelta(days=RENEWAL_DUE_IN_DAYS),
            _rng(self.p, "nurse", due.id_number),
        )
        moved = people[s["nurse_employer_changed"]]
        self._nurse(
            moved,
            "泉州市泉港区医院",  # his employer 2013-2016; he works at the plant now
            "350505",
            self.today + timedelta(days=400),
            _rng(self.p, "nurse", moved.id_number),
        )

    # -- market regulation

    def _licence(
        self,
        owner: Person,
        *,
        kind: str,
        name: str,
        scope: str,
        status: str,
        founded: date,
        region_code: str,
        address: str,
    ) -> str:
        rng = _rng(self.p, "licence", f"{owner.id_number}/{name}")
        code = make_credit_code("2" if kind == "个体工商户" else "1", region_code, rng)
        while code in self.licences:
            code = make_credit_code(code[1], region_code, rng)
        self.licences[code] = BusinessLicence(
            credit_code=code,
            name=name,
            kind=kind,
            representative_name=owner.name,
            representative_id=owner.id_number,
            scope=scope,
            status=status,
            founded_on=founded,
            authority=market_bureau(region_code),
            address=address,
            updated_at=_moment(max(founded, date(2024, 1, 2)), rng),
        )
        return code

    def _licences(self) -> None:
        s, people = self.p.scenarios, self.p.people
        for household in self.p.households.values():
            head = people[household.member_ids[0]]
            if head.status != "正常" or not 25 <= self._age(head) <= 65:
                continue
            if head.id_number in (s["business_owner"], s["seized_property"]):
                continue
            rng = _rng(self.p, "licence", head.id_number)
            if rng.random() >= 0.04:
                continue
            shop, scope = rng.choice(_SHOPS)
            short = REGIONS[household.region_code].short
            founded = date(rng.randrange(2008, 2026), rng.randrange(1, 13), rng.randrange(1, 29))
            self._licence(
                head,
                kind="个体工商户",
                name=f"{short}{head.name[0]}记{shop}",
                scope=scope,
                status="注销" if rng.random() < 0.15 else "存续",
                founded=founded,
                region_code=household.region_code,
                address=household.address,
            )
        owner = people[s["business_owner"]]
        shop = next(
            (p.location for p in self.p.properties_of(owner.id_number) if p.usage == "商业"),
            self.p.household_of(owner.id_number).address,
        )
        surname = owner.name[0]
        self.organisations["restaurant_sole_trader"] = self._licence(
            owner,
            kind="个体工商户",
            name=f"厦门市湖里区{surname}记沙茶面店",
            scope="餐饮服务；小吃服务；预包装食品销售（不含冷藏冷冻食品）",
            status="存续",
            founded=date(2016, 4, 12),
            region_code="350206",
            address=shop,
        )
        self.organisations["restaurant_company"] = self._licence(
            owner,
            kind="有限责任公司",
            name=f"厦门{surname}家餐饮管理有限公司",
            scope="餐饮服务；餐饮管理；食品销售；外卖递送服务",
            status="在业",
            founded=date(2021, 3, 9),
            region_code="350206",
            address=shop,
        )
        debtor = people[s["seized_property"]]
        self.organisations["revoked_company"] = self._licence(
            debtor,
            kind="有限责任公司",
            name=f"南安市{debtor.name[0]}氏石材有限公司",
            scope="石材加工；石材销售；建筑装饰材料销售",
            status="吊销",
            founded=date(2006, 8, 1),
            region_code="350583",
            address=self.p.household_of(debtor.id_number).address,
        )

    # -- medical insurance

    def _medical(self) -> None:
        s, people = self.p.scenarios, self.p.people
        for idn, person in people.items():
            rng = _rng(self.p, "medical", idn)
            account = self.p.social_security.get(idn)
            summary = None
            if account is not None:
                summary = next(
                    (
                        x
                        for x in account.insurances()
                        if x.type_code in (MEDICAL_EMPLOYEE, MEDICAL_RESIDENT)
                    ),
                    None,
                )
            household = self.p.household_of(idn)
            if summary is not None:
                first = date(summary.first_month // 12, summary.first_month % 12 + 1, 1)
                last = date(summary.last_month // 12, summary.last_month % 12 + 1, 1)
                if person.status == "死亡":
                    status, ended = "3", last
                elif account is not None and account.retired:
                    status, ended = "1", None  # retirees stay insured without paying
                else:
                    status, ended = summary.status, None
                scheme, region = summary.type_code, summary.region_code
            elif person.status == "正常" and (idn == s["disabled"] or rng.random() < 0.9):
                # The resident scheme took in rural and urban residents alike from 2017.
                first = max(person.birth_date, date(2017, 1, 1)) + timedelta(days=rng.randrange(60))
                scheme, status, ended, region = MEDICAL_RESIDENT, "1", None, household.region_code
            else:
                continue
            self.medical[idn] = MedicalEnrolment(
                id_number=idn,
                name=person.name,
                scheme=scheme,
                status=status,
                region_code=region,
                enrolled_on=first,
                ended_on=ended,
                updated_at=_moment(date(2025, 1, 1) + timedelta(days=rng.randrange(600)), rng),
            )

    # -- disabled persons' federation

    def _certificate(
        self, person: Person, category: str, grade: str, valid_until: date, rng: random.Random
    ) -> None:
        issued = years_after(valid_until, -DISABILITY_TERM_YEARS) + timedelta(days=1)
        self.disability[person.id_number] = DisabilityCertificate(
            id_number=person.id_number,
            name=person.name,
            category=category,
            grade=grade,
            issued_on=issued,
            valid_until=valid_until,
            updated_at=_moment(min(issued, self.today), rng),
        )

    def _disability(self) -> None:
        s, people = self.p.scenarios, self.p.people
        for idn, person in people.items():
            if person.status != "正常" or idn == s["disabled"]:
                continue
            rng = _rng(self.p, "disability", idn)
            if rng.random() >= 0.02:
                continue
            category = rng.choices("1234567", weights=(12, 18, 2, 40, 8, 12, 8))[0]
            grade = rng.choices("1234", weights=(10, 20, 30, 40))[0]
            valid_until = self.today + timedelta(
                days=rng.randrange(-300, DISABILITY_TERM_YEARS * 365)
            )
            self._certificate(person, category, grade, valid_until, rng)
        farmer = people[s["disabled"]]
        self._certificate(
            farmer,
            "4",  # 肢体 physical
            "2",
            self.today + timedelta(days=3 * 365),
            _rng(self.p, "disability", farmer.id_number),
        )
