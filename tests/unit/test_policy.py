"""Policy parsing (precise errors), decisions, explanations and the `policy` CLI."""

from __future__ import annotations

import argparse
import hashlib
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.cli.certs import add_commands
from gateway.domain.errors import ConfigError, PermissionDenied
from gateway.domain.policy import (
    CLAIM_TYPES,
    DEFAULT_RATE,
    RECORD_FIELDS,
    Policy,
    RateLimit,
    load_policy,
    parse_policy,
)

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "deploy" / "config" / "policy.toml"

SMALL = b"""
[defaults]
rate = { per_second = 5, burst = 10 }

[callers.window]
name = "window"
roles = ["approval"]
rate = { per_second = 100, burst = 200 }

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
    return parse_policy(SMALL, "small.toml")


def _denied(call: object, *args: object) -> str:
    with pytest.raises(PermissionDenied) as caught:
        call(*args)  # type: ignore[operator]
    return caught.value.reason


# ---- parsing ----------------------------------------------------------------------------


def test_demo_policy_parses() -> None:
    policy = load_policy(DEMO)
    assert policy.version == hashlib.sha256(DEMO.read_bytes()).hexdigest()
    assert {
        "housing-transfer",
        "resident-pension",
        "retirement",
        "ss-card",
        "student-hukou-transfer",
        "subsistence-allowance",
    } <= set(policy.items)
    assert policy.items["subsistence-allowance"].consent_required
    assert policy.items["subsistence-allowance"].covert_embargo_days == 0
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


def test_demo_policy_never_grants_the_id_number() -> None:
    # the caller already has the ID number; echoing it back is disclosure for nothing
    policy = load_policy(DEMO)
    for item in policy.items.values():
        for fields in item.records.values():
            assert "id_number" not in fields


def test_parsed_values(small: Policy) -> None:
    assert small.version == hashlib.sha256(SMALL).hexdigest()
    assert small.source == "small.toml"
    assert small.callers["window"].rate == RateLimit(100.0, 200)
    assert small.callers["other"].rate == RateLimit(5.0, 10)
    assert small.callers["audit"].roles == {"auditor"}
    sale = small.items["sale"]
    assert sale.records == {
        "property": {"certificate_number", "location"},
        "household": {"name", "members"},
    }
    assert sale.purpose_required
    assert not sale.consent_required
    card = small.item("card")
    assert card is not None
    assert card.consent_required
    assert card.covert_embargo_days == 30
    assert card.records == {}
    assert small.item("nope") is None
    assert small.caller("window") is not None
    assert [i.code for i in small.items_for("window")] == ["card", "sale"]


def test_default_rate_without_defaults() -> None:
    policy = parse_policy(b'[callers.a]\nname = "a"\nroles = ["portal"]\n', "p")
    assert policy.callers["a"].rate == DEFAULT_RATE
    assert policy.items == {}


def test_version_changes_with_any_byte() -> None:
    assert parse_policy(SMALL + b"\n", "x").version != parse_policy(SMALL, "x").version


BAD = [
    (b"[callers", "not valid TOML"),
    (b"\xff", "not UTF-8"),
    (b"extra = 1", "unknown top-level key 'extra'"),
    (b"callers = 1", "[callers]: must be a table"),
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
    (b"[defaults]\nother = 1", "[defaults] key 'other': unknown key"),
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
        b'[items.i]\nname = "i"\ncallers = []\nclaims = ["household.mood"]',
        "[items.i] key 'claims': unknown claim type 'household.mood'",
    ),
    (b'[items.i]\nname = "i"\ncallers = []', "[items.i]: grants neither records nor claims"),
    (
        b'[items.i]\nname = "i"\ncallers = []\nclaims = ["household.residence"]\n'
        b'consent_required = "yes"',
        "[items.i] key 'consent_required': must be a boolean",
    ),
    (
        b'[items.i]\nname = "i"\ncallers = []\nclaims = ["household.residence"]\n'
        b"covert_embargo_days = -1",
        "[items.i] key 'covert_embargo_days': must be between 0 and 3650",
    ),
    (
        b'[items.i]\nname = "i"\ncallers = []\nclaims = ["household.residence"]\n'
        b"covert_embargo_days = true",
        "key 'covert_embargo_days': must be an integer",
    ),
    (
        b'[items.i]\nname = "i"\ncallers = []\nclaims = ["household.residence"]\nowner = "x"',
        "[items.i] key 'owner': unknown key",
    ),
    (
        b'[items.i]\nname = "i"\ncallers = []\n[items.i.records]\npassport = ["number"]',
        "[items.i.records] key 'passport': unknown record type",
    ),
    (
        b'[items.i]\nname = "i"\ncallers = []\n[items.i.records]\nproperty = ["price"]',
        "[items.i.records] key 'property': unknown field 'price' of PropertyRecord",
    ),
    (
        b'[items.i]\nname = "i"\ncallers = []\n[items.i.records]\nhousehold = ["members.name"]',
        "unknown field 'members.name' of HouseholdRecord",
    ),
    (
        b'[items.i]\nname = "i"\ncallers = []\n[items.i.records]\nhousehold = []',
        "[items.i.records] key 'household': grants no field",
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
        parse_policy(data, "deploy/config/policy.toml")
    assert caught.value.message.startswith("deploy/config/policy.toml: ")


def test_load_policy_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read policy"):
        load_policy(tmp_path / "absent.toml")


# ---- decisions --------------------------------------------------------------------------


def test_authorize_record(small: Policy) -> None:
    assert small.authorize_record("window", "sale", "property", []) == {
        "certificate_number",
        "location",
    }
    assert small.authorize_record("window", "sale", "property", ["location", "seized"]) == {
        "location"
    }
    assert small.authorize_record("window", "sale", "household", ("members.name", "members")) == {
        "members.name",
        "members",
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
        ("window", "sale", "household", ["members..name"], "FIELD_NOT_ALLOWED"),
        ("window", "sale", "household", ["id_number.x"], "FIELD_NOT_ALLOWED"),
    ],
)
def test_authorize_record_denials(
    small: Policy, caller: str, item: str, record: str, fields: list[str], reason: str
) -> None:
    assert _denied(small.authorize_record, caller, item, record, fields) == reason


def test_authorize_claims(small: Policy) -> None:
    assert small.authorize_claims("window", "sale", ["property.ownership"]) is None
    assert small.authorize_claims("other", "card", ["household.residence"]) is None
    assert small.authorize_claims("window", "sale", []) is None
    assert _denied(small.authorize_claims, "window", "sale", ["household.residence"]) == (
        "CLAIM_NOT_ALLOWED"
    )
    assert _denied(small.authorize_claims, "window", "sale", ["x.y"]) == "CLAIM_NOT_ALLOWED"
    assert _denied(small.authorize_claims, "other", "sale", ["property.ownership"]) == (
        "ITEM_NOT_ALLOWED"
    )
    assert _denied(small.authorize_claims, "nobody", "sale", []) == "CALLER_UNKNOWN"
    assert _denied(small.authorize_claims, "window", "nothing", []) == "ITEM_UNKNOWN"


def test_denial_messages_carry_no_request_values(small: Policy) -> None:
    secret = "350505199001011234"
    with pytest.raises(PermissionDenied) as caught:
        small.authorize_claims("window", "sale", [secret])
    assert secret not in caught.value.message


def test_explain(small: Policy) -> None:
    text = small.explain("window", "sale", "property")
    assert text.startswith("ALLOWED")
    assert "certificate_number, location" in text
    assert "purpose required" in text
    assert small.explain("window", "card", "household.residence").startswith("ALLOWED")
    assert "consent required" in small.explain("other", "card", "household.residence")
    assert "covert" in small.explain("other", "card", "household.residence")
    assert small.explain("other", "sale", "property").startswith("DENIED (ITEM_NOT_ALLOWED)")
    assert small.explain("window", "card", "household").startswith("DENIED (RECORD_NOT_ALLOWED)")
    assert small.explain("window", "sale", "household.kinship").startswith(
        "DENIED (CLAIM_NOT_ALLOWED)"
    )
    assert small.explain("window", "sale", "horoscope").startswith("DENIED (PROOF_UNKNOWN)")


# ---- properties -------------------------------------------------------------------------

_ALL_FIELDS = sorted(set().union(*RECORD_FIELDS.values()))
_paths = st.one_of(
    st.sampled_from(_ALL_FIELDS),
    st.builds(lambda a, b: f"{a}.{b}", st.sampled_from(_ALL_FIELDS), st.text(max_size=8)),
    st.text(max_size=30),
)


_SEGMENT = re.compile(r"^[a-z_][a-z0-9_]*$")


def _oracle(mask: list[str], allowed: frozenset[str]) -> set[str]:
    """What may leave, written independently: whole allowed fields, or well-formed sub-paths
    of them."""
    out = set()
    for path in mask:
        segments = path.split(".")
        if segments[0] in allowed and (
            len(segments) == 1 or all(_SEGMENT.match(s) for s in segments)
        ):
            out.add(path)
    return out


@settings(max_examples=300, deadline=None)
@given(mask=st.lists(_paths, max_size=8), record=st.sampled_from(sorted(RECORD_FIELDS)))
def test_a_mask_never_widens_the_grant(mask: list[str], record: str) -> None:
    policy = load_policy(DEMO)
    for item in policy.items.values():
        allowed = item.records.get(record)
        for caller in item.callers:
            if allowed is None:
                assert _denied(policy.authorize_record, caller, item.code, record, mask) == (
                    "RECORD_NOT_ALLOWED"
                )
                continue
            expected = _oracle(mask, allowed) if mask else set(allowed)
            if not expected:
                assert _denied(policy.authorize_record, caller, item.code, record, mask) == (
                    "FIELD_NOT_ALLOWED"
                )
                continue
            out = policy.authorize_record(caller, item.code, record, mask)
            assert out == expected
            assert all(p.split(".", 1)[0] in allowed for p in out)


@settings(max_examples=200, deadline=None)
@given(claims=st.lists(st.sampled_from(sorted(CLAIM_TYPES)) | st.text(max_size=20), max_size=5))
def test_claims_allowed_only_when_all_granted(claims: list[str]) -> None:
    policy = load_policy(DEMO)
    for item in policy.items.values():
        for caller in item.callers:
            if set(claims) <= item.claims:
                assert policy.authorize_claims(caller, item.code, claims) is None
            else:
                assert _denied(policy.authorize_claims, caller, item.code, claims) == (
                    "CLAIM_NOT_ALLOWED"
                )


# ---- CLI --------------------------------------------------------------------------------


def _run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="proofless")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_cli_policy_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run("policy", "check", str(DEMO)) == 0
    out = capsys.readouterr().out
    assert hashlib.sha256(DEMO.read_bytes()).hexdigest() in out
    assert "housing-transfer" in out
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b'[items.i]\nname = "i"\ncallers = ["ghost"]\nclaims = ["household.residence"]')
    assert _run("policy", "check", str(bad)) == 1
    err = capsys.readouterr().err
    assert f"{bad}: [items.i] key 'callers'" in err
    assert _run("policy") == 2


def test_cli_policy_explain(capsys: pytest.CaptureFixture[str]) -> None:
    base = ["policy", "explain", "--policy", str(DEMO)]
    assert (
        _run(
            *base,
            "--caller",
            "quangang-window",
            "--item",
            "housing-transfer",
            "--proof",
            "property",
        )
        == 0
    )
    assert "ALLOWED" in capsys.readouterr().out
    assert (
        _run(*base, "--caller", "fuan-hrss", "--item", "housing-transfer", "--proof", "property")
        == 1
    )
    assert "DENIED (ITEM_NOT_ALLOWED)" in capsys.readouterr().out
