"""The audit entry of a configuration load: what changed between two snapshots of the rules
in force, by name, and a refused load with the version that stays."""

from __future__ import annotations

import dataclasses

from gateway.audit.entry import canonical_json, check_entry
from gateway.server.in_force import KIND_CONFIG, InForce, changes, config_entry
from tests.support.rules import catalogue, catalogue_with, deployed_policy, policy_from

SMALL = b"""
[callers.w]
name = "w"
roles = ["approval"]
[items.i]
name = "i"
callers = ["w"]
claims = ["household.residence"]
"""


def snapshot(policy: bytes | None = None, overrides: dict[str, object] | None = None) -> InForce:
    cat = catalogue_with(overrides) if overrides else catalogue()
    pol = policy_from(policy) if policy is not None else deployed_policy()
    return InForce(pol, cat)


def test_the_first_load_records_the_versions() -> None:
    new = snapshot()
    entry = config_entry(time="2026-12-06T00:00:00.000000Z", trigger="start", old=None, new=new)
    check_entry(entry)
    canonical_json(entry)
    assert entry["kind"] == KIND_CONFIG
    assert entry["outcome"] == "applied"
    assert entry["policy"] == {"old": "", "new": new.policy.version}
    assert entry["catalogue"] == {"old": "", "new": new.catalogue.version}
    assert entry["changes"] == {}


def test_changes_name_items_callers_and_departments() -> None:
    old = snapshot()
    new = snapshot(SMALL, {"household": {"timeout_ms": 999}})
    found = changes(old, new)
    assert found["items"]["added"] == ["i"]
    assert "housing-transfer" in found["items"]["removed"]
    assert found["callers"]["added"] == ["w"]
    assert found["departments"] == {"changed": ["household"]}
    assert "evidence_types" not in found


def test_an_item_edit_is_a_change_of_that_item_alone() -> None:
    old = snapshot(SMALL)
    edited = SMALL.replace(b'name = "i"', b'name = "i, renamed"')
    assert changes(old, snapshot(edited)) == {"items": {"changed": ["i"]}}


def test_a_refused_load_keeps_the_old_versions_and_says_why() -> None:
    current = snapshot()
    entry = config_entry(time="t", trigger="change", old=current, new=current, refused="x" * 1000)
    assert entry["outcome"] == "refused"
    assert entry["policy"]["old"] == entry["policy"]["new"] == current.policy.version
    assert len(entry["error"]) == 300
    assert "changes" not in entry


def test_snapshots_compare_by_value() -> None:
    a, b = snapshot(), snapshot()
    assert changes(a, b) == {}
    assert dataclasses.replace(a.policy) == b.policy
