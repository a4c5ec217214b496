"""The whole demo policy, exhaustively: every caller × service item × record type × field, and
every caller × item × claim type, decided by gateway.domain.policy and checked against an oracle
read straight from the TOML with tomllib (not through the parser under test).

A leak is a decision that lets out something the file does not grant; a false denial is a
granted combination refused. Both must be zero, and both sides are counted and printed.
"""

from __future__ import annotations

import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from gateway.domain.errors import PermissionDenied
from gateway.domain.policy import CLAIM_TYPES, RECORD_FIELDS, Policy, load_policy

DEMO = Path(__file__).resolve().parents[2] / "deploy" / "config" / "policy.toml"
# outsiders: a caller and an item the file does not know, and a record type that does not exist
UNKNOWN_CALLER = "unknown-system"
UNKNOWN_ITEM = "unknown-item"
RECORD_TYPES = [*sorted(RECORD_FIELDS), "passport"]


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return tomllib.loads(DEMO.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(DEMO)


def _callers(raw: dict[str, Any]) -> list[str]:
    return [*sorted(raw["callers"]), UNKNOWN_CALLER]


def _items(raw: dict[str, Any]) -> list[str]:
    return [*sorted(raw["items"]), UNKNOWN_ITEM]


def _expected_reason(raw: dict[str, Any], caller: str, item: str) -> str | None:
    if caller not in raw["callers"]:
        return "CALLER_UNKNOWN"
    if item not in raw["items"]:
        return "ITEM_UNKNOWN"
    if caller not in raw["items"][item]["callers"]:
        return "ITEM_NOT_ALLOWED"
    return None


def test_record_matrix(raw: dict[str, Any], policy: Policy) -> None:
    allowed = denied = leaks = false_denials = 0
    wrong_reason: list[tuple[str, ...]] = []
    reasons: Counter[str] = Counter()
    for caller in _callers(raw):
        for item in _items(raw):
            gate = _expected_reason(raw, caller, item)
            grants = raw["items"].get(item, {}).get("records", {}) if gate is None else {}
            for record in RECORD_TYPES:
                granted = set(grants.get(record, ()))
                fields = sorted(RECORD_FIELDS.get(record, {"number"}))
                # each field alone, then the empty mask (= everything allowed)
                for mask in [[f] for f in fields] + [[]]:
                    if gate is not None:
                        expect_reason: str | None = gate
                    elif record not in grants:
                        expect_reason = "RECORD_NOT_ALLOWED"
                    elif mask and not set(mask) & granted:
                        expect_reason = "FIELD_NOT_ALLOWED"
                    else:
                        expect_reason = None
                    try:
                        out = policy.authorize_record(caller, item, record, mask)
                    except PermissionDenied as err:
                        denied += 1
                        reasons[err.reason] += 1
                        if expect_reason is None:
                            false_denials += 1
                        elif err.reason != expect_reason:
                            wrong_reason.append((caller, item, record, *mask, err.reason))
                        continue
                    allowed += 1
                    expected_out = set(mask) & granted if mask else granted
                    if expect_reason is not None or not out <= granted:
                        leaks += 1
                    elif out != expected_out:
                        false_denials += 1
    print(
        f"\nrecord matrix: {allowed + denied} decisions, {allowed} allowed, {denied} denied, "
        f"{leaks} leaks, {false_denials} false denials; denials by reason {dict(reasons)}"
    )
    assert leaks == 0
    assert false_denials == 0
    assert wrong_reason == []
    # the matrix is not vacuous: exactly the granted combinations answered (each granted field
    # alone, plus the empty mask per grant), and every rule was exercised
    expected_allowed = sum(
        len(fields) + 1
        for spec in raw["items"].values()
        for _ in spec["callers"]
        for fields in spec.get("records", {}).values()
    )
    assert allowed == expected_allowed
    assert denied > 10 * allowed
    assert set(reasons) == {
        "CALLER_UNKNOWN",
        "ITEM_UNKNOWN",
        "ITEM_NOT_ALLOWED",
        "RECORD_NOT_ALLOWED",
        "FIELD_NOT_ALLOWED",
    }


def test_full_mask_returns_exactly_the_grant(raw: dict[str, Any], policy: Policy) -> None:
    checked = 0
    for item, spec in raw["items"].items():
        for caller in spec["callers"]:
            for record, fields in spec.get("records", {}).items():
                everything = sorted(RECORD_FIELDS[record])
                assert policy.authorize_record(caller, item, record, everything) == set(fields)
                assert policy.authorize_record(caller, item, record, []) == set(fields)
                checked += 1
    print(f"\nfull-mask checks: {checked}")
    assert checked > 0


def test_claim_matrix(raw: dict[str, Any], policy: Policy) -> None:
    allowed = denied = leaks = false_denials = 0
    wrong_reason: list[tuple[str, ...]] = []
    for caller in _callers(raw):
        for item in _items(raw):
            gate = _expected_reason(raw, caller, item)
            granted = set(raw["items"].get(item, {}).get("claims", ())) if gate is None else set()
            for claim in [*sorted(CLAIM_TYPES), "household.horoscope"]:
                expect = gate or (None if claim in granted else "CLAIM_NOT_ALLOWED")
                try:
                    policy.authorize_claims(caller, item, [claim])
                except PermissionDenied as err:
                    denied += 1
                    if expect is None:
                        false_denials += 1
                    elif err.reason != expect:
                        wrong_reason.append((caller, item, claim, err.reason))
                    continue
                allowed += 1
                if expect is not None:
                    leaks += 1
    print(
        f"\nclaim matrix: {allowed + denied} decisions, {allowed} allowed, {denied} denied, "
        f"{leaks} leaks, {false_denials} false denials"
    )
    assert leaks == 0
    assert false_denials == 0
    assert wrong_reason == []
    expected_allowed = sum(
        len(spec.get("claims", ())) for spec in raw["items"].values() for _ in spec["callers"]
    )
    assert allowed == expected_allowed
    assert denied > allowed


def test_listed_items_match_the_file(raw: dict[str, Any], policy: Policy) -> None:
    for caller in _callers(raw):
        expected = sorted(code for code, spec in raw["items"].items() if caller in spec["callers"])
        assert [i.code for i in policy.items_for(caller)] == expected
