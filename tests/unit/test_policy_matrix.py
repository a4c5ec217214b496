"""The whole deployed policy, exhaustively: every caller × service item × evidence type ×
field, every caller × item × claim, every granted claim's repeat bound and parameter
constraints, and every caller's limits, decided by gateway.domain.policy and checked against
an oracle read straight from the TOML with tomllib (not through the parser under test). The
evidence types, fields and claims are the deployed catalogue's.

A leak is a decision that lets out something the file does not grant; a false denial is a
granted combination refused. Both must be zero, and both sides are counted and printed.
"""

from __future__ import annotations

import tomllib
from collections import Counter
from typing import Any

import pytest

from gateway.domain.errors import PermissionDenied
from gateway.domain.policy import Policy, RateLimit
from tests.support.rules import POLICY_FILE, catalogue, deployed_policy

DEMO = POLICY_FILE
CATALOGUE = catalogue()
EVIDENCE_TYPES, CLAIM_TYPES = CATALOGUE.codes()
# outsiders: a caller and an item the file does not know, and an evidence type and a claim
# the catalogue does not have
UNKNOWN_CALLER = "unknown-system"
UNKNOWN_ITEM = "unknown-item"
RECORD_TYPES = [*sorted(EVIDENCE_TYPES), "passport"]
CLAIMS = [*sorted(CLAIM_TYPES), "household.horoscope"]
# the built-in limits when [defaults] does not set them
BUILT_IN_RATE = {"per_second": 50, "burst": 100}
BUILT_IN_BUDGET = {"per_day": 200}


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return tomllib.loads(DEMO.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def policy() -> Policy:
    return deployed_policy()


def _callers(raw: dict[str, Any]) -> list[str]:
    return [*sorted(raw["callers"]), UNKNOWN_CALLER]


def _items(raw: dict[str, Any]) -> list[str]:
    return [*sorted(raw["items"]), UNKNOWN_ITEM]


def _fields(record: str) -> set[str]:
    return set(CATALOGUE.evidence_fields(record) or {"number"})


def _expected_reason(raw: dict[str, Any], caller: str, item: str) -> str | None:
    if caller not in raw["callers"]:
        return "CALLER_UNKNOWN"
    if item not in raw["items"]:
        return "ITEM_UNKNOWN"
    if caller not in raw["items"][item]["callers"]:
        return "ITEM_NOT_ALLOWED"
    return None


def _claim_grants(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """claim → its table ({} for a claim listed in `claims`), straight from the file."""
    out: dict[str, dict[str, Any]] = {c: {} for c in spec.get("claims", ())}
    out.update(spec.get("claim", {}))
    return out


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
                fields = sorted(_fields(record))
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
                    elif set(out) != expected_out:
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
                everything = sorted(_fields(record))
                assert policy.authorize_record(caller, item, record, everything) == set(fields)
                assert policy.authorize_record(caller, item, record, []) == set(fields)
                checked += 1
    print(f"\nfull-mask checks: {checked}")
    assert checked > 0


def test_claim_matrix(raw: dict[str, Any], policy: Policy) -> None:
    allowed = denied = leaks = false_denials = 0
    wrong_reason: list[tuple[str, ...]] = []
    reasons: Counter[str] = Counter()
    for caller in _callers(raw):
        for item in _items(raw):
            gate = _expected_reason(raw, caller, item)
            granted = set(_claim_grants(raw["items"].get(item, {}))) if gate is None else set()
            for claim in CLAIMS:
                expect = gate or (None if claim in granted else "CLAIM_NOT_ALLOWED")
                try:
                    # no parameters: a constrained claim gets its pinned values filled in
                    policy.authorize_claims(caller, item, [(claim, {})])
                except PermissionDenied as err:
                    denied += 1
                    reasons[err.reason] += 1
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
        f"{leaks} leaks, {false_denials} false denials; denials by reason {dict(reasons)}"
    )
    assert leaks == 0
    assert false_denials == 0
    assert wrong_reason == []
    expected_allowed = sum(
        len(_claim_grants(spec)) for spec in raw["items"].values() for _ in spec["callers"]
    )
    assert allowed == expected_allowed
    assert denied > allowed
    assert set(reasons) == {
        "CALLER_UNKNOWN",
        "ITEM_UNKNOWN",
        "ITEM_NOT_ALLOWED",
        "CLAIM_NOT_ALLOWED",
    }


def test_repeat_matrix(raw: dict[str, Any], policy: Policy) -> None:
    """Each granted claim as often as the file allows, then once more; alone and after one
    of every other granted claim (each type counts on its own)."""
    checked = 0
    for item, spec in raw["items"].items():
        grants = _claim_grants(spec)
        for caller in spec["callers"]:
            for claim, table in grants.items():
                times = table.get("repeat", 1)
                others: list[tuple[str, dict[str, Any]]] = [(c, {}) for c in grants if c != claim]
                for before in ([], others):
                    asked = [*before, *[(claim, {})] * times]
                    assert len(policy.authorize_claims(caller, item, asked)) == len(asked)
                    with pytest.raises(PermissionDenied) as caught:
                        policy.authorize_claims(caller, item, [*asked, (claim, {})])
                    assert caught.value.reason == "CLAIM_REPEATED"
                    checked += 1
    print(f"\nrepeat checks: {checked}")
    assert checked == 2 * sum(
        len(_claim_grants(spec)) for spec in raw["items"].values() for _ in spec["callers"]
    )


def _outside(kind: str, rule: dict[str, Any], attributes: dict[str, str]) -> list[Any]:
    """Values a rule refuses, worked out from the rule as written."""
    if "fixed" in rule:
        fixed = rule["fixed"]
        if isinstance(fixed, bool):
            return [not fixed]
        if isinstance(fixed, int):
            return [fixed - 1, fixed + 1]
        return [v for v in ("110000", "2020-01", "medical", "x") if v != fixed]
    if "item" in rule:
        own = attributes[rule["item"]]
        return [v for v in ("110000", "350000", own[:4] + "00") if v != own]
    out: list[Any] = []
    if "in" in rule:
        values = rule["in"]
        if kind == "integer":
            out += [max(values) + 1, min(values) - 1]
        else:
            out += [v for v in ("110000", "spouse", "x") if v not in values]
    if "min" in rule:
        assert kind == "integer", "a text bound: extend the oracle"
        out.append(rule["min"] - 1)
    if "max" in rule:
        assert kind == "integer", "a text bound: extend the oracle"
        out.append(rule["max"] + 1)
    return out


def _inside(rule: dict[str, Any], attributes: dict[str, str]) -> list[Any]:
    """Values a rule accepts, as written (leaving the parameter out is always one)."""
    if "fixed" in rule:
        return [None] + ([rule["fixed"]] if rule["fixed"] != "" else [""])
    if "item" in rule:
        return [None, attributes[rule["item"]]]
    return [None, *rule.get("in", ()), *[rule[k] for k in ("min", "max") if k in rule]]


def test_parameter_matrix(raw: dict[str, Any], policy: Policy) -> None:
    """Every constrained parameter of every granted claim, with values inside and outside its
    rule, each on its own; what leaves is the value given or the one the file pins."""
    allowed = denied = leaks = false_denials = wrong = 0
    refusals: list[tuple[str, str]] = []
    rules: Counter[str] = Counter()
    for item, spec in raw["items"].items():
        attributes = {k: v for k, v in spec.items() if isinstance(v, str) and k != "name"}
        for claim, table in _claim_grants(spec).items():
            kinds = CATALOGUE.claim_params(claim)
            assert kinds is not None
            for name, rule in table.get("params", {}).items():
                rules[next(k for k in ("fixed", "item", "in", "min", "max") if k in rule)] += 1
                pinned = rule.get("fixed", attributes.get(rule.get("item", "")))
                for caller in spec["callers"]:
                    for value in _inside(rule, attributes):
                        try:
                            out = policy.authorize_claims(caller, item, [(claim, {name: value})])
                        except PermissionDenied:
                            false_denials += 1
                            continue
                        allowed += 1
                        if value in (None, "") and pinned is not None:
                            expected = pinned if pinned != "" else None
                        else:
                            expected = value
                        if out[0][name] != expected or type(out[0][name]) is not type(expected):
                            leaks += 1
                    for value in _outside(kinds[name], rule, attributes):
                        try:
                            policy.authorize_claims(caller, item, [(claim, {name: value})])
                        except PermissionDenied as err:
                            denied += 1
                            refusals.append((err.reason, err.message))
                            wrong += f"parameter {name} " not in err.message
                            continue
                        leaks += 1
    print(
        f"\nparameter matrix: {allowed + denied} decisions, {allowed} allowed, {denied} denied, "
        f"{leaks} leaks, {false_denials} false denials; rules {dict(rules)}"
    )
    assert leaks == 0
    assert false_denials == 0
    assert {reason for reason, _ in refusals} == {"CLAIM_PARAMS_NOT_ALLOWED"}
    assert wrong == 0  # each refusal names the parameter
    # not vacuous: the deployed file uses every kind of rule
    assert set(rules) >= {"fixed", "item", "in", "min"}
    assert allowed > 0
    assert denied > 0


def test_parsed_grants_match_the_file(raw: dict[str, Any], policy: Policy) -> None:
    for code, spec in raw["items"].items():
        item = policy.items[code]
        grants = _claim_grants(spec)
        assert set(item.claims) == set(grants)
        for claim, table in grants.items():
            assert item.claims[claim].repeat == table.get("repeat", 1)
            assert set(item.claims[claim].params) == set(table.get("params", {}))


def test_caller_limits_match_the_file(raw: dict[str, Any], policy: Policy) -> None:
    defaults = raw.get("defaults", {})
    default_rate = defaults.get("rate", BUILT_IN_RATE)
    default_budget = defaults.get("subject_budget", BUILT_IN_BUDGET)
    for caller_id, spec in raw["callers"].items():
        rate = spec.get("rate", default_rate)
        budget = spec.get("subject_budget", default_budget)
        caller = policy.callers[caller_id]
        assert caller.rate == RateLimit(float(rate["per_second"]), rate["burst"])
        assert caller.subject_budget == RateLimit(budget["per_day"] / 86400, budget["per_day"]), (
            caller_id
        )
        assert caller.roles == set(spec["roles"])
    assert set(policy.callers) == set(raw["callers"])


def test_listed_items_match_the_file(raw: dict[str, Any], policy: Policy) -> None:
    for caller in _callers(raw):
        expected = sorted(code for code, spec in raw["items"].items() if caller in spec["callers"])
        assert [i.code for i in policy.items_for(caller)] == expected
