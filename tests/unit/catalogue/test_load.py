"""Loading the catalogue: the flagship files load; a broken file is refused as a whole with
every problem listed by file, line and key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.catalogue import CatalogueError, load_catalogue, parse_catalogue
from gateway.catalogue.tomlpos import KeyLines, dotted

ROOT = Path(__file__).resolve().parents[3]
CATALOGUE = ROOT / "deploy" / "catalogue"


def files() -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(CATALOGUE.glob("*.toml"))}


def broken(name: str, old: str, new: str) -> dict[str, bytes]:
    out = files()
    text = out[name].decode()
    assert old in text, old
    out[name] = text.replace(old, new, 1).encode()
    return out


def problems(data: dict[str, bytes]) -> list[str]:
    with pytest.raises(CatalogueError) as caught:
        parse_catalogue(data)
    return [str(issue) for issue in caught.value.issues]


def test_the_deployed_catalogue_loads() -> None:
    catalogue = load_catalogue(CATALOGUE)
    assert {"household", "social_security", "property"} <= set(catalogue.departments)
    assert {
        "household.residence",
        "household.kinship",
        "social_security.contribution",
        "property.ownership",
        "property.encumbrance",
    } <= set(catalogue.claims)
    assert catalogue.evidence["household"].message == "proofless.v1.HouseholdRecord"


def test_version_is_the_sha256_of_the_files_and_changes_with_any_byte() -> None:
    a = parse_catalogue(files()).version
    assert a == parse_catalogue(files()).version
    assert len(a) == 64
    changed = broken("household.toml", 'name = "户籍信息"', 'name = "户籍信息 "')
    assert parse_catalogue(changed).version != a


def test_an_unknown_field_type_is_named_with_its_line() -> None:
    data = broken(
        "household.toml", 'name = "birth_date"\ntype = "date"', 'name = "birth_date"\ntype = "dat"'
    )
    (problem,) = problems(data)
    line = data["household.toml"].decode().splitlines().index('type = "dat"') + 1
    assert problem.startswith(
        f"household.toml:{line}: evidence.household.field[4].type: must be one of"
    )


def test_every_problem_is_listed_not_only_the_first() -> None:
    data = broken("household.toml", 'convert = "date8"', 'convert = "date9"')
    text = (
        data["social_security.toml"].decode().replace('enum = "insurance_status"', 'enum = "nope"')
    )
    data["social_security.toml"] = text.encode()
    found = problems(data)
    assert any("household.toml" in p and "unknown converter" in p for p in found)
    assert any("social_security.toml" in p and "no [enums.nope]" in p for p in found)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("record.status ==", "record.statu ==", "undefined field 'statu'"),
        ('record.status == "active"', "record.status == 1", "no matching overload for '_==_'"),
        ("region_contains(params.region", "region_within(params.region", "undeclared reference"),
        ("region_contains(params.region, record.region_code)", "record.region_code", "bool"),
    ],
)
def test_rules_are_type_checked_against_the_evidence(old: str, new: str, expected: str) -> None:
    found = problems(broken("household.toml", old, new))
    assert len(found) == 1
    assert "evidence.household.claims.residence.rule" in found[0]
    assert expected in found[0]


def test_a_rule_may_not_use_a_parameter_the_claim_does_not_declare() -> None:
    found = problems(broken("household.toml", "params.region, record", "params.area, record"))
    assert "undefined field 'area'" in found[0]


def test_a_typed_message_must_have_every_catalogue_field() -> None:
    data = broken("household.toml", 'name = "ethnicity"', 'name = "ethnic_group"')
    (problem,) = problems(data)
    assert "evidence.household.message" in problem
    assert "proofless.v1.HouseholdRecord has no such field" in problem


def test_a_department_is_declared_once() -> None:
    data = files()
    data["zz_copy.toml"] = data["household.toml"]
    found = problems(data)
    assert any("department household is also declared" in p for p in found)


def test_configuration_overrides_replace_department_settings() -> None:
    catalogue = parse_catalogue(files(), {"household": {"endpoint": "http://10.0.0.7:8101"}})
    assert catalogue.departments["household"].endpoint == "http://10.0.0.7:8101"
    with pytest.raises(CatalogueError) as caught:
        parse_catalogue(files(), {"nosuch": {"endpoint": "x"}})
    assert "departments.nosuch: names no catalogue department" in str(caught.value.issues[0])


def test_key_lines_follow_arrays_of_tables_and_quoted_keys() -> None:
    text = (
        '[a]\nx = 1\n[[a.f]]\nname = "p"\n[[a.f]]\nname = "q"\n[a.f.sub]\ny = 2\n'
        '[b."c.d"]\nz = """\nm\n"""\nw = 3\n'
    )
    lines = KeyLines(text)
    assert lines.line(("a", "x")) == 2
    assert lines.line(("a", "f", 1, "name")) == 6
    assert lines.line(("a", "f", 1, "sub", "y")) == 8
    assert lines.line(("b", "c.d", "w")) == 13
    assert lines.line(("a", "f", 1, "nothing")) == 5
    assert dotted(("b", "c.d", 2, "x")) == 'b."c.d"[2].x'
