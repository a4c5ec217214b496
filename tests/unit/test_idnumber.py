"""GB 11643-1999 ID numbers and GB/T 2260 region containment."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.domain.errors import InvalidArgument
from gateway.domain.idnumber import (
    PROVINCES,
    birth_date,
    check_char,
    gender,
    id_number_violation,
    is_region_code,
    make_id,
    region_code,
    region_contains,
    validate_id_number,
)

TODAY = date(2025, 6, 1)
# The example number printed in GB 11643-1999 and countless references.
PUBLISHED = "11010519491231002X"

regions = st.sampled_from(sorted(PROVINCES)).flatmap(
    lambda p: st.integers(0, 9999).map(lambda n: f"{p}{n:04d}")
)
births = st.dates(min_value=date(1900, 1, 1), max_value=TODAY)
valid_ids = st.builds(make_id, regions, births, st.integers(0, 999))


def _violation(value: str) -> str:
    with pytest.raises(InvalidArgument) as info:
        validate_id_number(value, today=TODAY)
    (violation,) = info.value.violations
    assert violation.field == "applicant.id_number"
    assert value not in violation.description or not value
    return violation.description


def test_published_example() -> None:
    assert validate_id_number(PUBLISHED, today=TODAY) == PUBLISHED
    assert check_char(PUBLISHED[:17]) == "X"
    assert birth_date(PUBLISHED) == date(1949, 12, 31)
    assert gender(PUBLISHED) == "female"
    assert region_code(PUBLISHED) == "110105"


@pytest.mark.parametrize(
    "value",
    [
        "11010519491231002X",
        "110101199003074477",  # widely used test number
        "440308199901010012",
        make_id("350505", date(1985, 3, 9), 123),
        make_id("350981", date(2000, 2, 29), 8),
    ],
)
def test_known_valid(value: str) -> None:
    assert validate_id_number(value, today=TODAY) == value


def test_lowercase_x_is_normalised() -> None:
    assert validate_id_number(PUBLISHED.lower(), today=TODAY) == PUBLISHED


def test_default_field_and_custom_field() -> None:
    with pytest.raises(InvalidArgument) as info:
        validate_id_number("123", "claims[0].params.other_id_number")
    assert info.value.violations[0].field == "claims[0].params.other_id_number"


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("", "required"),
        ("1101051949123100", "18 characters"),
        ("11010519491231002XX", "18 characters"),
        ("11010519491231002Y", "digit or X"),
        ("X10105194912310020", "digit or X"),
        (" 1010519491231002X", "digit or X"),
        ("１1010519491231002X", "digit or X"),  # full-width digit
        ("1101051949123100X2", "digit or X"),
        ("99010519491231002X", "province"),
        ("00010519491231002X", "province"),
        ("110105194902300024", "calendar date"),  # 30 February
        ("110105194913010024", "calendar date"),
        ("110105189912310024", "between 1900"),
        ("110105203001010024", "between 1900"),  # future
        ("110105194912310021", "check character"),
    ],
)
def test_each_rule_has_one_precise_violation(value: str, rule: str) -> None:
    assert rule in _violation(value)


def test_birth_today_is_fine_tomorrow_is_not() -> None:
    assert validate_id_number(make_id("350100", TODAY, 1), today=TODAY)
    tomorrow = date(2025, 6, 2)
    value = make_id("350100", tomorrow, 1)
    assert "between 1900" in _violation(value)


def test_gender_from_sequence() -> None:
    assert gender(make_id("350100", date(1990, 1, 1), 1)) == "male"
    assert gender(make_id("350100", date(1990, 1, 1), 2)) == "female"


def test_make_id_rejects_bad_parts() -> None:
    with pytest.raises(ValueError, match="region"):
        make_id("990000", date(1990, 1, 1), 1)
    with pytest.raises(ValueError, match="sequence"):
        make_id("350100", date(1990, 1, 1), 1000)
    with pytest.raises(ValueError, match="1900"):
        make_id("350100", date(1899, 12, 31), 1)
    with pytest.raises(ValueError, match="17"):
        check_char("1234")


@given(valid_ids)
def test_every_generated_id_validates(value: str) -> None:
    assert validate_id_number(value, today=TODAY) == value
    assert validate_id_number(value.lower(), today=TODAY) == value
    assert id_number_violation(value, "f", today=TODAY) is None


@given(
    valid_ids,
    st.integers(0, 17),
    st.sampled_from("0123456789Xx a-/\u00a0１\n"),
)
def test_any_single_character_change_is_rejected(value: str, pos: int, char: str) -> None:
    changed = value[:pos] + char + value[pos + 1 :]
    if changed.upper() == value:  # x ↔ X is the same number
        return
    violation = id_number_violation(changed, "applicant.id_number", today=TODAY)
    assert violation is not None


@given(valid_ids, st.integers(0, 16), st.integers(1, 9))
def test_every_digit_substitution_breaks_the_checksum(value: str, pos: int, delta: int) -> None:
    # Weights are non-zero mod 11, so any single-digit change moves the sum: the checksum
    # alone catches it even when the changed digit still forms a valid region and date.
    digit = str((int(value[pos]) + delta) % 10)
    changed17 = value[:pos] + digit + value[pos + 1 : 17]
    assert check_char(changed17) != value[17]


@given(st.text(max_size=30))
def test_arbitrary_text_never_raises_anything_but_invalid_argument(text: str) -> None:
    try:
        validate_id_number(text, today=TODAY)
    except InvalidArgument as exc:
        caught = exc
    else:
        return
    assert len(caught.violations) == 1


# ---- regions -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outer", "inner", "expected"),
    [
        ("350000", "350505", True),  # province ⊃ county
        ("350000", "350500", True),  # province ⊃ city
        ("350000", "350000", True),
        ("350000", "360100", False),
        ("350500", "350505", True),  # Quanzhou ⊃ Quangang
        ("350500", "350583", True),  # Quanzhou ⊃ Nan'an
        ("350500", "350500", True),
        ("350500", "350100", False),  # Quanzhou ⊅ Fuzhou
        ("350500", "350000", False),  # a city does not contain its province
        ("350505", "350505", True),  # a county contains only itself
        ("350505", "350583", False),
        ("350505", "350500", False),
        ("350100", "350102", True),  # Fuzhou ⊃ Gulou
        ("350900", "350981", True),  # Ningde ⊃ Fu'an
        ("990000", "990101", False),  # not a province
        ("35000", "350505", False),
        ("350000", "", False),
        ("３５００００", "350505", False),
    ],
)
def test_region_contains(outer: str, inner: str, expected: bool) -> None:
    assert region_contains(outer, inner) is expected


@given(regions)
def test_every_region_is_in_its_province_and_itself(code: str) -> None:
    assert is_region_code(code)
    assert region_contains(code, code)
    assert region_contains(code[:2] + "0000", code)
    assert region_contains(code[:4] + "00", code)
