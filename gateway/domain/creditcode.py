"""Unified social credit codes (统一社会信用代码, GB 32100-2015): an organisation's identifier.

18 characters from the 31-character alphabet "0123456789ABCDEFGHJKLMNPQRTUWXY" (no I, O, S, V,
Z): registration authority (1), organisation type (1), the 6-digit region code of the
registering authority, the 9-character organisation code (GB 11714-1997, with its own check
character) and a check character over the first 17 (GB 32100-2015 §4.3, below). Sole traders
(个体工商户, type 92) are people: their codes are personal data like ID numbers. Pure; no
error message repeats the code it rejects.
"""

from __future__ import annotations

from typing import Final

from gateway.domain.errors import FieldViolation

CODE_LENGTH: Final = 18
ALPHABET: Final = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_VALUE: Final = {c: i for i, c in enumerate(ALPHABET)}
# GB 32100-2015 §4.3: weight of position i is 3^(i) mod 31.
_WEIGHTS: Final = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
# GB 11714-1997: the organisation code's eight characters, weighted, check mod 11.
_ORG_WEIGHTS: Final = (3, 7, 9, 10, 5, 8, 4, 2)
_ORG_CHARS: Final = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def check_character(first17: str) -> str:
    """C18 = 31 − (Σ Cᵢ·Wᵢ mod 31), where a result of 31 is written 0 (GB 32100-2015 §4.3)."""
    total = sum(_VALUE[c] * w for c, w in zip(first17, _WEIGHTS, strict=True))
    return ALPHABET[(31 - total % 31) % 31]


def organisation_check_character(first8: str) -> str:
    """C9 = 11 − (Σ Cᵢ·Wᵢ mod 11); 10 is written X and 11 is written 0 (GB 11714-1997)."""
    total = sum(int(c, 36) * w for c, w in zip(first8, _ORG_WEIGHTS, strict=True))
    check = 11 - total % 11
    return "X" if check == 10 else "0" if check == 11 else str(check)


def credit_code_violation(value: str, field: str) -> FieldViolation | None:
    """The first rule `value` breaks, as one field violation, or None when it is valid."""
    if not value:
        return FieldViolation(field, "required: an 18-character unified social credit code")
    if len(value) != CODE_LENGTH:
        return FieldViolation(field, "must be exactly 18 characters (GB 32100-2015)")
    if any(c not in _VALUE for c in value):
        return FieldViolation(
            field, "must use only 0-9 and the letters A-Y without I, O, S, V, Z (GB 32100-2015)"
        )
    org = value[8:17]
    if any(c not in _ORG_CHARS for c in org[:8]) or org[8] != organisation_check_character(org[:8]):
        return FieldViolation(
            field, "organisation code (characters 9-17) fails its check (GB 11714-1997)"
        )
    if value[17] != check_character(value[:17]):
        return FieldViolation(field, "check character does not match (GB 32100-2015 checksum)")
    return None


def is_credit_code(value: str) -> bool:
    return credit_code_violation(value, "") is None


def is_sole_trader(code: str) -> bool:
    """个体工商户 (registration authority 9, type 2): the code identifies a person."""
    return code[:2] == "92"
