"""Per-item claim grants: parameter constraints (`[items.X.claim."type"]` with fixed, item,
in, min, max), the `repeat` bound on one claim type per request, their parse errors, and how
`explain` states them.

A claim is an oracle: one-month contribution windows would rebuild a history, narrowing
regions would find an address. These tests hold the policy to what the file allows.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any

import pytest

from gateway.catalogue.claims import parse_claim
from gateway.domain.errors import ConfigError, PermissionDenied
from gateway.domain.idnumber import make_id
from gateway.domain.policy import UNSET, ClaimGrant, ParamConstraint, Policy
from tests.support.rules import catalogue, deployed_policy, policy_from

SECRET = "350505199001011234"

CONSTRAINED = b"""
[callers.window]
name = "window"
roles = ["approval"]

[callers.other]
name = "other"
roles = ["approval"]

[items.move]
name = "move"
callers = ["window"]
region = "350505"
[items.move.claim."household.residence"]
params.region = { item = "region" }
[items.move.claim."household.kinship"]
repeat = 2
params.relation = { in = ["parent", "child"] }
[items.move.claim."social_security.contribution"]
repeat = 3
params.min_months = { min = 12, max = 600 }
params.from = { min = "2010-01" }
params.to = { max = "2024-12" }
params.type = { fixed = "pension" }
params.region = { in = ["350505", "350500"] }
[items.move.claim."property.ownership"]
params.owns = { fixed = false }
params.region = { fixed = "" }
[items.move.claim."property.encumbrance"]
repeat = 16

[items.loose]
name = "loose"
callers = ["window", "other"]
claims = ["household.residence", "social_security.contribution"]
"""


@pytest.fixture(scope="module")
def policy() -> Policy:
    return policy_from(CONSTRAINED, "constrained.toml")


def _authorize(policy: Policy, claims: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    return policy.authorize_claims("window", "move", claims)


def _refused(policy: Policy, claims: list[tuple[str, dict[str, Any]]]) -> PermissionDenied:
    with pytest.raises(PermissionDenied) as caught:
        _authorize(policy, claims)
    return caught.value


# ---- parsing ----------------------------------------------------------------------------


def test_grants_parse(policy: Policy) -> None:
    move = policy.items["move"]
    assert move.attributes == {"region": "350505"}
    assert set(move.claims) == {
        "household.residence",
        "household.kinship",
        "social_security.contribution",
        "property.ownership",
        "property.encumbrance",
    }
    assert move.claims["household.residence"] == ClaimGrant(
        "household.residence", 1, {"region": ParamConstraint(item_attribute="region")}
    )
    kinship = move.claims["household.kinship"]
    assert kinship.repeat == 2
    assert kinship.params["relation"].allowed == frozenset({"parent", "child"})
    contribution = move.claims["social_security.contribution"]
    assert contribution.repeat == 3
    assert contribution.params["min_months"] == ParamConstraint(minimum=12, maximum=600)
    assert contribution.params["from"] == ParamConstraint(minimum="2010-01")
    assert contribution.params["to"] == ParamConstraint(maximum="2024-12")
    assert contribution.params["type"] == ParamConstraint(fixed="pension")
    assert move.claims["property.ownership"].params["owns"].fixed is False
    assert move.claims["property.ownership"].params["region"].fixed == ""
    encumbrance = move.claims["property.encumbrance"]
    assert (encumbrance.repeat, encumbrance.params) == (16, {})
    # a table without parameters, or a claim listed in `claims`: nothing constrained
    assert policy.items["loose"].claims["household.residence"] == ClaimGrant(
        "household.residence", 1, {}
    )
    assert ParamConstraint().fixed is UNSET


def test_the_deployed_grants() -> None:
    items = deployed_policy().items
    hukou = items["student-hukou-transfer"].claims
    assert hukou["household.residence"].params["region"].item_attribute == "region"
    assert hukou["household.kinship"].repeat == 2
    assert items["housing-transfer"].claims["property.encumbrance"].repeat == 4
    assert items["retirement"].claims["social_security.contribution"].repeat == 3
    pension = items["resident-pension"].claims["social_security.contribution"].params
    assert (pension["min_months"].minimum, pension["min_months"].maximum) == (12, 600)
    assert pension["from"].fixed == pension["to"].fixed == ""
    assert items["ss-card"].claims["household.residence"].params["region"].fixed == "350000"
    assert items["subsistence-review"].claims["property.ownership"].params["owns"].fixed is False


_ITEM = b'[items.i]\nname = "i"\ncallers = []\nregion = "350505"\n'
_TABLE = b'[items.i.claim."household.residence"]\n'
_CONTRIBUTION = b'[items.i.claim."social_security.contribution"]\n'

BAD = [
    (
        _ITEM + b'[items.i.claim."household.mood"]\nrepeat = 2',
        "[items.i.claim.household.mood]: the catalogue has no claim 'household.mood'",
    ),
    (
        _ITEM + b'claims = ["household.residence"]\n' + _TABLE + b"repeat = 2",
        "[items.i.claim] key 'household.residence': is also listed in claims; list it once",
    ),
    (
        _ITEM + b'claim = ["household.residence"]',
        "[items.i] key 'claim': must be a table",
    ),
    (
        _ITEM + b'[items.i.claim]\n"household.residence" = 1',
        "[items.i.claim.household.residence]: must be a table",
    ),
    (
        _ITEM + _TABLE + b"repeat = 2\nwhy = 1",
        "[items.i.claim.household.residence] key 'why': unknown key; expected one of repeat, "
        "params",
    ),
    # repeat: between 1 and 16 times per request
    (
        _ITEM + _TABLE + b"repeat = 0",
        "[items.i.claim.household.residence] key 'repeat': must be between 1 and 16",
    ),
    (
        _ITEM + _TABLE + b"repeat = 17",
        "[items.i.claim.household.residence] key 'repeat': must be between 1 and 16",
    ),
    (
        _ITEM + _TABLE + b'repeat = "2"',
        "[items.i.claim.household.residence] key 'repeat': must be an integer",
    ),
    (
        _ITEM + _TABLE + b"repeat = true",
        "[items.i.claim.household.residence] key 'repeat': must be an integer",
    ),
    # parameters: the claim's own, each constrained by one rule
    (
        _ITEM + _TABLE + b'params.city = { fixed = "350505" }',
        "[items.i.claim.household.residence.params] key 'city': household.residence has no "
        "such parameter; it has region",
    ),
    (
        _ITEM + _TABLE + b'params = ["region"]',
        "[items.i.claim.household.residence] key 'params': must be a table",
    ),
    (
        _ITEM + _TABLE + b'params.region = "350505"',
        "[items.i.claim.household.residence.params.region]: must be a table",
    ),
    (
        _ITEM + _TABLE + b"params.region = {}",
        "[items.i.claim.household.residence.params.region]: constrains nothing; use fixed, "
        "item, in, min or max",
    ),
    (
        _ITEM + _TABLE + b'params.region = { equals = "350505" }',
        "[items.i.claim.household.residence.params.region] key 'equals': unknown key; "
        "expected one of fixed, item, in, min, max",
    ),
    (
        _ITEM + _TABLE + b'params.region = { fixed = "350000", in = ["350000"] }',
        "[items.i.claim.household.residence.params.region] key 'fixed': a fixed value stands alone",
    ),
    (
        _ITEM + _TABLE + b"params.region = { fixed = 350000 }",
        "[items.i.claim.household.residence.params.region] key 'fixed': must be a string",
    ),
    (
        _ITEM + _TABLE + b"params.region = { in = [] }",
        "[items.i.claim.household.residence.params.region] key 'in': must be a non-empty "
        "array of string values",
    ),
    (
        _ITEM + _TABLE + b'params.region = { in = "350505" }',
        "[items.i.claim.household.residence.params.region] key 'in': must be an array",
    ),
    (
        _ITEM + _TABLE + b'params.region = { in = ["350505", 350500] }',
        "key 'in': must be a non-empty array of string values",
    ),
    (
        _ITEM + _TABLE + b'params.region = { item = "county" }',
        "[items.i.claim.household.residence.params.region] key 'item': the item has no "
        "attribute 'county'",
    ),
    (
        b'[items.i]\nname = "i"\ncallers = []\n' + _TABLE + b'params.region = { item = "region" }',
        "key 'item': the item has no attribute 'region'",
    ),
    (
        _ITEM + _CONTRIBUTION + b'params.min_months = { item = "region" }',
        "[items.i.claim.social_security.contribution.params.min_months] key 'item': only text "
        "parameters can be bound to an item attribute",
    ),
    (
        _ITEM + _CONTRIBUTION + b'params.min_months = { min = "12" }',
        "[items.i.claim.social_security.contribution.params.min_months] key 'min': must be an "
        "integer",
    ),
    (
        _ITEM + _CONTRIBUTION + b"params.min_months = { max = 1.5 }",
        "params.min_months] key 'max': must be an integer",
    ),
    (
        _ITEM + _CONTRIBUTION + b"params.min_months = { in = [12, true] }",
        "params.min_months] key 'in': must be a non-empty array of integer values",
    ),
    (
        _ITEM + _CONTRIBUTION + b"params.from = { min = 2010 }",
        "params.from] key 'min': must be a string",
    ),
    (
        _ITEM + b'[items.i.claim."property.ownership"]\nparams.owns = { fixed = "false" }',
        "[items.i.claim.property.ownership.params.owns] key 'fixed': must be a boolean",
    ),
    (
        _ITEM + b'[items.i.claim."property.ownership"]\nparams.owns = { fixed = 0 }',
        "key 'fixed': must be a boolean",
    ),
    # a person is named by the request, never by the policy
    (
        _ITEM + b'[items.i.claim."household.kinship"]\n'
        b'params.other_id_number = { fixed = "' + SECRET.encode() + b'" }',
        "[items.i.claim.household.kinship.params.other_id_number]: a person or organisation "
        "is named by the request, not the policy",
    ),
    (
        _ITEM + b'[items.i.claim."household.kinship"]\n'
        b'params.other_id_number = { in = ["' + SECRET.encode() + b'"] }',
        "a person or organisation is named by the request, not the policy",
    ),
    (
        _ITEM + b'[items.i.claim."household.kinship"]\n'
        b'params.other_id_number = { item = "region" }',
        "a person or organisation is named by the request, not the policy",
    ),
    (
        _ITEM + b'[items.i.claim."household.kinship"]\nparams.other_id_number = { min = "350000" }',
        "a person or organisation is named by the request, not the policy",
    ),
    # attributes are strings
    (
        b'[items.i]\nname = "i"\ncallers = []\nregion = 350505\n'
        + _TABLE
        + b'params.region = { item = "region" }',
        "[items.i] key 'region': unknown key",
    ),
]


@pytest.mark.parametrize(("data", "message"), BAD, ids=[m[:50] for _, m in BAD])
def test_bad_grants_are_precise(data: bytes, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)) as caught:
        policy_from(data, "deploy/config/policy.toml")
    assert caught.value.message.startswith("deploy/config/policy.toml: ")


def test_a_person_parameter_may_be_ruled_out() -> None:
    # `fixed = ""` names nobody: the parameter must be left out
    policy = policy_from(
        _ITEM + b'[items.i.claim."household.kinship"]\nparams.other_id_number = { fixed = "" }',
        "p",
    )
    rule = policy.items["i"].claims["household.kinship"].params["other_id_number"]
    assert rule.fixed == ""
    assert rule.describe() == "must be left out"


# ---- fixed and bound to the item ----------------------------------------------------------


def test_bound_to_the_item_region(policy: Policy) -> None:
    # left out: the item's region is filled in; the same region: allowed
    assert _authorize(policy, [("household.residence", {})]) == [{"region": "350505"}]
    assert _authorize(policy, [("household.residence", {"region": None})]) == [{"region": "350505"}]
    assert _authorize(policy, [("household.residence", {"region": ""})]) == [{"region": "350505"}]
    assert _authorize(policy, [("household.residence", {"region": "350505"})]) == [
        {"region": "350505"}
    ]
    # any other region, wider or narrower, is refused
    for region in ("350500", "350000", "350581", "110000"):
        denied = _refused(policy, [("household.residence", {"region": region})])
        assert denied.reason == "CLAIM_PARAMS_NOT_ALLOWED"
        assert region not in denied.message
        assert "household.residence: parameter region fixed to the item's region" in (
            denied.message
        )


def test_fixed_values(policy: Policy) -> None:
    asked = {"min_months": 24}
    out = _authorize(policy, [("social_security.contribution", asked)])
    assert out == [{"min_months": 24, "type": "pension"}]
    assert asked == {"min_months": 24}  # the request's own values are not changed
    assert _authorize(policy, [("social_security.contribution", {"type": "pension"})]) == [
        {"type": "pension"}
    ]
    denied = _refused(policy, [("social_security.contribution", {"type": "medical"})])
    assert denied.reason == "CLAIM_PARAMS_NOT_ALLOWED"
    assert "parameter type fixed to 'pension'" in denied.message
    assert "medical" not in denied.message
    # a fixed boolean: the no-property certificate only, whatever the catalogue's default
    assert _authorize(policy, [("property.ownership", {})]) == [{"owns": False, "region": None}]
    assert _authorize(policy, [("property.ownership", {"owns": False})])[0]["owns"] is False
    denied = _refused(policy, [("property.ownership", {"owns": True})])
    assert "parameter owns fixed to false" in denied.message


def test_fixed_empty_means_left_out(policy: Policy) -> None:
    assert _authorize(policy, [("property.ownership", {"region": ""})]) == [
        {"owns": False, "region": None}
    ]
    denied = _refused(policy, [("property.ownership", {"region": "350505"})])
    assert denied.reason == "CLAIM_PARAMS_NOT_ALLOWED"
    assert denied.message == (
        "property.ownership: parameter region must be left out for this service item"
    )


# ---- in, min, max ---------------------------------------------------------------------------


def test_allowed_set(policy: Policy) -> None:
    for relation in ("parent", "child"):
        assert _authorize(policy, [("household.kinship", {"relation": relation})]) == [
            {"relation": relation}
        ]
    denied = _refused(policy, [("household.kinship", {"relation": "spouse"})])
    assert denied.reason == "CLAIM_PARAMS_NOT_ALLOWED"
    assert "parameter relation one of 'child', 'parent'" in denied.message
    assert "spouse" not in denied.message
    for region in ("350505", "350500"):
        params = {"min_months": 12, "region": region}
        assert _authorize(policy, [("social_security.contribution", params)])[0]["region"] == (
            region
        )
    assert (
        _refused(policy, [("social_security.contribution", {"region": "350000"})]).reason
        == "CLAIM_PARAMS_NOT_ALLOWED"
    )


def test_integer_bounds(policy: Policy) -> None:
    for months in (12, 13, 599, 600):
        assert _authorize(policy, [("social_security.contribution", {"min_months": months})])
    for months in (0, 11, 601, 10**6):
        denied = _refused(policy, [("social_security.contribution", {"min_months": months})])
        assert denied.reason == "CLAIM_PARAMS_NOT_ALLOWED"
        # the rule, never the value
        assert denied.message == (
            "social_security.contribution: parameter min_months at least 12; at most 600 "
            "for this service item"
        )


def test_month_bounds_compare_as_text(policy: Policy) -> None:
    ok = {"min_months": 12, "from": "2010-01", "to": "2024-12"}
    assert _authorize(policy, [("social_security.contribution", ok)])[0]["from"] == "2010-01"
    assert _authorize(policy, [("social_security.contribution", {"from": "2023-06"})])
    for params, named in (
        ({"from": "2009-12"}, "from at least 2010-01"),
        ({"to": "2025-01"}, "to at most 2024-12"),
    ):
        denied = _refused(policy, [("social_security.contribution", params)])
        assert denied.reason == "CLAIM_PARAMS_NOT_ALLOWED"
        assert named in denied.message


def test_an_optional_parameter_left_out_passes_a_range_or_set(policy: Policy) -> None:
    # `in`, `min` and `max` rule the values given; leaving an optional parameter out is how
    # the deployed housing-transfer item asks about holdings anywhere
    out = _authorize(policy, [("social_security.contribution", {"min_months": 12})])
    assert out == [{"min_months": 12, "type": "pension"}]
    housing = deployed_policy().authorize_claims(
        "quangang-window", "housing-transfer", [("property.ownership", {"region": None})]
    )
    assert housing == [{"region": None}]


def test_leaving_a_parameter_out_is_ruled_by_its_default() -> None:
    """A parameter left out is decided with the catalogue's default: `kind` defaults to
    "any", so `in = ["mortgage"]` must refuse a request that leaves `kind` out."""
    narrow = policy_from(
        b'[callers.window]\nname = "w"\nroles = ["approval"]\n'
        b'[items.i]\nname = "i"\ncallers = ["window"]\n'
        b'[items.i.claim."property.encumbrance"]\nparams.kind = { in = ["mortgage"] }\n'
    )
    given = {"certificate_number": "A1"}
    c, _ = parse_claim(0, "c", "property.encumbrance", given, catalogue())
    assert c is not None
    with pytest.raises(PermissionDenied) as caught:
        narrow.authorize_claims("window", "i", [(c.type, c.values)], [c.effective])
    assert caught.value.reason == "CLAIM_PARAMS_NOT_ALLOWED"
    c, _ = parse_claim(0, "c", "property.encumbrance", {**given, "kind": "mortgage"}, catalogue())
    assert c is not None
    assert narrow.authorize_claims("window", "i", [(c.type, c.values)], [c.effective])


def test_the_first_refused_parameter_decides(policy: Policy) -> None:
    claims: list[tuple[str, dict[str, Any]]] = [
        ("household.residence", {}),
        ("household.kinship", {"relation": "sibling"}),
        ("social_security.contribution", {"min_months": 1}),
    ]
    assert "parameter relation" in _refused(policy, claims).message


def test_unconstrained_items_pass_any_values(policy: Policy) -> None:
    params = {"min_months": 1, "from": "1990-01", "to": "1990-01", "type": "medical"}
    for caller in ("window", "other"):
        out = policy.authorize_claims(
            caller, "loose", [("social_security.contribution", params), ("household.residence", {})]
        )
        assert out == [params, {}]


def test_parameter_denials_never_quote_the_value(policy: Policy) -> None:
    for claim, params in (
        ("household.residence", {"region": SECRET}),
        ("household.kinship", {"relation": SECRET}),
        ("property.ownership", {"region": SECRET}),
        ("social_security.contribution", {"type": SECRET}),
        ("social_security.contribution", {"to": SECRET}),
    ):
        denied = _refused(policy, [(claim, params)])
        assert denied.reason == "CLAIM_PARAMS_NOT_ALLOWED"
        assert SECRET not in denied.message
        assert SECRET not in str(denied)


# ---- repeat -----------------------------------------------------------------------------


def test_repeat_bounds_one_claim_type_per_request(policy: Policy) -> None:
    parent, child = (
        ("household.kinship", {"relation": "parent"}),
        (
            "household.kinship",
            {"relation": "child"},
        ),
    )
    assert len(_authorize(policy, [parent, child])) == 2
    denied = _refused(policy, [parent, child, parent])
    assert denied.reason == "CLAIM_REPEATED"
    assert denied.message == (
        "service item move allows household.kinship at most 2 time(s) per request"
    )
    # once is the default
    assert _refused(policy, [("household.residence", {})] * 2).reason == "CLAIM_REPEATED"
    assert _refused(policy, [("property.ownership", {})] * 2).reason == "CLAIM_REPEATED"
    assert len(_authorize(policy, [("social_security.contribution", {})] * 3)) == 3
    assert _refused(policy, [("social_security.contribution", {})] * 4).reason == ("CLAIM_REPEATED")
    assert len(_authorize(policy, [("property.encumbrance", {})] * 16)) == 16
    assert _refused(policy, [("property.encumbrance", {})] * 17).reason == "CLAIM_REPEATED"


def test_repeat_counts_each_type_apart(policy: Policy) -> None:
    # interleaved with other types, each type counts on its own
    claims: list[tuple[str, dict[str, Any]]] = [
        ("household.kinship", {}),
        ("household.residence", {}),
        ("social_security.contribution", {}),
        ("household.kinship", {}),
        ("social_security.contribution", {}),
        ("property.ownership", {}),
        ("social_security.contribution", {}),
    ]
    out = _authorize(policy, claims)
    assert [o.get("region") for o in out[:2]] == [None, "350505"]
    assert len(out) == 7
    assert _refused(policy, [*claims, ("household.residence", {})]).reason == "CLAIM_REPEATED"
    # a claim listed in `claims` repeats once, too
    assert (
        _refused_on(policy, "other", "loose", [("household.residence", {})] * 2) == "CLAIM_REPEATED"
    )


def _refused_on(
    policy: Policy, caller: str, item: str, claims: list[tuple[str, dict[str, Any]]]
) -> str:
    with pytest.raises(PermissionDenied) as caught:
        policy.authorize_claims(caller, item, claims)
    return caught.value.reason


def test_repeat_is_checked_before_the_parameters(policy: Policy) -> None:
    # the repeated claim is refused for repeating, whatever its values
    claims = [("household.residence", {}), ("household.residence", {"region": "110000"})]
    assert _refused(policy, claims).reason == "CLAIM_REPEATED"


# ---- with parameters as the catalogue parses them ------------------------------------------

TODAY = date(2025, 6, 1)
APPLICANT = make_id("350505", date(1980, 4, 2), 31)
OTHER = make_id("350505", date(2008, 9, 14), 42)


def _parsed(claim_type: str, raw: dict[str, str]) -> tuple[str, dict[str, Any]]:
    parsed, violations = parse_claim(
        0, "c1", claim_type, raw, catalogue(), applicant=APPLICANT, today=TODAY
    )
    assert violations == []
    assert parsed is not None
    return claim_type, dict(parsed.values)


def test_constraints_meet_the_parsed_parameter_types() -> None:
    """The catalogue parses integers to int, booleans to bool and the rest to text; the
    deployed policy's constraints compare with those types."""
    policy = deployed_policy()
    pension = _parsed("social_security.contribution", {"min_months": "180"})
    assert policy.authorize_claims("fuan-hrss", "resident-pension", [pension])[0]["min_months"] == (
        180
    )
    short = _parsed("social_security.contribution", {"min_months": "6"})
    with pytest.raises(PermissionDenied, match="min_months at least 12"):
        policy.authorize_claims("fuan-hrss", "resident-pension", [short])
    window = _parsed(
        "social_security.contribution", {"min_months": "12", "from": "2024-01", "to": "2024-01"}
    )
    with pytest.raises(PermissionDenied, match="from must be left out"):
        policy.authorize_claims("fuan-hrss", "resident-pension", [window])
    # retirement needs the history: windows allowed, three of them
    assert len(policy.authorize_claims("fuan-hrss", "retirement", [window] * 3)) == 3
    owns = _parsed("property.ownership", {"owns": "true"})
    with pytest.raises(PermissionDenied, match="owns fixed to false"):
        policy.authorize_claims("fuzhou-civil-affairs", "subsistence-allowance", [owns])
    none = _parsed("property.ownership", {"owns": "false", "region": "350100"})
    assert policy.authorize_claims("fuzhou-civil-affairs", "subsistence-allowance", [none]) == [
        {"region": "350100", "owns": False}
    ]
    nurse = _parsed("social_security.contribution", {"min_months": "12"})
    assert policy.authorize_claims("quangang-window", "nurse-licence", [nurse]) == [
        {"min_months": 12, "from": None, "to": None, "region": None, "type": "pension"}
    ]
    residence = _parsed("household.residence", {"region": "350505"})
    assert policy.authorize_claims("quangang-window", "student-hukou-transfer", [residence])
    elsewhere = _parsed("household.residence", {"region": "350500"})
    with pytest.raises(PermissionDenied, match="fixed to the item's region"):
        policy.authorize_claims("quangang-window", "student-hukou-transfer", [elsewhere])
    parents = [_parsed("household.kinship", {"other_id_number": OTHER, "relation": "parent"})] * 2
    assert len(policy.authorize_claims("quangang-window", "student-hukou-transfer", parents)) == 2
    with pytest.raises(PermissionDenied) as caught:
        policy.authorize_claims("quangang-window", "student-hukou-transfer", parents * 2)
    assert caught.value.reason == "CLAIM_REPEATED"
    spouse = _parsed("household.kinship", {"other_id_number": OTHER, "relation": "spouse"})
    with pytest.raises(PermissionDenied) as caught:
        policy.authorize_claims("quangang-window", "student-hukou-transfer", [spouse])
    assert caught.value.reason == "CLAIM_PARAMS_NOT_ALLOWED"
    assert OTHER not in caught.value.message


# ---- explain ----------------------------------------------------------------------------


def test_describe() -> None:
    assert ParamConstraint(fixed="350000").describe() == "fixed to '350000'"
    assert ParamConstraint(fixed="").describe() == "must be left out"
    assert ParamConstraint(fixed=False).describe() == "fixed to false"
    assert ParamConstraint(fixed=True).describe() == "fixed to true"
    assert ParamConstraint(fixed=12).describe() == "fixed to 12"
    assert ParamConstraint(item_attribute="region").describe() == "fixed to the item's region"
    assert ParamConstraint(allowed=frozenset({"b", "a"})).describe() == "one of 'a', 'b'"
    assert ParamConstraint(minimum=12).describe() == "at least 12"
    assert ParamConstraint(maximum="2024-12").describe() == "at most 2024-12"
    assert (
        ParamConstraint(allowed=frozenset({3}), minimum=1, maximum=5).describe()
        == "one of 3; at least 1; at most 5"
    )
    assert ParamConstraint().describe() == "any"


def test_explain_states_repeat_and_parameters(policy: Policy) -> None:
    text = policy.explain("window", "move", "social_security.contribution")
    assert text.startswith(
        "ALLOWED: window may verify social_security.contribution for move (move), "
        "at most 3 per request; parameters: "
    )
    # every constrained parameter, by name, with its rule
    assert (
        "parameters: from at least 2010-01; min_months at least 12; at most 600; "
        "region one of '350500', '350505'; to at most 2024-12; type fixed to 'pension'; "
    ) in text
    assert text.endswith(f"policy {policy.version[:12]}")
    residence = policy.explain("window", "move", "household.residence")
    assert "at most 1 per request; parameters: region fixed to the item's region;" in residence
    ownership = policy.explain("window", "move", "property.ownership")
    assert "parameters: owns fixed to false; region must be left out;" in ownership
    assert "parameters" not in policy.explain("window", "move", "property.encumbrance")
    assert "at most 16 per request" in policy.explain("window", "move", "property.encumbrance")


@pytest.mark.parametrize(
    ("caller", "item", "proof", "reason"),
    [
        ("ghost", "move", "household.residence", "CALLER_UNKNOWN"),
        ("window", "ghost", "household.residence", "ITEM_UNKNOWN"),
        ("other", "move", "household.residence", "ITEM_NOT_ALLOWED"),
        ("other", "move", "horoscope", "ITEM_NOT_ALLOWED"),
        ("window", "move", "household", "RECORD_NOT_ALLOWED"),
        ("window", "loose", "property", "RECORD_NOT_ALLOWED"),
        ("window", "loose", "household.kinship", "CLAIM_NOT_ALLOWED"),
        ("window", "loose", "horoscope", "PROOF_UNKNOWN"),
    ],
)
def test_explain_reasons(policy: Policy, caller: str, item: str, proof: str, reason: str) -> None:
    text = policy.explain(caller, item, proof)
    assert text.startswith(f"DENIED ({reason}): ")


@pytest.mark.parametrize(
    ("caller", "item", "proof", "expected"),
    [
        (
            "quangang-window",
            "nurse-licence",
            "social_security.contribution",
            "at most 1 per request; parameters: from must be left out; min_months fixed to 12; "
            "to must be left out; type fixed to 'pension'; consent not required, purpose not "
            "required;",
        ),
        (
            "fuzhou-civil-affairs",
            "subsistence-allowance",
            "household.kinship",
            "at most 6 per request; consent required, purpose required;",
        ),
        (
            "fuzhou-civil-affairs",
            "subsistence-review",
            "property.ownership",
            "parameters: owns fixed to false; consent not required, purpose required, covert: "
            "hidden from the citizen for 90 days;",
        ),
        (
            "fuan-hrss",
            "ss-card",
            "household.residence",
            "parameters: region fixed to '350000';",
        ),
        (
            "quangang-window",
            "housing-transfer",
            "property.ownership",
            "at most 2 per request; parameters: region one of '350000', '350500', '350505';",
        ),
    ],
)
def test_explain_the_deployed_grants(caller: str, item: str, proof: str, expected: str) -> None:
    text = deployed_policy().explain(caller, item, proof)
    assert text.startswith("ALLOWED")
    assert expected in text
