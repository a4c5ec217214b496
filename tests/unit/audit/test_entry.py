"""Canonical entry bytes and the citizen's pseudonym."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.audit.entry import (
    AuditEntryError,
    canonical_json,
    check_entry,
    check_values,
    subject_of,
)

scalars = st.none() | st.booleans() | st.integers() | st.text()
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
)


@given(st.dictionaries(st.text(), values, max_size=8))
def test_canonical_json_is_json_dumps(entry: dict[str, object]) -> None:
    try:
        check_entry(entry)
        got = canonical_json(entry)
    except AuditEntryError:
        return  # lone surrogates
    want = json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert got == want


@pytest.mark.parametrize(
    "entry",
    [{"a": 1.0}, {"a": [1, 2.5]}, {"a": {"b": 0.1}}, {1: "x"}, {"a": b"bytes"}, {"a": {2: 1}}],
)
def test_check_entry_refuses(entry: dict[object, object]) -> None:
    with pytest.raises(AuditEntryError):
        check_entry(entry)  # type: ignore[arg-type]


def test_subject_is_hmac_sha256_hex() -> None:
    want = hmac.new(b"pepper", b"11010519491231002X", hashlib.sha256).hexdigest()
    assert subject_of(b"pepper", "11010519491231002X") == want
    assert subject_of(b"other", "11010519491231002X") != want


_json_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20)
_json_scalar = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | _json_text
_flat_entry = st.dictionaries(
    _json_text, _json_scalar | st.lists(_json_scalar, max_size=4), max_size=25
)
_nested_entry = st.recursive(
    _json_scalar,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_json_text, inner, max_size=3),
    max_leaves=12,
)


@given(_flat_entry | st.dictionaries(_json_text, _nested_entry, max_size=6))
def test_direct_c_encoder_matches_json_dumps_on_entry_shapes(entry: dict[str, object]) -> None:
    expected = json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert canonical_json(entry) == expected.encode()


# ---- orjson's bytes against the stdlib's ---------------------------------------------------

#: every code point but the surrogates, the astral planes and the ones JSON escapes included
_any_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
_edge_text = st.sampled_from(
    ["", "\x00", "\x1f", "\x7f", '"', "\\", "/", "\u2028", "\u2029", "\ufeff", "\uffff",
     "\U00010000", "\U0001f600", "户籍", "é", "\b\f\n\r\t"]
)  # fmt: skip
_keys = _any_text | _edge_text
_ints = st.integers(-(2**63), 2**64 - 1) | st.integers(-(2**80), 2**80)
_leaves = st.none() | st.booleans() | _ints | _any_text | _edge_text
_deep = st.recursive(
    _leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=4),
    max_leaves=30,
)


def _stdlib(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@given(st.dictionaries(_keys, _deep, max_size=10))
def test_canonical_json_equals_the_stdlib_on_nested_unicode_and_wide_ints(
    entry: dict[str, object],
) -> None:
    check_entry(entry)
    assert canonical_json(entry) == _stdlib(entry)


@given(st.dictionaries(st.text(max_size=6), st.integers(), min_size=2, max_size=30))
def test_keys_sort_in_code_point_order_as_the_stdlib_does(entry: dict[str, int]) -> None:
    # orjson sorts UTF-8 bytes, the stdlib code points: the same order for every string but
    # those with surrogates, which both refuse (the stdlib once it encodes to UTF-8)
    try:
        want = _stdlib(entry)
    except UnicodeEncodeError:
        with pytest.raises(AuditEntryError):
            canonical_json(entry)
        return
    assert canonical_json(entry) == want


@pytest.mark.parametrize(
    "entry",
    [
        {"a": "\ud800"},
        {"\udfff": 1},
        {"a": ["ok", {"b": "x\udc00y"}]},
        {"a": {"b": [1, 2, {"c": "\ud83d"}]}},
    ],
)
def test_lone_surrogates_are_refused_anywhere(entry: dict[str, object]) -> None:
    check_entry(entry)  # strings are strings: the encoding finds them
    with pytest.raises(AuditEntryError):
        canonical_json(entry)


@pytest.mark.parametrize(
    "entry", [{"a": 2**64}, {"a": -(2**63) - 1}, {"a": [1, 10**30]}, {"a": {"b": -(10**40)}}]
)
def test_integers_past_64_bits_are_encoded_as_before(entry: dict[str, object]) -> None:
    assert canonical_json(entry) == _stdlib(entry)


def test_deep_nesting_past_orjsons_limit_is_encoded_as_before() -> None:
    deep: object = 1
    for _ in range(300):
        deep = [deep]
    entry = {"a": deep, "b": {"c": deep}}
    assert canonical_json(entry) == _stdlib(entry)


@pytest.mark.parametrize("entry", [{1: "x"}, {"a": {2: "y"}}, {"a": [{None: 1}]}])
def test_keys_that_are_not_strings_are_refused_by_the_encoding_too(
    entry: dict[object, object],
) -> None:
    with pytest.raises(AuditEntryError):
        canonical_json(entry)  # type: ignore[arg-type]


@given(st.dictionaries(st.text(max_size=4), values, max_size=8))
def test_check_values_refuses_what_check_entry_refuses(entry: dict[str, object]) -> None:
    try:
        check_entry(entry)
    except AuditEntryError:
        with pytest.raises(AuditEntryError):
            check_values(entry)
    else:
        check_values(entry)


@pytest.mark.parametrize("entry", [{"a": 1.0}, {"a": [1, 2.5]}, {"a": {"b": 0.1}}, {"a": (1.5,)}])
def test_check_values_refuses_floats(entry: dict[str, object]) -> None:
    with pytest.raises(AuditEntryError):
        check_values(entry)


def test_astral_keys_sort_after_the_whole_bmp() -> None:
    # code point order (and UTF-8 byte order); UTF-16 order would put U+10000 before U+E000
    entry = {"\U00010000": 1, "\uffff": 2, "\ue000": 3, "z": 4, "\u2028": 5, "é": 6}
    assert canonical_json(entry) == _stdlib(entry)
    assert canonical_json(entry).decode().index("\U00010000") > canonical_json(
        entry
    ).decode().index("\uffff")
