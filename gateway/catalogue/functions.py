"""The domain functions claim rules may call, besides CEL's standard library. Pure.

    region_contains(outer, inner) -> bool    GB/T 2260 containment: a province 350000 holds
                                             35xxxx, a city 350500 holds 3505xx, a county
                                             only itself
    distinct_count(list) -> int              how many different values (e.g. months paid)
    kin_relation(applicant, other) -> string the other person's relation to the applicant,
                                             from both relations to the head of household;
                                             "" when the pair does not make it certain
    nfkc(string) -> string                   NFKC-normalised and trimmed: full- and
                                             half-width forms of a certificate number match
    add_days(date, int) -> string            a YYYY-MM-DD date moved by whole days
    add_months(month, int) -> string         a YYYY-MM month moved by whole months

Every function is total on its declared types: a malformed date or month gives "" rather
than an exception, so a department's odd value decides a claim as not holding instead of
failing the request.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping
from datetime import date, timedelta
from functools import lru_cache
from types import MappingProxyType
from typing import Any

from gateway.domain.idnumber import region_contains as _region_contains


@lru_cache(maxsize=4096)
def region_contains(outer: str, inner: str) -> bool:
    """Cached: a rule asks the same pair for every month of a contribution history."""
    return _region_contains(outer, inner)


def distinct_count(values: Iterable[Any]) -> int:
    return len(set(values))


# The other person's relation to the applicant, from both relations to the household head
# (与户主关系). Only pairs whose answer is certain are listed; any other pair (e.g. two
# grandchildren, who may be siblings or cousins) derives nothing and the claim does not hold.
# Key: (applicant's relation to head, other's relation to head).
KIN_RELATIONS: Mapping[tuple[str, str], str] = MappingProxyType(
    {
        ("head", "spouse"): "spouse",
        ("spouse", "head"): "spouse",
        ("head", "child"): "child",
        ("spouse", "child"): "child",
        ("child", "head"): "parent",
        ("child", "spouse"): "parent",
        ("child", "child"): "sibling",
        ("head", "parent"): "parent",
        ("parent", "head"): "child",
        ("head", "grandchild"): "grandchild",
        ("grandchild", "head"): "grandparent",
        ("head", "grandparent"): "grandparent",
        ("grandparent", "head"): "grandchild",
        ("head", "sibling"): "sibling",
        ("sibling", "head"): "sibling",
        ("sibling", "sibling"): "sibling",
        ("child", "parent"): "grandparent",
        ("parent", "child"): "grandchild",
        ("sibling", "parent"): "parent",
        ("parent", "sibling"): "child",
    }
)


def kin_relation(applicant_to_head: str, other_to_head: str) -> str:
    return KIN_RELATIONS.get((applicant_to_head, other_to_head), "")


def nfkc(value: str) -> str:
    """Certificate numbers such as 闽(2021)泉港区不动产权第0001234号 are typed with full- or
    half-width brackets and stray spaces; NFKC and trimming make both spellings compare equal."""
    return unicodedata.normalize("NFKC", value).strip()


def add_days(day: str, days: int) -> str:
    try:
        return (date.fromisoformat(day) + timedelta(days=days)).isoformat()
    except (ValueError, OverflowError):
        return ""


def add_months(month: str, months: int) -> str:
    if len(month) != 7 or month[4] != "-" or not (month[:4] + month[5:]).isdigit():
        return ""
    index = int(month[:4]) * 12 + int(month[5:]) - 1 + months
    if not 12 <= index < 10000 * 12 or not 1 <= int(month[5:]) <= 12:
        return ""
    return f"{index // 12:04d}-{index % 12 + 1:02d}"
