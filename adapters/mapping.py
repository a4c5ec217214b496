"""Declarative mappings from each department's schema to the canonical `proofless.v1` records.

A mapping is a table of `FieldRule(canonical field, department key(s), converter)`; `map_fields`
applies a table to one department row. Converters are small pure functions that either return
the canonical value or raise; any failure becomes one `DepartmentMalformed` naming the
department key (never the value: values are personal data). Unknown codes are failures too: a
code the table does not know means the department changed something we must look at, and a
guess would put a wrong fact into a signed proof.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any, TypeVar

from adapters.base import DepartmentMalformed
from proofless.v1 import verification_pb2 as pb

T = TypeVar("T")
Converter = Callable[..., Any]

# Department wall-clock times (GXSJ, DJSJ) are Beijing time.
CHINA_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")


@dataclass(frozen=True)
class FieldRule:
    """`target` (canonical field) ← `convert(row[source], …)`. Several sources are passed to
    the converter in order; a missing optional field leaves the canonical default."""

    target: str
    source: str | tuple[str, ...]
    convert: Converter
    required: bool = True

    @property
    def sources(self) -> tuple[str, ...]:
        return (self.source,) if isinstance(self.source, str) else self.source


class _Unreadable(Exception):
    """Raised by converters; carries no value, only that the field cannot be read."""


def _empty(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def map_fields(rules: Sequence[FieldRule], row: object, what: str) -> dict[str, Any]:
    """Apply `rules` to a department row; the result is keyword arguments for the message."""
    if not isinstance(row, Mapping):
        raise DepartmentMalformed(f"{what}: expected an object")
    out: dict[str, Any] = {}
    for rule in rules:
        primary = rule.sources[0]
        if _empty(row.get(primary)):
            if rule.required:
                raise DepartmentMalformed(f"{what}: field {primary} is missing")
            continue
        try:
            out[rule.target] = rule.convert(*(row.get(s) for s in rule.sources))
        except (_Unreadable, ValueError, TypeError, KeyError, ArithmeticError, InvalidOperation):
            # `from None`: the original exception may quote the value.
            raise DepartmentMalformed(f"{what}: field {primary} is unreadable") from None
    return out


# ---- converters --------------------------------------------------------------------------


def text(value: object) -> str:
    if not isinstance(value, str):
        raise _Unreadable
    return value.strip()


def code(table: Mapping[str, T]) -> Callable[[object], T]:
    """A code-table lookup; codes may arrive as strings or numbers."""

    def convert(value: object) -> T:
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise _Unreadable
        key = str(value).strip()
        if key not in table:
            raise _Unreadable
        return table[key]

    return convert


_ID = re.compile(r"^\d{17}[\dX]$")
_REGION = re.compile(r"^\d{6}$")


def id_number(value: object) -> str:
    s = text(value).upper()
    if not _ID.match(s):
        raise _Unreadable
    return s


def region_code(value: object) -> str:
    s = text(value) if isinstance(value, str) else str(value)
    if not _REGION.match(s):
        raise _Unreadable
    return s


def date8(value: object) -> str:
    """YYYYMMDD (CSRQ) → YYYY-MM-DD."""
    s = text(value)
    if len(s) != 8 or not s.isdigit():
        raise _Unreadable
    return date(int(s[:4]), int(s[4:6]), int(s[6:])).isoformat()


def month6(value: object) -> str:
    """YYYYMM (JFNY, QSNY, ZZNY) → YYYY-MM."""
    s = text(value) if isinstance(value, str) else str(value)
    if len(s) != 6 or not s.isdigit() or not 1 <= int(s[4:]) <= 12:
        raise _Unreadable
    return f"{s[:4]}-{s[4:]}"


def count(value: object) -> int:
    if isinstance(value, bool):
        raise _Unreadable
    n = int(value) if isinstance(value, int) else int(text(value))
    if n < 0:
        raise _Unreadable
    return n


def _decimal(value: object) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise _Unreadable
    d = Decimal(str(value).strip())
    if not d.is_finite():
        raise _Unreadable
    return d


def yuan_to_cents(value: object) -> int:
    """JFJS, yuan as a decimal string ("4860.00") → fen. Sub-fen amounts are not money."""
    d = _decimal(value) * 100
    if d < 0 or d != d.to_integral_value():
        raise _Unreadable
    return int(d)


def area(value: object) -> float:
    """MJ, square metres (REAL in SQLite, NUMERIC in PostgreSQL) → float to the centiare."""
    d = _decimal(value)
    if d <= 0:
        raise _Unreadable
    return float(round(d, 2))


def flag(value: object) -> bool:
    """DYZT / CFZT: "1" (抵押 / 查封) or "0"."""
    key = str(value).strip() if isinstance(value, str | int) else ""
    if key in ("1", "是"):
        return True
    if key in ("0", "否"):
        return False
    raise _Unreadable


def registration_date(value: object) -> str:
    """DJSJ "YYYY-MM-DD HH:MM:SS" (or a driver's date/datetime) → YYYY-MM-DD."""
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    s = text(value)
    return date.fromisoformat(s[:10]).isoformat()


def update_time(value: object) -> datetime:
    """GXSJ in Beijing time ("YYYYMMDDHHMMSS" or "YYYY-MM-DD HH:MM:SS") → aware datetime."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=CHINA_TZ)
    s = text(value)
    if len(s) == 14 and s.isdigit():
        parsed = datetime.strptime(s, "%Y%m%d%H%M%S")
    else:
        parsed = datetime.fromisoformat(s)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=CHINA_TZ)


def share(fe: object, gyfs: object) -> float:
    """FE as the registry writes it ("60%", "1/2", "0.5"). A blank FE is only readable for sole
    (单独所有) and joint (共同共有) ownership: each joint owner holds the whole, undivided."""
    if _empty(fe):
        if gyfs in ("单独所有", "共同共有"):
            return 1.0
        raise _Unreadable
    s = text(fe)
    if s.endswith("%"):
        value = Fraction(_decimal(s[:-1])) / 100
    elif "/" in s:
        num, _, den = s.partition("/")
        value = Fraction(int(num), int(den))
    else:
        value = Fraction(_decimal(s))
    if not 0 < value <= 1:
        raise _Unreadable
    return float(value)


def rows(
    rules: Sequence[FieldRule], message: Callable[..., T], what: str
) -> Callable[[object], list[T]]:
    """A nested list of department rows, each mapped with `rules` into `message`."""

    def convert(value: object) -> list[T]:
        if not isinstance(value, list):
            raise _Unreadable
        return [message(**map_fields(rules, item, what)) for item in value]

    return convert


# ---- code tables -------------------------------------------------------------------------

GENDERS: dict[str, int] = {  # GB/T 2261.1
    "1": pb.GENDER_MALE,
    "2": pb.GENDER_FEMALE,
    "0": pb.GENDER_UNSPECIFIED,  # 未知的性别
    "9": pb.GENDER_UNSPECIFIED,  # 未说明的性别
}

RELATIONS: dict[str, int] = {  # 与户主关系 (YHZGX)
    "户主": pb.RELATION_HEAD,
    "本人": pb.RELATION_HEAD,
    "配偶": pb.RELATION_SPOUSE,
    "妻": pb.RELATION_SPOUSE,
    "夫": pb.RELATION_SPOUSE,
    **dict.fromkeys(
        (
            "子",
            "女",
            "长子",
            "次子",
            "长女",
            "次女",
            "独生子",
            "独生女",
            "养子",
            "养女",
            "继子",
            "继女",
        ),
        pb.RELATION_CHILD,
    ),
    **dict.fromkeys(("父亲", "母亲", "公公", "婆婆", "岳父", "岳母"), pb.RELATION_PARENT),
    **dict.fromkeys(("孙子", "孙女", "外孙子", "外孙女"), pb.RELATION_GRANDCHILD),
    **dict.fromkeys(("祖父", "祖母", "外祖父", "外祖母"), pb.RELATION_GRANDPARENT),
    **dict.fromkeys(("兄", "弟", "姐", "妹", "哥哥", "弟弟", "姐姐", "妹妹"), pb.RELATION_SIBLING),
    **dict.fromkeys(("儿媳", "女婿", "侄子", "侄女", "其他"), pb.RELATION_OTHER),
}

HOUSEHOLD_STATUSES: dict[str, int] = {
    "正常": pb.HOUSEHOLD_STATUS_ACTIVE,
    "迁出": pb.HOUSEHOLD_STATUS_MOVED_OUT,
    "死亡": pb.HOUSEHOLD_STATUS_DECEASED,
}

INSURANCE_TYPES: dict[str, int] = {  # 险种类型 (XZLX), 人社部 codes
    "110": pb.INSURANCE_TYPE_PENSION,  # 企业职工基本养老保险
    "120": pb.INSURANCE_TYPE_PENSION,  # 机关事业单位养老保险
    "170": pb.INSURANCE_TYPE_PENSION,  # 城乡居民基本养老保险
    "210": pb.INSURANCE_TYPE_UNEMPLOYMENT,
    "310": pb.INSURANCE_TYPE_MEDICAL,  # 职工基本医疗保险
    "390": pb.INSURANCE_TYPE_MEDICAL,  # 城乡居民基本医疗保险
    "410": pb.INSURANCE_TYPE_WORK_INJURY,
    "510": pb.INSURANCE_TYPE_MATERNITY,
}

INSURANCE_STATUSES: dict[str, int] = {  # 参保状态 (CBZT)
    "1": pb.INSURANCE_STATUS_ACTIVE,  # 参保缴费
    "2": pb.INSURANCE_STATUS_SUSPENDED,  # 暂停缴费
    "3": pb.INSURANCE_STATUS_TERMINATED,  # 终止参保
}

USAGES: dict[str, int] = {  # 用途 (YT)
    "住宅": pb.PROPERTY_USAGE_RESIDENTIAL,
    "成套住宅": pb.PROPERTY_USAGE_RESIDENTIAL,
    "商业": pb.PROPERTY_USAGE_COMMERCIAL,
    "商服": pb.PROPERTY_USAGE_COMMERCIAL,
    "办公": pb.PROPERTY_USAGE_OFFICE,
    "工业": pb.PROPERTY_USAGE_INDUSTRIAL,
    "车位": pb.PROPERTY_USAGE_OTHER,
    "车库": pb.PROPERTY_USAGE_OTHER,
    "其他": pb.PROPERTY_USAGE_OTHER,
}

CO_OWNERSHIPS: dict[str, int] = {  # 共有方式 (GYFS)
    "单独所有": pb.CO_OWNERSHIP_SOLE,
    "共同共有": pb.CO_OWNERSHIP_JOINT,
    "按份共有": pb.CO_OWNERSHIP_SHARED,
}

# ---- the tables --------------------------------------------------------------------------

HOUSEHOLD_MEMBER = (
    FieldRule("name", "XM", text),
    FieldRule("relation_to_head", "YHZGX", code(RELATIONS)),
)

HOUSEHOLD = (
    FieldRule("name", "XM", text),
    FieldRule("id_number", "SFZHM", id_number),
    FieldRule("gender", "XB", code(GENDERS)),
    FieldRule("ethnicity", "MZ", text),
    FieldRule("birth_date", "CSRQ", date8),
    FieldRule("household_number", "HH", text),
    FieldRule("address", "HJDZ", text),
    FieldRule("region_code", "XZQH", region_code),
    FieldRule("relation_to_head", "YHZGX", code(RELATIONS)),
    FieldRule("registration_authority", "DJJG", text),
    FieldRule("status", "ZT", code(HOUSEHOLD_STATUSES)),
    FieldRule(
        "members",
        "JTCY",
        rows(HOUSEHOLD_MEMBER, pb.HouseholdMember, "household member"),
        required=False,
    ),
)

INSURANCE = (
    FieldRule("type", "XZLX", code(INSURANCE_TYPES)),
    FieldRule("status", "CBZT", code(INSURANCE_STATUSES)),
    FieldRule("employer", "DWMC", text, required=False),
    FieldRule("region_code", "CBDQ", region_code),
    FieldRule("first_month", "QSNY", month6),
    FieldRule("last_month", "ZZNY", month6),
    FieldRule("total_months", "LJJFYS", count),
)

SOCIAL_SECURITY_PERSON = (
    FieldRule("name", "XM", text),
    FieldRule("id_number", "SFZHM", id_number),
    FieldRule("insurances", "CBXX", rows(INSURANCE, pb.Insurance, "insurance")),
)

CONTRIBUTION = (
    FieldRule("month", "JFNY", month6),
    FieldRule("type", "XZLX", code(INSURANCE_TYPES)),
    FieldRule("employer", "DWMC", text, required=False),
    FieldRule("region_code", "CBDQ", region_code),
    FieldRule("base_cents", "JFJS", yuan_to_cents),
)

PROPERTY = (
    FieldRule("certificate_number", "BDCQZH", text),
    FieldRule("location", "ZL", text),
    FieldRule("region_code", "XZQH", region_code),
    FieldRule("area_square_meters", "MJ", area),
    FieldRule("usage", "YT", code(USAGES)),
    FieldRule("co_ownership", "GYFS", code(CO_OWNERSHIPS)),
    # FE may be blank (sole and joint ownership): the GYFS column is the primary source then.
    FieldRule("share", ("GYFS", "FE"), lambda gyfs, fe: share(fe, gyfs)),
    FieldRule("registration_date", "DJSJ", registration_date),
    FieldRule("mortgaged", "DYZT", flag),
    FieldRule("seized", "CFZT", flag),
)


# ---- whole records -----------------------------------------------------------------------


def household_record(data: object) -> pb.HouseholdRecord:
    return pb.HouseholdRecord(**map_fields(HOUSEHOLD, data, "household"))


def social_security_record(person: object, history: Sequence[object]) -> pb.SocialSecurityRecord:
    """The person with enrolments (CBXX) and the monthly rows of every history page, oldest
    first whatever order the pages came in."""
    record = pb.SocialSecurityRecord(
        **map_fields(SOCIAL_SECURITY_PERSON, person, "social security")
    )
    contributions = [
        pb.Contribution(**map_fields(CONTRIBUTION, row, "contribution")) for row in history
    ]
    contributions.sort(key=lambda c: (c.month, c.type))
    record.history.extend(contributions)
    return record


def property_record(row: object) -> pb.PropertyRecord:
    return pb.PropertyRecord(**map_fields(PROPERTY, row, "property"))


def as_of(value: object, what: str) -> datetime:
    """The department's update time (GXSJ) as an aware datetime."""
    try:
        return update_time(value)
    except (_Unreadable, ValueError, TypeError):
        raise DepartmentMalformed(f"{what}: field GXSJ is unreadable") from None
