"""Item requirements: the three-valued all-of / any-of, groups, and the policy file's
`requires` / `groups` / `decide` with precise errors."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.domain.errors import ConfigError
from gateway.domain.requirements import (
    DOES_NOT_HOLD,
    HOLDS,
    UNDETERMINED,
    Group,
    ItemRequirements,
    Requirement,
    combine,
    decide,
)
from tests.support.rules import deployed_policy, policy_from

V = (HOLDS, DOES_NOT_HOLD, UNDETERMINED)


@pytest.mark.parametrize("verdicts", list(itertools.product(V, repeat=3)))
def test_combine_is_kleene_logic(verdicts: tuple[str, str, str]) -> None:
    rank = {DOES_NOT_HOLD: 0, UNDETERMINED: 1, HOLDS: 2}
    back = {v: k for k, v in rank.items()}
    assert combine("all", verdicts) == back[min(rank[v] for v in verdicts)]
    assert combine("any", verdicts) == back[max(rank[v] for v in verdicts)]


@given(st.lists(st.sampled_from(V), min_size=1, max_size=6))
def test_an_undetermined_part_never_flips_a_decided_group(verdicts: list[str]) -> None:
    for mode in ("all", "any"):
        got = combine(mode, verdicts)
        for i, v in enumerate(verdicts):
            if v != UNDETERMINED:
                continue
            for settled in (HOLDS, DOES_NOT_HOLD):
                again = combine(mode, [*verdicts[:i], settled, *verdicts[i + 1 :]])
                if got != UNDETERMINED:
                    assert again == got


def test_nested_groups_decide() -> None:
    spec = ItemRequirements(
        requirements={n: Requirement(n, claim="c") for n in ("a", "b", "c")},
        groups={
            "either": Group("either", "any", ("a", "b")),
            "both": Group("both", "all", ("either", "c")),
        },
        decide="both",
    )
    verdict, groups = decide(spec, {"a": DOES_NOT_HOLD, "b": UNDETERMINED, "c": HOLDS})
    assert (verdict, groups) == (UNDETERMINED, {"either": UNDETERMINED, "both": UNDETERMINED})
    verdict, _ = decide(spec, {"a": HOLDS, "b": UNDETERMINED, "c": HOLDS})
    assert verdict == HOLDS


def test_the_deployed_items_requirements() -> None:
    item = deployed_policy().items["housing-transfer"]
    spec = item.requirements
    assert spec.decide == "purchase_limit"
    assert [r.name for r in spec.claims()] == ["local_hukou", "local_insurance", "no_local_home"]
    assert spec.requirements["no_local_home"].params["region"].item_attribute == "region"
    members = deployed_policy().items["subsistence-allowance"].requirements
    assert members.roles() == {"member"}


ITEM = b"""
[callers.w]
name = "w"
roles = ["approval"]
[items.i]
name = "i"
callers = ["w"]
region = "350505"
"""


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (b'[items.i.requires.a]\nclaim = "nope.nope"\n', "the catalogue has no claim"),
        (b'[items.i.requires.a]\nprefill = "household"\nfields = ["salary"]\n', "unknown field"),
        (
            b'[items.i.requires.a]\nclaim = "household.residence"\nprefill = "household"\n',
            "exactly one of claim",
        ),
        (
            b'[items.i.requires.a]\nclaim = "household.residence"\n'
            b'params = { region = { item = "county" } }\n',
            "no attribute 'county'",
        ),
        (
            b'[items.i.requires.a]\nclaim = "household.kinship"\n'
            b'params = { other_id_number = "350505199001011234", relation = "parent" }\n',
            "named by the request",
        ),
        (
            b'[items.i.requires.a]\nclaim = "social_security.contribution"\n'
            b'params = { min_months = "twelve" }\n',
            "must be an integer",
        ),
        (
            b'[items.i.requires.a]\nclaim = "household.residence"\n'
            b'[items.i.groups.g]\nany = ["a", "b"]\n',
            "neither a requirement nor a group",
        ),
        (
            b'[items.i.requires.a]\nclaim = "household.residence"\n'
            b'[items.i.groups.g]\nany = ["a", "h"]\n[items.i.groups.h]\nall = ["g"]\n',
            "contains itself",
        ),
        (
            b'[items.i.requires.a]\nprefill = "household"\nfields = ["name"]\n'
            b'[items.i.groups.g]\nall = ["a"]\n',
            "prefills and decides nothing",
        ),
    ],
)
def test_bad_requirements_are_precise(extra: bytes, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        policy_from(ITEM + extra)
    assert message in str(info.value)
    assert "items.i" in str(info.value)


def test_decide_must_name_something() -> None:
    with pytest.raises(ConfigError, match="decide names"):
        policy_from(
            ITEM.replace(b'region = "350505"\n', b'region = "350505"\ndecide = "x"\n')
            + b'[items.i.requires.a]\nclaim = "household.residence"\n'
        )


def test_the_applicant_is_not_a_party() -> None:
    catering = deployed_policy().items["catering-licence"].requirements
    assert catering.roles() == {"business"}
    operator = catering.requirements["operator"]
    assert operator.params["person_id_number"].party == "applicant"
    assert operator.subject_party == "business"
