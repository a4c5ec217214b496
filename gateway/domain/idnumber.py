"""Resident identity numbers (居民身份证号码, GB 11643-1999) and region codes (GB/T 2260).

An ID number is 18 characters: a 6-digit region code, the birth date as YYYYMMDD, a 3-digit
sequence (odd for men, even for women) and a check character over the first 17 digits
(ISO 7064 MOD 11-2, as GB 11643-1999 §5 writes it). Everything here is pure; no error
message ever repeats the number it rejects, it names the rule that failed.
"""

from __future__ import annotations

import operator
from datetime import date
from typing import Literal

from gateway.domain.errors import FieldViolation, InvalidArgument

ID_LENGTH = 18
_DIGITS = frozenset("0123456789")  # ASCII only: str.isdigit() would let full-width digits in
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK_CHARS = "10X98765432"
_DIGIT_OFFSET = ord("0") * sum(_WEIGHTS)
_EARLIEST_BIRTH = date(1900, 1, 1)

#: Province-level codes of GB/T 2260 (the first two digits of every region code).
PROVINCES: frozenset[str] = frozenset(
    f"{n:02d}"
    for n in (
        *range(11, 16),  # 北京 天津 河北 山西 内蒙古
        *range(21, 24),  # 辽宁 吉林 黑龙江
        *range(31, 38),  # 上海 江苏 浙江 安徽 福建 江西 山东
        *range(41, 47),  # 河南 湖北 湖南 广东 广西 海南
        *range(50, 55),  # 重庆 四川 贵州 云南 西藏
        *range(61, 66),  # 陕西 甘肃 青海 宁夏 新疆
        71,  # 台湾
        81,  # 香港
        82,  # 澳门
    )
)


def _ascii_digits(value: str) -> bool:
    # isdigit() alone admits full-width and other Unicode digits; on ASCII text it is 0-9
    return value.isascii() and value.isdigit()


def check_char(first17: str) -> str:
    """The GB 11643 check character for the first 17 digits: "10X98765432"[Σ dᵢ·wᵢ mod 11]."""
    if len(first17) != 17 or not _ascii_digits(first17):
        raise ValueError("check_char needs exactly 17 ASCII digits")
    # ASCII digit d is byte 48 + d: Σ (bᵢ - 48)·wᵢ = Σ bᵢ·wᵢ - 48·Σ wᵢ (one C-level pass)
    total = sum(map(operator.mul, first17.encode("ascii"), _WEIGHTS)) - _DIGIT_OFFSET
    return _CHECK_CHARS[total % 11]


def is_region_code(code: str) -> bool:
    """Six ASCII digits whose first two name a GB/T 2260 province."""
    return len(code) == 6 and _ascii_digits(code) and code[:2] in PROVINCES


def region_contains(outer: str, inner: str) -> bool:
    """Whether region `outer` contains region `inner` (both 6-digit GB/T 2260 codes).

    A province code (`350000`) contains every `35xxxx`; a prefecture code (`350500`) contains
    every `3505xx`; a county code (`350505`) contains only itself. Anything that is not a
    region code contains nothing and is contained by nothing.
    """
    if not (is_region_code(outer) and is_region_code(inner)):
        return False
    if outer.endswith("0000"):
        return inner[:2] == outer[:2]
    if outer.endswith("00"):
        return inner[:4] == outer[:4]
    return inner == outer


def _parse_birth(digits: str) -> date | None:
    try:
        return date(int(digits[0:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        return None


def id_number_violation(
    value: str, field: str, *, today: date | None = None
) -> FieldViolation | None:
    """The first rule `value` breaks, as one field violation, or None when it is a valid ID.

    Rules in order: length, characters, region, birth date, check character. `today` bounds
    the birth date (defaults to the system date; pass it in where determinism matters).
    """
    if not value:
        return FieldViolation(field, "required: an 18-character resident ID number")
    if len(value) != ID_LENGTH:
        return FieldViolation(field, "must be exactly 18 characters (GB 11643-1999)")
    if not _ascii_digits(value[:17]) or not (value[17] in _DIGITS or value[17] in "Xx"):
        return FieldViolation(field, "must be 17 digits followed by a digit or X (GB 11643-1999)")
    if value[:2] not in PROVINCES:
        return FieldViolation(field, "region code does not name a GB/T 2260 province")
    birth = _parse_birth(value[6:14])
    if birth is None:
        return FieldViolation(field, "birth date (characters 7-14) is not a calendar date")
    limit = today if today is not None else date.today()
    if birth < _EARLIEST_BIRTH or birth > limit:
        return FieldViolation(field, "birth date (characters 7-14) must lie between 1900 and today")
    if value[17].upper() != check_char(value[:17]):
        return FieldViolation(field, "check character does not match (GB 11643-1999 checksum)")
    return None


def validate_id_number(
    value: str, field: str = "applicant.id_number", *, today: date | None = None
) -> str:
    """The ID number normalised (a trailing `x` becomes `X`), or InvalidArgument with exactly
    one violation at `field` naming the first rule broken."""
    violation = id_number_violation(value, field, today=today)
    if violation is not None:
        raise InvalidArgument([violation])
    return normalise_id_number(value)


def normalise_id_number(valid: str) -> str:
    """The canonical spelling of an already valid number: check character `x` becomes `X`."""
    return valid[:17] + valid[17:].upper()


def birth_date(id_number: str) -> date:
    """The birth date of a valid ID number."""
    parsed = _parse_birth(id_number[6:14])
    if parsed is None:
        raise ValueError("not a valid ID number")
    return parsed


def gender(id_number: str) -> Literal["male", "female"]:
    """Odd sequence (the 17th character) for men, even for women."""
    return "male" if int(id_number[16]) % 2 == 1 else "female"


def region_code(id_number: str) -> str:
    """The region where the number was first issued (not necessarily where the person lives)."""
    return id_number[:6]


def make_id(region: str, birth: date, sequence: int) -> str:
    """A valid ID number from its parts (for tests, simulators and demos)."""
    if not is_region_code(region):
        raise ValueError("region must be a 6-digit GB/T 2260 code")
    if not 0 <= sequence <= 999:
        raise ValueError("sequence must be 0..999")
    if birth < _EARLIEST_BIRTH:
        raise ValueError("birth date must not be before 1900")
    first17 = f"{region}{birth:%Y%m%d}{sequence:03d}"
    return first17 + check_char(first17)
