"""The fixed library of converters a catalogue field may name: department values → canonical.

A catalogue file says where a field comes from (`from = "CSRQ"`) and how to read it
(`convert = "date8"`); it cannot bring code of its own. Each converter is a small pure
function that returns the canonical value or raises `Unreadable` (carrying nothing: the
value is personal data and must not reach an error message). Unknown codes are failures too:
a code the table does not know means the department changed something we must look at, and a
guess would put a wrong fact into a signed proof.

Canonical forms: strings stripped; dates `YYYY-MM-DD`; months `YYYY-MM`; region codes six
digits; money in fen as integers; numbers as floats; times as aware datetimes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any, Final

from gateway.domain.creditcode import is_credit_code

# Department wall-clock times (GXSJ, DJSJ) are Beijing time.
CHINA_TZ: Final = timezone(timedelta(hours=8), "Asia/Shanghai")

Converter = Callable[..., Any]


class Unreadable(Exception):
    """A converter could not read its value; carries no value, only that it failed."""


#: what a converter may raise on a bad value, besides `Unreadable`
FAILURES: Final = (Unreadable, ValueError, TypeError, KeyError, ArithmeticError, InvalidOperation)


def is_empty(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def text(value: object) -> str:
    if not isinstance(value, str):
        raise Unreadable
    return value.strip()


_ID = re.compile(r"\d{17}[\dX]")
_REGION = re.compile(r"\d{6}")


def id_number(value: object) -> str:
    """A resident ID as the department stores it; the check character upper-cased."""
    s = text(value).upper()
    if not _ID.fullmatch(s):
        raise Unreadable
    return s


def credit_code(value: object) -> str:
    """A unified social credit code (GB 32100-2015), check character verified."""
    s = text(value).upper()
    if not is_credit_code(s):
        raise Unreadable
    return s


def region_code(value: object) -> str:
    s = text(value) if isinstance(value, str) else str(value)
    if isinstance(value, bool) or not _REGION.fullmatch(s):
        raise Unreadable
    return s


def date8(value: object) -> str:
    """YYYYMMDD (CSRQ) → YYYY-MM-DD."""
    s = text(value)
    if len(s) != 8 or not s.isdigit():
        raise Unreadable
    return date(int(s[:4]), int(s[4:6]), int(s[6:])).isoformat()


def any_date(value: object) -> str:
    """A date however a department or its database driver gives it: a date or datetime
    object, "YYYY-MM-DD", "YYYY-MM-DD HH:MM:SS" or "YYYYMMDD" → YYYY-MM-DD."""
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    s = text(value)
    if len(s) == 8 and s.isdigit():
        return date8(s)
    return date.fromisoformat(s[:10]).isoformat()


def month6(value: object) -> str:
    """YYYYMM (JFNY, QSNY, ZZNY) → YYYY-MM."""
    s = text(value) if isinstance(value, str) else str(value)
    if isinstance(value, bool) or len(s) != 6 or not s.isdigit() or not 1 <= int(s[4:]) <= 12:
        raise Unreadable
    return f"{s[:4]}-{s[4:]}"


def count(value: object) -> int:
    """A non-negative whole number (a count of months, a grade)."""
    if isinstance(value, bool):
        raise Unreadable
    n = int(value) if isinstance(value, int) else int(text(value))
    if n < 0:
        raise Unreadable
    return n


def integer(value: object) -> int:
    if isinstance(value, bool):
        raise Unreadable
    return int(value) if isinstance(value, int) else int(text(value))


def _decimal(value: object) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise Unreadable
    d = Decimal(str(value).strip())
    if not d.is_finite():
        raise Unreadable
    return d


def number(value: object) -> float:
    return float(_decimal(value))


def yuan_to_fen(value: object) -> int:
    """JFJS, yuan as a decimal string ("4860.00") → fen. Sub-fen amounts are not money."""
    d = _decimal(value) * 100
    if d < 0 or d != d.to_integral_value():
        raise Unreadable
    return int(d)


def area(value: object) -> float:
    """MJ, square metres (REAL in SQLite, NUMERIC in PostgreSQL) → float to the centiare."""
    d = _decimal(value)
    if d <= 0:
        raise Unreadable
    return float(round(d, 2))


def flag(value: object) -> bool:
    """DYZT / CFZT: "1" (抵押 / 查封) or "0"; 是 / 否; a driver's boolean."""
    if isinstance(value, bool):
        return value
    key = str(value).strip() if isinstance(value, str | int) else ""
    if key in ("1", "是"):
        return True
    if key in ("0", "否"):
        return False
    raise Unreadable


def beijing_time(value: object) -> datetime:
    """GXSJ in Beijing time ("YYYYMMDDHHMMSS" or "YYYY-MM-DD HH:MM:SS", or a driver's
    datetime) → an aware datetime. A naive time is Beijing time."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=CHINA_TZ)
    s = text(value)
    if len(s) == 14 and s.isdigit():
        # = datetime.strptime(s, "%Y%m%d%H%M%S") for every 14-digit string (a property
        # test holds them together), at a tenth of its cost: out-of-range parts raise
        # ValueError from the constructor as from strptime
        parsed = datetime(
            int(s[:4]), int(s[4:6]), int(s[6:8]), int(s[8:10]), int(s[10:12]), int(s[12:])
        )
    else:
        parsed = datetime.fromisoformat(s)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=CHINA_TZ)


def epoch_ms(value: object) -> datetime:
    """Milliseconds since the epoch (an envelope `timestamp`) → an aware datetime."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise Unreadable
    return datetime.fromtimestamp(value / 1000, UTC)


_WHOLE_SHARE = frozenset({"单独所有", "共同共有"})


def share(gyfs: object, fe: object) -> float:
    """FE as the registry writes it ("60%", "1/2", "0.5"), given the co-ownership GYFS. A blank
    FE is only readable for sole (单独所有) and joint (共同共有) ownership: each joint owner
    holds the whole, undivided."""
    if is_empty(fe):
        if gyfs in _WHOLE_SHARE:
            return 1.0
        raise Unreadable
    s = text(fe)
    if s.endswith("%"):
        value = Fraction(_decimal(s[:-1])) / 100
    elif "/" in s:
        num, _, den = s.partition("/")
        value = Fraction(int(num), int(den))
    else:
        value = Fraction(_decimal(s))
    if not 0 < value <= 1:
        raise Unreadable
    return float(value)


def code(table: Mapping[str, str]) -> Converter:
    """A code-table lookup (department code → canonical enum value); codes may arrive as
    strings or numbers."""

    def convert(value: object) -> str:
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise Unreadable
        key = str(value).strip()
        if key not in table:
            raise Unreadable
        return table[key]

    return convert


#: name → (converter, how many source fields it reads). `code` is bound per enum field.
LIBRARY: Final[Mapping[str, tuple[Converter, int]]] = {
    "text": (text, 1),
    "id_number": (id_number, 1),
    "credit_code": (credit_code, 1),
    "region_code": (region_code, 1),
    "date8": (date8, 1),
    "date": (any_date, 1),
    "month6": (month6, 1),
    "count": (count, 1),
    "integer": (integer, 1),
    "number": (number, 1),
    "yuan_to_fen": (yuan_to_fen, 1),
    "area": (area, 1),
    "flag": (flag, 1),
    "beijing_time": (beijing_time, 1),
    "epoch_ms": (epoch_ms, 1),
    "share": (share, 2),
}
