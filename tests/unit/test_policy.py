"""Policy parsing against the evidence catalogue (precise errors), decisions, explanations,
rate and subject-budget defaults, and the `proofless policy` CLI.

Claim parameter constraints and the per-request repeat bound: test_policy_constraints.py.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.cli.main import main
from gateway.domain.errors import ConfigError, PermissionDenied
from gateway.domain.policy import (
    DEFAULT_RATE,
    DEFAULT_SUBJECT_BUDGET,
    ClaimGrant,
    Policy,
    RateLimit,
)
from gateway.domain.policy_file import load_policy, parse_policy
from tests.support.rules import (
    CATALOGUE_DIR,
    POLICY_FILE,
    ROOT,
    catalogue,
    deployed_policy,
    policy_from,
)

DEMO = POLICY_FILE
CATALOGUE = catalogue()
EVIDENCE_TYPES, CLAIM_TYPES = CATALOGUE.codes()

SMALL = b"""
[defaults]
rate = { per_second = 5, burst = 10 }
subject_budget = { per_day = 30 }

[callers.window]
name = "window"
roles = ["approval"]
rate = { per_second = 100, burst = 200 }
subject_budget = { per_day = 500 }

[callers.other]
name = "other"
roles = ["approval"]

[callers.audit]
name = "audit"
roles = ["auditor"]

[items.sale]
name = "sale"
callers = ["window"]
purpose_required = true
claims = ["property.ownership"]
[items.sale.records]
property = ["certificate_number", "location"]
household = ["name", "members"]

[items.card]
name = "card"
callers = ["window", "other"]
consent_required = true
covert_embargo_days = 30
claims = ["household.residence"]
"""


@pytest.fixture
def small() -> Policy:
    return policy_from(SMALL, "small.toml")


def _denied(call: object, *args: object) -> str:
    with pytest.raises(PermissionDenied) as caught:
        call(*args)  # type: ignore[operator]
    return caught.value.reason


# ---- parsing ----------------------------------------------------------------------------


def test_demo_policy_parses() -> None:
    policy = load_policy(DEMO, CATALOGUE)
    assert policy.version == hashlib.sha256(DEMO.read_bytes()).hexdigest()
    assert policy.source == str(DEMO)
    assert policy.catalogue == CATALOGUE.version
    assert (policy.evidence_types, policy.claim_types) == CATALOGUE.codes()
    assert {
        "housing-transfer",
        "resident-pension",
        "retirement",
        "ss-card",
        "student-hukou-transfer",
        "subsistence-allowance",
        "subsistence-review",
        "nurse-licence",
    } <= set(policy.items)
    assert policy.items["subsistence-allowance"].consent_required
    assert policy.items["subsistence-allowance"].covert_embargo_days == 0
    assert policy.items["subsistence-review"].covert_embargo_days == 90
    assert policy.items["housing-transfer"].attributes == {"region": "350505"}
    assert policy.items["ss-card"].attributes == {}
    assert {i.code for i in policy.items_for("quangang-window")} >= {
        "housing-transfer",
        "ss-card",
        "student-hukou-transfer",
    }
    assert {i.code for i in policy.items_for("fuan-hrss")} == {
        "resident-pension",
        "retirement",
        "ss-card",
    }
    assert policy.items_for("auditor") == ()
    assert policy.has_role("auditor", "auditor")
    assert not policy.has_role("auditor", "approval")
    assert not policy.has_role("stranger", "approval")


def test_support_loader_is_the_file_loader() -> None:
    assert deployed_policy() == load_policy(DEMO, CATALOGUE)


def test_demo_policy_never_grants_the_id_number() -> None:
    # the caller already has the ID number; echoing it back is disclosure for nothing
    policy = deployed_policy()
    for item in policy.items.values():
        for fields in item.records.values():
            assert "id_number" not in fields


def test_parsed_values(small: Policy) -> None:
    assert small.version == hashlib.sha256(SMALL).hexdigest()
    assert small.source == "small.toml"
    assert small.catalogue == CATALOGUE.version
    assert small.callers["window"].rate == RateLimit(100.0, 200)
    assert small.callers["other"].rate == RateLimit(5.0, 10)
    assert small.callers["audit"].roles == {"auditor"}
    sale = small.items["sale"]
    assert sale.records == {
        "property": {"certificate_number", "location"},
        "household": {"name", "members"},
    }
    # a claim listed in `claims`: once per request, parameters free
    assert sale.claims == {"property.ownership": ClaimGrant("property.ownership")}
    assert sale.claims["property.ownership"].repeat == 1
    assert sale.claims["property.ownership"].params == {}
    assert sale.purpose_required
    assert not sale.consent_required
    card = small.item("card")
    assert card is not None
    assert card.consent_required
    assert card.covert_embargo_days == 30
    assert card.records == {}
    assert small.item("nope") is None
    assert small.caller("window") is not None
    assert small.caller("nope") is None
    assert [i.code for i in small.items_for("window")] == ["card", "sale"]
    assert [i.code for i in small.items_for("other")] == ["card"]


def test_subject_budget_per_day(small: Policy) -> None:
    # a budget of N calls a day is a bucket of N that refills over the day
    assert small.callers["window"].subject_budget == RateLimit(500 / 86400, 500)
    assert small.callers["other"].subject_budget == RateLimit(30 / 86400, 30)
    assert small.callers["audit"].subject_budget == RateLimit(30 / 86400, 30)


def test_defaults_without_defaults() -> None:
    policy = policy_from(b'[callers.a]\nname = "a"\nroles = ["portal"]\n', "p")
    assert policy.callers["a"].rate == DEFAULT_RATE
    assert policy.callers["a"].subject_budget == DEFAULT_SUBJECT_BUDGET
    assert RateLimit(200 / 86400, 200) == DEFAULT_SUBJECT_BUDGET
    assert policy.items == {}


def test_defaults_apply_one_by_one() -> None:
    # [defaults] may set the rate alone or the budget alone; the other stays built in
    rate_only = policy_from(
        b'[defaults]\nrate = { per_second = 3, burst = 4 }\n[callers.a]\nname = "a"\n'
        b'roles = ["portal"]\n',
        "p",
    )
    assert rate_only.callers["a"].rate == RateLimit(3.0, 4)
    assert rate_only.callers["a"].subject_budget == DEFAULT_SUBJECT_BUDGET
    budget_only = policy_from(
        b'[defaults]\nsubject_budget = { per_day = 7 }\n[callers.a]\nname = "a"\n'
        b'roles = ["portal"]\n',
        "p",
    )
    assert budget_only.callers["a"].rate == DEFAULT_RATE
    assert budget_only.callers["a"].subject_budget == RateLimit(7 / 86400, 7)


def test_demo_subject_budgets() -> None:
    policy = deployed_policy()
    for caller in policy.callers.values():
        assert caller.subject_budget == RateLimit(200 / 86400, 200)
    assert policy.callers["auditor"].rate == RateLimit(20.0, 40)
    assert policy.callers["quangang-window"].rate == RateLimit(100.0, 200)


def test_version_changes_with_any_byte() -> None:
    assert policy_from(SMALL + b"\n", "x").version != policy_from(SMALL, "x").version


def test_string_keys_of_an_item_are_its_attributes() -> None:
    policy = policy_from(
        b'[items.i]\nname = "i"\ncallers = []\nclaims = ["household.residence"]\n'
        b'region = "350505"\nowner = "x"\n',
        "p",
    )
    assert policy.items["i"].attributes == {"region": "350505", "owner": "x"}


class _Vehicles:
    """Another catalogue: the parser knows evidence and claims only through `Vocabulary`."""

    version = "vehicles-1"

    def evidence_fields(self, code: str) -> frozenset[str] | None:
        return frozenset({"plate", "owner"}) if code == "vehicle" else None

    def claim_params(self, code: str) -> Mapping[str, str] | None:
        return {"plate": "string"} if code == "vehicle.registered" else None

    def codes(self) -> tuple[frozenset[str], frozenset[str]]:
        return frozenset({"vehicle"}), frozenset({"vehicle.registered"})


def test_the_policy_is_checked_against_the_vocabulary_it_is_given() -> None:
    data = (
        b'[callers.a]\nname = "a"\nroles = ["approval"]\n'
        b'[items.i]\nname = "i"\ncallers = ["a"]\nclaims = ["vehicle.registered"]\n'
        b'[items.i.records]\nvehicle = ["plate"]\n'
    )
    policy = parse_policy(data, "v.toml", _Vehicles())
    assert policy.catalogue == "vehicles-1"
    assert policy.authorize_record("a", "i", "vehicle", []) == {"plate"}
    assert policy.explain("a", "i", "household").startswith("DENIED (PROOF_UNKNOWN)")
    # the same file against the deployed catalogue: no such evidence type or claim
    with pytest.raises(ConfigError, match=re.escape("the catalogue has no claim 'vehicle.")):
        parse_policy(data, "v.toml", CATALOGUE)
    # and the deployed policy against this catalogue
    with pytest.raises(ConfigError, match="the catalogue has no"):
        parse_policy(DEMO.read_bytes(), str(DEMO), _Vehicles())


BAD = [
    (b"[callers", "not valid TOML"),
    (b"\xff", "not UTF-8"),
    (b"extra = 1", "unknown top-level key 'extra'"),
    (b"callers = 1", "[callers]: must be a table"),
    (b"items = 1", "[items]: must be a table"),
    (
        b'[callers.a]\nname = "a"\nroles = ["approval"]\ncolour = "red"',
        "[callers.a] key 'colour': unknown key",
    ),
    (b'[callers.a]\nroles = ["approval"]', "[callers.a] key 'name': is required"),
    (b'[callers.a]\nname = 1\nroles = ["approval"]', "[callers.a] key 'name': must be a string"),
    (
        b'[callers.a]\nname = "a"\nroles = ["admin"]',
        "[callers.a] key 'roles': unknown role 'admin'",
    ),
    (
        b'[callers.a]\nname = "a"\nroles = []',
        "[callers.a] key 'roles': must name at least one role",
    ),
    (b'[callers.a]\nname = "a"\nroles = "approval"', "[callers.a] key 'roles': must be an array"),
    (
        b'[callers.a]\nname = "a"\nroles = [1]',
        "[callers.a] key 'roles': must be an array of strings",
    ),
    (b'[callers.a]\nname = "a"\nroles = ["approval", "approval"]', "lists a value twice"),
    (b'[callers."A B"]\nname = "a"\nroles = ["approval"]', "[callers.A B]: caller id must be"),
    (
        b'[callers.a]\nname = "a"\nroles = ["approval"]\nrate = { per_second = 0, burst = 1 }',
        "[callers.a.rate] key 'per_second': must be greater than 0",
    ),
    (
        b'[callers.a]\nname = "a"\nroles = ["approval"]\nrate = { per_second = 1, burst = 0 }',
        "[callers.a.rate] key 'burst': must be at least 1",
    ),
    (
        b'[callers.a]\nname = "a"\nroles = ["approval"]\nrate = { per_second = 1, burst = 1.5 }',
        "[callers.a.rate] key 'burst': must be an integer",
    ),
    (
        b'[callers.a]\nname = "a"\nroles = ["approval"]\nrate = { per_second = true, burst = 1 }',
        "key 'per_second': must be a number",
    ),
    (
        b'[callers.a]\nname = "a"\nroles = ["approval"]\n'
        b"rate = { per_second = 1, burst = 1, x = 1 }",
        "[callers.a.rate] key 'x': unknown key",
    ),
    (
        b'[callers.a]\nname = "a"\nroles = ["approval"]\nrate = { per_second = 1 }',
        "[callers.a.rate] key 'burst': is required",
    ),
    (b"[defaults]\nother = 1", "[defaults] key 'other': unknown key"),
    (
        b"[defaults]\nrate = { per_second = -1, burst = 1 }",
        "[defaults.rate] key 'per_second': must be greater than 0",
    ),
    # the per-subject budget: whole calls a day
    (
        b"[defaults]\nsubject_budget = { per_day = 0 }",
        "[defaults.subject_budget] key 'per_day': must be at least 1",
    ),
    (
        b"[defaults]\nsubject_budget = { per_second = 1 }",
        "[defaults.subject_budget] key 'per_second': unknown key; expected one of per_day",
    ),
    (b"[defaults]\nsubject_budget = {}", "[defaults.subject_budget] key 'per_day': is required"),
    (b"[defaults]\nsubject_budget = 200", "[defaults] key 'subject_budget': must be a table"),
    (
        b'[callers.a]\nname = "a"\nroles = ["approval"]\nsubject_budget = { per_day = 1.5 }',
        "[callers.a.subject_budget] key 'per_day': must be an integer",
    ),
    (
        b'[callers.a]\nname = "a"\nroles = ["approval"]\nsubject_budget = { per_day = true }',
        "[callers.a.subject_budget] key 'per_day': must be an integer",
    ),
    (
        b'[callers.a]\nname = "a"\nroles = ["approval"]\nsubject_budget = { per_day = -5 }',
        "[callers.a.subject_budget] key 'per_day': must be at least 1",
    ),
    (
        b'[items.i]\nname = "i"\ncallers = ["ghost"]\nclaims = ["household.residence"]',
        "[items.i] key 'callers': names caller 'ghost', which has no [callers.ghost]",
    ),
    (
        b'[callers.p]\nname = "p"\nroles = ["portal"]\n'
        b'[items.i]\nname = "i"\ncallers = ["p"]\nclaims = ["household.residence"]',
        "caller 'p' lacks the approval role",
    ),
    (
        b'[items.i]\nname = "i"\nclaims = ["household.residence"]',
        "[items.i] key 'callers': is required",
    ),
    (
        b'[items.i]\nname = "i"\ncallers = []\nclaims = ["household.mood"]',
        "[items.i] key 'claims': the catalogue has no claim 'household.mood'",
    ),
    (
        b'[items.i]\nname = "i"\ncallers = []\nclaims = ["household.residence"] \nclaims_extra = 1',
        "[items.i] key 'claims_extra': unknown key",
    ),
    (b'[items.i]\nname = "i"\ncallers = []', "[items.i]: grants neither records nor claims"),
    (
        b'[items.i]\nname = "i"\ncallers = []\nclaims = ["household.residence"]\n'
        b'consent_required = "yes"',
        # a string under a known key is not taken for an attribute
        "[items.i] key 'consent_required': must be a boolean",
    ),
    (
        b'[items.i]\nname = "i"\ncallers = []\nclaims = ["household.residence"]\n'
        b"covert_embargo_days = -1",
        "[items.i] key 'covert_embargo_days': must be between 0 and 3650",
    ),
    (
        b'[items.i]\nname = "i"\ncallers = []\nclaims = ["household.residence"]\n'
        b"covert_embargo_days = 3651",
        "[items.i] key 'covert_embargo_days': must be between 0 and 3650",
    ),
    (
        b'[items.i]\nname = "i"\ncallers = []\nclaims = ["household.residence"]\n'
        b"covert_embargo_days = true",
        "key 'covert_embargo_days': must be an integer",
    ),
    # an unknown key is an attribute only when it is a lower-case name with a string value
    (
        b'[items.i]\nname = "i"\ncallers = []\nclaims = ["household.residence"]\nowner = 1',
        "[items.i] key 'owner': unknown key",
    ),
    (
        b'[items.i]\nname = "i"\ncallers = []\nclaims = ["household.residence"]\nOwner = "x"',
        "[items.i] key 'Owner': unknown key",
    ),
    (
        b'[items.i]\nname = "i"\ncallers = []\n[items.i.records]\npassport = ["number"]',
        "[items.i.records] key 'passport': the catalogue has no such evidence type",
    ),
    (
        b'[items.i]\nname = "i"\ncallers = []\n[items.i.records]\nproperty = ["price"]',
        "[items.i.records] key 'property': unknown field 'price' of property; expected "
        "area_square_meters, certificate_number",
    ),
    (
        b'[items.i]\nname = "i"\ncallers = []\n[items.i.records]\nhousehold = ["members.name"]',
        "unknown field 'members.name' of household",
    ),
    (
        b'[items.i]\nname = "i"\ncallers = []\n[items.i.records]\nhousehold = []',
        "[items.i.records] key 'household': grants no field",
    ),
    (
        b'[items.i]\nname = "i"\ncallers = []\n[items.i.records]\nhousehold = ["name", "name"]',
        "[items.i.records] key 'household': lists a value twice",
    ),
    (
        b'[items.i]\nname = "i"\ncallers = []\nrecords = 1',
        "[items.i] key 'records': must be a table",
    ),
    (
        b'[items.I]\nname = "i"\ncallers = []\nclaims = ["household.residence"]',
        "[items.I]: item code must be",
    ),
]


@pytest.mark.parametrize(("data", "message"), BAD, ids=[m[:40] for _, m in BAD])
def test_bad_policies_are_precise(data: bytes, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)) as caught:
        policy_from(data, "deploy/config/policy.toml")
    assert caught.value.message.startswith("deploy/config/policy.toml: ")


def test_load_policy_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read policy") as caught:
        load_policy(tmp_path / "absent.toml", CATALOGUE)
    assert caught.value.message.startswith(f"{tmp_path / 'absent.toml'}: ")


# ---- decisions --------------------------------------------------------------------------


def test_authorize_record(small: Policy) -> None:
    assert small.authorize_record("window", "sale", "property", []) == {
        "certificate_number",
        "location",
    }
    assert small.authorize_record("window", "sale", "property", ["location", "seized"]) == {
        "location"
    }
    # the read mask names top-level fields (validated at the boundary); a dotted path is
    # not a field and never leaves
    assert small.authorize_record("window", "sale", "household", ("members.name", "members")) == {
        "members"
    }


@pytest.mark.parametrize(
    ("caller", "item", "record", "fields", "reason"),
    [
        ("ghost", "sale", "property", [], "CALLER_UNKNOWN"),
        ("window", "ghost", "property", [], "ITEM_UNKNOWN"),
        ("other", "sale", "property", [], "ITEM_NOT_ALLOWED"),
        ("audit", "sale", "property", [], "ITEM_NOT_ALLOWED"),
        ("window", "card", "household", [], "RECORD_NOT_ALLOWED"),
        ("window", "sale", "social_security", [], "RECORD_NOT_ALLOWED"),
        ("window", "sale", "passport", [], "RECORD_NOT_ALLOWED"),
        ("window", "sale", "property", ["seized"], "FIELD_NOT_ALLOWED"),
        ("window", "sale", "household", ["id_number", "address"], "FIELD_NOT_ALLOWED"),
        ("window", "sale", "household", ["name."], "FIELD_NOT_ALLOWED"),
        ("window", "sale", "household", ["members.name"], "FIELD_NOT_ALLOWED"),
        ("window", "sale", "household", ["members..name"], "FIELD_NOT_ALLOWED"),
        ("window", "sale", "household", ["id_number.x"], "FIELD_NOT_ALLOWED"),
    ],
)
def test_authorize_record_denials(
    small: Policy, caller: str, item: str, record: str, fields: list[str], reason: str
) -> None:
    assert _denied(small.authorize_record, caller, item, record, fields) == reason


def test_grant(small: Policy) -> None:
    assert small.grant("window", "sale") is small.items["sale"]
    assert small.grant("other", "card") is small.items["card"]
    assert _denied(small.grant, "other", "sale") == "ITEM_NOT_ALLOWED"
    assert _denied(small.grant, "ghost", "sale") == "CALLER_UNKNOWN"
    assert _denied(small.grant, "window", "ghost") == "ITEM_UNKNOWN"


def test_authorize_claims(small: Policy) -> None:
    assert small.authorize_claims("window", "sale", [("property.ownership", {})]) == [{}]
    # parameters the item does not constrain pass as given, in a fresh dict
    params = {"region": "350505", "owns": False}
    out = small.authorize_claims("window", "sale", [("property.ownership", params)])
    assert out == [params]
    assert out[0] is not params
    assert small.authorize_claims("other", "card", [("household.residence", {})]) == [{}]
    assert small.authorize_claims("window", "sale", []) == []
    assert _denied(small.authorize_claims, "window", "sale", [("household.residence", {})]) == (
        "CLAIM_NOT_ALLOWED"
    )
    assert _denied(small.authorize_claims, "window", "sale", [("x.y", {})]) == "CLAIM_NOT_ALLOWED"
    # the first refused claim decides, after the granted ones before it
    assert (
        _denied(
            small.authorize_claims,
            "window",
            "sale",
            [("property.ownership", {}), ("household.kinship", {})],
        )
        == "CLAIM_NOT_ALLOWED"
    )
    assert _denied(small.authorize_claims, "other", "sale", [("property.ownership", {})]) == (
        "ITEM_NOT_ALLOWED"
    )
    assert _denied(small.authorize_claims, "nobody", "sale", []) == "CALLER_UNKNOWN"
    assert _denied(small.authorize_claims, "window", "nothing", []) == "ITEM_UNKNOWN"


def test_claim_denial_names_known_types_only(small: Policy) -> None:
    with pytest.raises(PermissionDenied) as caught:
        small.authorize_claims("window", "sale", [("household.kinship", {})])
    assert "household.kinship" in caught.value.message


def test_denial_messages_carry_no_request_values(small: Policy) -> None:
    secret = "350505199001011234"
    with pytest.raises(PermissionDenied) as caught:
        small.authorize_claims("window", "sale", [(secret, {})])
    assert caught.value.reason == "CLAIM_NOT_ALLOWED"
    assert secret not in caught.value.message


def test_explain(small: Policy) -> None:
    text = small.explain("window", "sale", "property")
    assert text.startswith("ALLOWED")
    assert "certificate_number, location" in text
    assert "purpose required" in text
    assert text.endswith(f"policy {small.version[:12]}")
    claim = small.explain("window", "card", "household.residence")
    assert claim.startswith("ALLOWED: window may verify household.residence for card (card)")
    assert "at most 1 per request" in claim
    assert "parameters" not in claim  # listed in `claims`: nothing constrained
    assert "consent required" in small.explain("other", "card", "household.residence")
    assert "covert: hidden from the citizen for 30 days" in small.explain(
        "other", "card", "household.residence"
    )
    assert "covert" not in small.explain("window", "sale", "property")
    assert small.explain("other", "sale", "property").startswith("DENIED (ITEM_NOT_ALLOWED)")
    assert small.explain("ghost", "sale", "property").startswith("DENIED (CALLER_UNKNOWN)")
    assert small.explain("window", "ghost", "property").startswith("DENIED (ITEM_UNKNOWN)")
    assert small.explain("window", "card", "household").startswith("DENIED (RECORD_NOT_ALLOWED)")
    assert small.explain("window", "sale", "household.kinship").startswith(
        "DENIED (CLAIM_NOT_ALLOWED)"
    )
    unknown = small.explain("window", "sale", "horoscope")
    assert unknown.startswith("DENIED (PROOF_UNKNOWN)")
    # it lists what the catalogue has
    for code in EVIDENCE_TYPES | CLAIM_TYPES:
        assert code in unknown


# ---- properties -------------------------------------------------------------------------

_ALL_FIELDS = sorted(set().union(*(CATALOGUE.evidence_fields(e) or () for e in EVIDENCE_TYPES)))
_paths = st.one_of(
    st.sampled_from(_ALL_FIELDS),
    st.builds(lambda a, b: f"{a}.{b}", st.sampled_from(_ALL_FIELDS), st.text(max_size=8)),
    st.text(max_size=30),
)
_DEMO_RAW: dict[str, Any] = tomllib.loads(DEMO.read_text(encoding="utf-8"))


@settings(max_examples=300, deadline=None)
@given(
    mask=st.lists(_paths, max_size=8),
    record=st.sampled_from([*sorted(EVIDENCE_TYPES), "passport"]),
)
def test_a_mask_never_widens_the_grant(mask: list[str], record: str) -> None:
    policy = deployed_policy()
    for code, spec in _DEMO_RAW["items"].items():
        granted = spec.get("records", {}).get(record)
        for caller in spec["callers"]:
            if granted is None:
                assert _denied(policy.authorize_record, caller, code, record, mask) == (
                    "RECORD_NOT_ALLOWED"
                )
                continue
            # the oracle: whole granted fields, straight from the file
            expected = {p for p in mask if p in granted} if mask else set(granted)
            if not expected:
                assert _denied(policy.authorize_record, caller, code, record, mask) == (
                    "FIELD_NOT_ALLOWED"
                )
                continue
            out = policy.authorize_record(caller, code, record, mask)
            assert out == expected
            assert out <= set(granted)


def _raw_grants(spec: dict[str, Any]) -> dict[str, int]:
    """claim → times per request, read straight from the file."""
    out = dict.fromkeys(spec.get("claims", ()), 1)
    for claim, table in spec.get("claim", {}).items():
        out[claim] = table.get("repeat", 1)
    return out


@settings(max_examples=200, deadline=None)
@given(claims=st.lists(st.sampled_from(sorted(CLAIM_TYPES)) | st.text(max_size=20), max_size=6))
def test_claims_allowed_only_when_all_granted_within_repeat(claims: list[str]) -> None:
    policy = deployed_policy()
    for code, spec in _DEMO_RAW["items"].items():
        grants = _raw_grants(spec)
        # the first claim refused, in request order, decides
        expected: str | None = None
        seen: dict[str, int] = {}
        for claim in claims:
            if claim not in grants:
                expected = "CLAIM_NOT_ALLOWED"
                break
            seen[claim] = seen.get(claim, 0) + 1
            if seen[claim] > grants[claim]:
                expected = "CLAIM_REPEATED"
                break
        asked: list[tuple[str, dict[str, Any]]] = [(c, {}) for c in claims]
        for caller in spec["callers"]:
            if expected is None:
                assert len(policy.authorize_claims(caller, code, asked)) == len(claims)
            else:
                assert _denied(policy.authorize_claims, caller, code, asked) == expected


# ---- CLI --------------------------------------------------------------------------------


def test_cli_policy_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "check", str(DEMO), "--catalogue", str(CATALOGUE_DIR)]) == 0
    out = capsys.readouterr().out
    assert f"{DEMO}: valid, version {hashlib.sha256(DEMO.read_bytes()).hexdigest()}" in out
    assert f"(catalogue {CATALOGUE.version[:12]})" in out
    deployed = load_policy(DEMO, CATALOGUE)
    assert f"{len(deployed.callers)} callers, {len(deployed.items)} service items" in out
    assert "housing-transfer" in out
    assert "covert 90d" in out
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b'[items.i]\nname = "i"\ncallers = ["ghost"]\nclaims = ["household.residence"]')
    assert main(["policy", "check", str(bad), "--catalogue", str(CATALOGUE_DIR)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}: [items.i] key 'callers'" in err
    with pytest.raises(SystemExit) as exited:
        main(["policy"])
    assert exited.value.code == 2


def test_cli_policy_check_defaults_to_the_deployed_files(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(ROOT)
    assert main(["policy", "check"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("deploy/config/policy.toml: valid, version ")
    assert hashlib.sha256(DEMO.read_bytes()).hexdigest() in out


def test_cli_policy_check_against_another_catalogue(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the deployed policy against a catalogue without the property department
    smaller = tmp_path / "catalogue"
    smaller.mkdir()
    for name in ("household.toml", "social_security.toml"):
        shutil.copy(CATALOGUE_DIR / name, smaller / name)
    assert main(["policy", "check", str(DEMO), "--catalogue", str(smaller)]) == 1
    err = capsys.readouterr().err
    assert f"{DEMO}: [items.housing-transfer" in err
    assert "the catalogue has no" in err
    # no catalogue at all
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["policy", "check", str(DEMO), "--catalogue", str(empty)]) == 1
    assert "no catalogue files" in capsys.readouterr().err


def test_cli_policy_explain(capsys: pytest.CaptureFixture[str]) -> None:
    base = ["policy", "explain", "--policy", str(DEMO), "--catalogue", str(CATALOGUE_DIR)]
    args = ["--caller", "quangang-window", "--item", "housing-transfer", "--proof", "property"]
    assert main([*base, *args]) == 0
    assert "ALLOWED" in capsys.readouterr().out
    args = ["--caller", "fuan-hrss", "--item", "housing-transfer", "--proof", "property"]
    assert main([*base, *args]) == 1
    assert "DENIED (ITEM_NOT_ALLOWED)" in capsys.readouterr().out
    # a claim: its repeat bound and parameter constraints
    args = [
        "--caller",
        "quangang-window",
        "--item",
        "student-hukou-transfer",
        "--proof",
        "household.residence",
    ]
    assert main([*base, *args]) == 0
    out = capsys.readouterr().out
    assert "at most 1 per request" in out
    assert "parameters: region fixed to the item's region" in out
    args = ["--caller", "quangang-window", "--item", "housing-transfer", "--proof", "horoscope"]
    assert main([*base, *args]) == 1
    assert "DENIED (PROOF_UNKNOWN)" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exited:
        main([*base, "--caller", "quangang-window"])
    assert exited.value.code == 2
