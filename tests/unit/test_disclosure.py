"""The hot path's hand-rolled encodings equal the general ones they replace: the masked record
and its dict (FieldMask + MessageToDict), the proof JWS (jws.sign over canonical JSON, data
spliced in), rfc3339 (strftime), proof ids (uuid4().hex's shape)."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf import field_mask_pb2, json_format, struct_pb2, timestamp_pb2
from google.protobuf.message import Message
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.crypto import jws
from gateway.crypto.proofs import (
    ProofClaims,
    ProofSigner,
    canonical_json,
    new_proof_id,
)
from gateway.domain.disclosure import disclose, mask_and_disclose
from gateway.domain.times import rfc3339, set_timestamp
from proofless.v1 import verification_pb2 as pb


def _reference(record: Message, fields: frozenset[str]) -> tuple[Message, dict[str, Any]]:
    out = type(record)()
    field_mask_pb2.FieldMask(paths=sorted(fields)).MergeMessage(record, out)
    return out, json_format.MessageToDict(
        out, preserving_proto_field_name=True, always_print_fields_with_no_presence=False
    )


def _household() -> pb.HouseholdRecord:
    r = pb.HouseholdRecord(
        name="张三",
        id_number="35010019900307001X",
        gender=pb.GENDER_MALE,
        ethnicity="汉",
        birth_date="1990-03-07",
        household_number="H1",
        address="福州市 \u2028 x",
        region_code="350100",
        relation_to_head=2,
        registration_authority="派出所",
        status=1,
    )
    r.members.add(name="李四", relation_to_head=3)
    r.members.add()
    return r


def _social() -> pb.SocialSecurityRecord:
    r = pb.SocialSecurityRecord(name="王五", id_number="350100199003070021")
    r.insurances.add(type=1, status=2, employer="E", total_months=4_000_000_000)
    r.insurances.add(type=99, status=0)  # an enum number without a name
    r.history.add(month="2024-01", type=2, base_cents=-(2**62))
    r.history.add(base_cents=0)
    return r


def _properties() -> list[pb.PropertyRecord]:
    return [
        pb.PropertyRecord(
            certificate_number="闽(2024)001",
            area_square_meters=89.37,
            usage=1,
            co_ownership=3,
            share=1 / 3,
            mortgaged=True,
        ),
        pb.PropertyRecord(area_square_meters=math.inf, share=math.nan, seized=False),
        pb.PropertyRecord(area_square_meters=-math.inf),
        pb.PropertyRecord(),
    ]


RECORDS: list[Message] = [_household(), _social(), *_properties()]


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r).__name__)
def test_mask_and_disclose_equal_fieldmask_and_message_to_dict(record: Message) -> None:
    names = [f.name for f in record.DESCRIPTOR.fields]
    masks = [frozenset(names), frozenset(names[::2]), frozenset(names[1:2]), frozenset()]
    for fields in masks:
        masked, data = mask_and_disclose(record, fields)
        ref_masked, ref_data = _reference(record, fields)
        assert masked == ref_masked
        assert masked.SerializeToString(deterministic=True) == ref_masked.SerializeToString(
            deterministic=True
        )
        # NaN != NaN: compare the canonical encodings, which is what digests and proofs see
        assert canonical_json(data) == canonical_json(ref_data)
        assert list(data) == list(ref_data)


@settings(max_examples=200, deadline=None)
@given(
    name=st.text(),
    members=st.lists(st.tuples(st.text(), st.integers(0, 2**31 - 1)), max_size=3),
    status=st.integers(0, 2**31 - 1),
)
def test_disclose_matches_on_random_records(
    name: str, members: list[tuple[str, int]], status: int
) -> None:
    record = pb.HouseholdRecord(name=name, status=status)
    for member_name, relation in members:
        record.members.add(name=member_name, relation_to_head=relation)
    assert disclose(record) == _reference(record, frozenset(["name", "status", "members"]))[1]


def test_unplanned_types_fall_back_to_message_to_dict() -> None:
    value = struct_pb2.Struct()
    value.update({"a": 1.5, "b": [True, None]})
    assert disclose(value) == json_format.MessageToDict(value, preserving_proto_field_name=True)


def _claims(data: Any, **extra: Any) -> ProofClaims:
    return ProofClaims(
        proof_id="p" * 32,
        issuer="proofless-test",
        caller='a "quoted" caller',
        service_item="item",
        case_id='"data":0 in a case id',
        applicant="ab" * 32,
        kind="household",
        fields=["name", "address"],
        data=data,
        digest="cd" * 32,
        departments=["household"],
        as_of=datetime(2025, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        issued_at=datetime(2026, 1, 2, 3, 4, 5, 600, tzinfo=UTC),
        audit_log="log.example",
        audit_index=7,
        **extra,
    )


@pytest.mark.parametrize(
    "data",
    [
        {"name": "张三", "address": '"data":0'},
        [{"id": "c1", "verdict": 1}, {}],
        {},
    ],
)
def test_signer_output_is_jws_sign_of_the_canonical_payload(data: Any) -> None:
    key = Ed25519PrivateKey.generate()
    signer = ProofSigner(key)
    plain = _claims(data)
    spliced = _claims(data, data_json=canonical_json(data))
    expected = jws.sign(
        canonical_json(plain.payload()),
        key,
        {"alg": "EdDSA", "kid": signer.kid, "typ": "proofless-proof+jwt"},
    )
    assert spliced.payload_json() == canonical_json(plain.payload())
    assert signer.sign(spliced) == expected  # Ed25519 is deterministic
    assert signer.sign(plain) == expected


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2026, 6, 1, 8, 0, 0, tzinfo=timezone(timedelta(hours=8))),
        datetime(2026, 6, 1, 0, 0, 0, 123000, tzinfo=timezone(timedelta(hours=-5))),
    ],
)
def test_rfc3339_equals_strftime(moment: datetime) -> None:
    assert rfc3339(moment) == moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_proof_ids_are_32_hex_digits_and_distinct() -> None:
    ids = {new_proof_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
)


@given(_json_values)
def test_proof_canonical_json_is_json_dumps(value: object) -> None:
    try:
        want = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        expected = want.encode()
    except UnicodeEncodeError:  # a lone surrogate: both refuse it
        with pytest.raises(UnicodeEncodeError):
            canonical_json(value)
        return
    assert canonical_json(value) == expected


@given(st.datetimes(timezones=st.timezones()))
def test_set_timestamp_is_from_datetime(moment: datetime) -> None:
    want, got = timestamp_pb2.Timestamp(), timestamp_pb2.Timestamp()
    want.FromDatetime(moment)
    set_timestamp(got, moment)
    assert got == want
