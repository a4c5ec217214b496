"""Canonical entry bytes and the citizen's pseudonym."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.audit.entry import AuditEntryError, canonical_json, check_entry, subject_of

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
