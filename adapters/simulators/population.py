"""The synthetic population's data model: ID numbers (GB 11643-1999), months, citizens,
households, social-security enrolments and real-estate rights. Pure values; `datagen`
builds them, the simulators serve them in each department's own shape.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

# The population's "today": histories end here, ages are computed from here.
REFERENCE_DATE = date(2026, 10, 31)
HISTORY_START = (1995, 1)  # contribution records are kept from the 1995 reform on

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"

# ---- ID numbers (GB 11643-1999) -----------------------------------------------------------


def check_character(first17: str) -> str:
    """The 18th character: "10X98765432"[Σ dᵢ·wᵢ mod 11] (GB 11643-1999 §5.2)."""
    total = sum(int(d) * w for d, w in zip(first17, _WEIGHTS, strict=True))
    return _CHECK[total % 11]


def is_valid_id_number(value: str) -> bool:
    if len(value) != 18 or not value[:17].isdigit() or value[17] not in "0123456789X":
        return False
    try:
        date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        return False
    return check_character(value[:17]) == value[17]


def make_id_number(region: str, birth: date, sequence: int) -> str:
    """`sequence` is 0..999; odd for men, even for women."""
    first17 = f"{region}{birth:%Y%m%d}{sequence:03d}"
    return first17 + check_character(first17)


# ---- months as integers: year * 12 + (month - 1) ----------------------------------------


def month_index(year: int, month: int) -> int:
    return year * 12 + month - 1


def month_text(index: int) -> str:
    """YYYYMM, the department's 缴费年月 (JFNY)."""
    return f"{index // 12:04d}{index % 12 + 1:02d}"


REFERENCE_MONTH = month_index(REFERENCE_DATE.year, REFERENCE_DATE.month)
FIRST_MONTH = month_index(*HISTORY_START)


# ---- the population ----------------------------------------------------------------------


@dataclass(frozen=True)
class Person:
    id_number: str
    name: str
    gender: str  # "1" male, "2" female (GB/T 2261.1, as the household registry stores it)
    ethnicity: str  # 汉族, 畲族
    birth_date: date
    household_number: str
    relation: str  # 与户主关系: 户主, 配偶, 子, 女, 父亲, 母亲, 孙子, 孙女, 儿媳 …
    status: str  # 正常, 迁出, 死亡
    updated_at: datetime  # GXSJ: when the registry last changed this record (UTC+8 wall time)


@dataclass(frozen=True)
class Household:
    number: str
    region_code: str
    address: str
    authority: str  # 登记机关
    member_ids: tuple[str, ...]  # the head first


@dataclass(frozen=True)
class Spell:
    """One uninterrupted enrolment with one payer: every month in [start, end] is paid."""

    employer: str
    region_code: str
    start: int  # month index
    end: int  # month index, inclusive
    base_cents: int  # 缴费基数 in the first year; grows 6% a year
    types: tuple[str, ...]  # XZLX codes paid in this spell

    def base_in(self, month: int) -> int:
        years = (month - self.start) // 12
        return round(self.base_cents * (1.06**years) / 100) * 100


@dataclass(frozen=True)
class ContributionRow:
    month: int
    type_code: str
    employer: str
    region_code: str
    base_cents: int


@dataclass(frozen=True)
class InsuranceSummary:
    type_code: str
    status: str  # CBZT: "1" 参保缴费, "2" 暂停缴费, "3" 终止参保
    employer: str
    region_code: str
    first_month: int
    last_month: int
    total_months: int


@dataclass(frozen=True)
class SocialSecurityAccount:
    id_number: str
    name: str
    spells: tuple[Spell, ...]  # oldest first, never overlapping
    retired: bool
    updated_at: datetime

    def contributions(
        self, first: int | None = None, last: int | None = None
    ) -> list[ContributionRow]:
        """The monthly rows (one per insurance type) of months in [first, last], oldest first;
        all of them by default. Derived from the spells, never stored."""
        return list(self._rows(first, last))

    def _rows(self, first: int | None, last: int | None) -> Iterator[ContributionRow]:
        for s in self.spells:
            lo = s.start if first is None else max(s.start, first)
            hi = s.end if last is None else min(s.end, last)
            for m in range(lo, hi + 1):
                base = s.base_in(m)
                for t in s.types:
                    yield ContributionRow(m, t, s.employer, s.region_code, base)

    def months(self) -> list[int]:
        """The distinct months with at least one contribution, oldest first."""
        return [m for s in self.spells for m in range(s.start, s.end + 1)]

    def insurances(self) -> list[InsuranceSummary]:
        summaries: list[InsuranceSummary] = []
        codes: list[str] = []
        for s in self.spells:
            codes.extend(t for t in s.types if t not in codes)
        for code in codes:
            spells = [s for s in self.spells if code in s.types]
            last = spells[-1]
            if self.retired:
                status = "3"
            elif last.end == REFERENCE_MONTH:
                status = "1"
            else:
                status = "2"
            summaries.append(
                InsuranceSummary(
                    type_code=code,
                    status=status,
                    employer=last.employer,
                    region_code=last.region_code,
                    first_month=spells[0].start,
                    last_month=last.end,
                    total_months=sum(s.end - s.start + 1 for s in spells),
                )
            )
        return summaries

    def total_months(self, type_code: str) -> int:
        return sum(s.end - s.start + 1 for s in self.spells if type_code in s.types)


@dataclass(frozen=True)
class Ownership:
    id_number: str
    name: str
    co_ownership: str  # GYFS: 单独所有, 共同共有, 按份共有
    share: str  # FE as the registry writes it: "" (whole), "50%", "1/3"


@dataclass(frozen=True)
class Property:
    unit_number: str  # 不动产单元号 BDCDYH
    certificate_number: str  # BDCQZH
    location: str  # ZL
    region_code: str
    area: Decimal  # MJ, square metres, 2 decimals
    usage: str  # YT: 住宅, 商业, 办公, 工业, 车位
    registered_at: datetime  # DJSJ
    mortgaged: bool
    seized: bool
    current: bool  # False: a right that has ended (sold); the view hides it
    owners: tuple[Ownership, ...]
    updated_at: datetime  # GXSJ


@dataclass(frozen=True)
class Population:
    seed: int
    people: Mapping[str, Person]
    households: Mapping[str, Household]
    social_security: Mapping[str, SocialSecurityAccount]
    properties: tuple[Property, ...]
    scenarios: Mapping[str, str] = field(default_factory=dict)

    def household_of(self, id_number: str) -> Household:
        return self.households[self.people[id_number].household_number]

    def properties_of(self, id_number: str, *, include_ended: bool = False) -> list[Property]:
        return [
            p
            for p in self.properties
            if (p.current or include_ended) and any(o.id_number == id_number for o in p.owners)
        ]


# ---- the registers of the departments added by catalogue file ----------------------------
# Built from the population by `datagen.registers(population, today)`: the same people, so a
# nurse's employer is her social-security employer, a spouse is a person of the population
# and a restaurant's operator is a citizen with a household record.


@dataclass(frozen=True)
class MarriageRegistration:
    """One 婚姻登记 record, as the civil-affairs registry keeps it (man and woman by name)."""

    kind: str  # YWLX: 结婚, 离婚, 补发
    husband_id: str  # NFSFZH
    husband_name: str  # NFXM
    wife_id: str  # NVSFZH
    wife_name: str  # NVXM
    registered_on: date  # DJRQ
    certificate_number: str  # JHZH (结婚证字号) or 离婚证字号
    authority: str  # DJJG: 泉州市泉港区民政局
    updated_at: datetime  # GXSJ


@dataclass(frozen=True)
class NurseRegistration:
    """护士执业注册: one practising registration per nurse (卫健委 front-end database)."""

    certificate_number: str  # ZSBH
    id_number: str
    name: str
    employer: str  # ZYJG 执业机构: the hospital
    region_code: str  # ZYDD 执业地点
    category: str  # ZYLB 执业类别
    registered_on: date  # ZCRQ
    valid_until: date  # YXQZ
    status: str  # ZT: 有效, 注销, 暂停
    updated_at: datetime


@dataclass(frozen=True)
class BusinessLicence:
    """营业执照: a company (type 91) or a sole trader (个体工商户, type 92: personal data)."""

    credit_code: str  # TYSHXYDM
    name: str  # QYMC
    kind: str  # QYLX: 有限责任公司, 个体工商户
    representative_name: str  # FDDBR (经营者 for a sole trader)
    representative_id: str  # FDDBRZJHM
    scope: str  # JYFW
    status: str  # DJZT: 存续, 在业, 吊销, 注销
    founded_on: date  # CLRQ
    authority: str  # DJJG
    address: str  # ZCDZ
    updated_at: datetime


@dataclass(frozen=True)
class MedicalEnrolment:
    """医保 参保: the person's basic medical insurance enrolment (employee or resident)."""

    id_number: str
    name: str
    scheme: str  # XZLX: 310 职工基本医疗保险, 390 城乡居民基本医疗保险
    status: str  # CBZT: 1 参保缴费, 2 暂停参保, 3 终止参保
    region_code: str  # CBDQ
    enrolled_on: date  # CBRQ
    ended_on: date | None  # ZZRQ
    updated_at: datetime


@dataclass(frozen=True)
class DisabilityCertificate:
    """残疾人证 (second generation): number = the 18-character ID + category + grade."""

    id_number: str
    name: str
    category: str  # CJLB 1 视力 2 听力 3 言语 4 肢体 5 智力 6 精神 7 多重
    grade: str  # CJDJ 1..4, 1 most severe
    issued_on: date  # FZRQ
    valid_until: date  # YXQZ
    updated_at: datetime

    @property
    def certificate_number(self) -> str:
        return f"{self.id_number}{self.category}{self.grade}"


@dataclass(frozen=True)
class Registers:
    """What the five departments added by catalogue file hold. `today` anchors the validity
    windows (a registration due for renewal in 20 days stays so whenever the demo runs);
    every other date is fixed by the seed."""

    today: date
    marriages: Mapping[str, tuple[MarriageRegistration, ...]]  # by either spouse, oldest first
    nurses: Mapping[str, NurseRegistration]  # by ID number
    licences: Mapping[str, BusinessLicence]  # by credit code
    medical: Mapping[str, MedicalEnrolment]  # by ID number
    disability: Mapping[str, DisabilityCertificate]  # by ID number
    organisations: Mapping[str, str] = field(default_factory=dict)  # scenario → credit code

    def licences_of(self, id_number: str) -> list[BusinessLicence]:
        return [lic for lic in self.licences.values() if lic.representative_id == id_number]
