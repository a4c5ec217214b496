"""Claim rules compiled to Python answer exactly as Google's CEL implementation does.

For every rule in the deployed catalogue, hypothesis draws records shaped like the evidence
the rule reads (fields left out as departments leave optional fields out) and parameters,
and the compiled rule's answer is compared with cel-cpp's evaluation of the same checked
expression over the same values as protobuf messages (where a left-out field reads its
default). Plus the checker's refusals and the constructs the compiler refuses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from google.protobuf import message_factory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.catalogue import load_catalogue, rules
from gateway.catalogue.rules import RuleError, RuleType

ROOT = Path(__file__).resolve().parents[3]
CATALOGUE = load_catalogue(ROOT / "deploy" / "catalogue")

REGIONS = ["350000", "350500", "350505", "350583", "350206", "350100", "110000", ""]
STRINGS = ["active", "moved_out", "head", "spouse", "child", "pension", "medical", "x", ""]
MONTHS = ["2019-12", "2020-01", "2020-06", "2021-03", "2026-10", ""]


def values_of(t: RuleType, name: str, depth: int = 0) -> st.SearchStrategy[Any]:
    if t.kind == "record":
        # Required fields are always there (the mapping refuses a row without them); the
        # others may be left out, as departments do.
        fields = {n: values_of(ft, n, depth + 1) for n, ft in t.record}
        always = {n: s for n, s in fields.items() if n in t.always}
        return st.fixed_dictionaries(
            always, optional={n: s for n, s in fields.items() if n not in always}
        )
    if t.kind == "list":
        assert t.element is not None
        return st.lists(values_of(t.element, name, depth + 1), max_size=6 if depth else 8)
    if t.kind == "int":
        return st.integers(0, 30)
    if t.kind == "bool":
        return st.booleans()
    if t.kind == "double":
        return st.floats(0, 200, allow_nan=False)
    if "region" in name:
        return st.sampled_from(REGIONS)
    if "month" in name or name in ("from", "to"):
        return st.sampled_from(MONTHS)
    return st.sampled_from(STRINGS)


def as_message(value: Any, t: RuleType, pool: Any) -> Any:
    if t.kind == "list":
        assert t.element is not None
        return [as_message(v, t.element, pool) for v in value]
    if t.kind != "record":
        return value
    cls = message_factory.GetMessageClass(pool.FindMessageTypeByName(t.name))
    kwargs = {n: as_message(value[n], ft, pool) for n, ft in t.record if n in value}
    return cls(**kwargs)


CLAIMS = sorted(CATALOGUE.claims)


@pytest.mark.parametrize("code", CLAIMS)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_compiled_rule_agrees_with_cel_cpp(code: str, data: st.DataObject) -> None:
    rule = CATALOGUE.claims[code].rule
    variables = rule.variables
    activation = {name: data.draw(values_of(t, name), label=name) for name, t in variables.items()}
    if "params" in activation:  # ParsedClaim.rule_params: every parameter has a value
        activation["params"] = {
            n: activation["params"].get(n, ft.default()) for n, ft in variables["params"].record
        }
    expression = rules.check(rule.text, variables)
    pool = rules._pool(variables)
    cel_data = {n: as_message(activation[n], variables[n], pool) for n in variables}
    expected = expression.eval(data=cel_data).value()
    assert rule.evaluate(activation) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("record.nope == 1", "undefined field 'nope'"),
        ("record.name == 1", "no matching overload"),
        ("record.name", "must be a bool expression"),
        ("timestamp(record.name) > timestamp(0)", "function 'timestamp'"),
        ('{"a": 1}.size() > 0', "a message or map literal"),
        ('size(b"x") > 0', "bytes literal"),
    ],
)
def test_rules_that_do_not_check_or_compile_are_refused(text: str, expected: str) -> None:
    variables = {
        "record": RuleType("record", record=(("name", rules.STRING),), name="proofless.catalogue.r")
    }
    with pytest.raises(RuleError, match=expected):
        rules.compile_rule(text, variables)


def test_the_compiled_source_holds_no_rule_text() -> None:
    variables = {
        "record": RuleType("record", record=(("name", rules.STRING),), name="proofless.catalogue.r")
    }
    rule = rules.compile_rule('record.name == "x\\"; import os; \\""', variables)
    assert "import os" in rule.python  # only inside a string literal, through repr()
    assert rule.evaluate({"record": {"name": 'x"; import os; "'}}) is True
