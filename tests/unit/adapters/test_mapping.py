"""The declarative department → canonical mappings, including everything malformed."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest

from adapters import mapping
from adapters.base import DepartmentMalformed
from adapters.simulators import datagen
from adapters.simulators.household import person_payload as household_payload
from adapters.simulators.social_security import history_page
from adapters.simulators.social_security import person_payload as social_payload
from proofless.v1 import verification_pb2 as pb

POP = datagen.generate(20261121, 400)
HEAD = POP.scenarios["household_head"]


def household_data() -> dict[str, Any]:
    return household_payload(POP, POP.people[HEAD])


def test_household_record_from_registry_payload() -> None:
    record = mapping.household_record(household_data())
    person = POP.people[HEAD]
    household = POP.household_of(HEAD)
    assert record.name == person.name
    assert record.id_number == HEAD
    assert record.gender == pb.GENDER_MALE
    assert record.birth_date == person.birth_date.isoformat()
    assert record.household_number == household.number
    assert record.region_code == "350505"
    assert record.relation_to_head == pb.RELATION_HEAD
    assert record.status == pb.HOUSEHOLD_STATUS_ACTIVE
    assert record.registration_authority == household.authority
    assert {m.relation_to_head for m in record.members} == {
        pb.RELATION_SPOUSE,
        pb.RELATION_CHILD,
        pb.RELATION_PARENT,
    }


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("XM", None),
        ("XM", ""),
        ("XM", 12),
        ("SFZHM", "35050519760926005"),
        ("XB", "3"),
        ("XB", True),
        ("CSRQ", "19761332"),
        ("CSRQ", "1976-09-26"),
        ("XZQH", "35050"),
        ("YHZGX", "邻居"),
        ("ZT", "失踪"),
        ("JTCY", "配偶"),
        ("JTCY", [{"XM": "某", "YHZGX": "房客"}]),
        ("JTCY", [{"YHZGX": "配偶"}]),
    ],
)
def test_household_malformed_fields(key: str, value: object) -> None:
    data = household_data()
    data[key] = value
    with pytest.raises(DepartmentMalformed) as raised:
        mapping.household_record(data)
    text = str(raised.value)
    assert HEAD not in text
    assert POP.people[HEAD].name not in text


def test_missing_field_and_non_object() -> None:
    data = household_data()
    del data["DJJG"]
    with pytest.raises(DepartmentMalformed, match="DJJG"):
        mapping.household_record(data)
    for junk in (None, [], "x", 3):
        with pytest.raises(DepartmentMalformed):
            mapping.household_record(junk)


def test_members_are_optional() -> None:
    data = household_data()
    del data["JTCY"]
    assert list(mapping.household_record(data).members) == []


def test_social_security_record_sorts_pages_and_converts_money() -> None:
    account = POP.social_security[POP.scenarios["long_contributor"]]
    pages = [history_page(account, n, 24)["list"] for n in range(1, 20)]
    rows = [row for page in reversed(pages) for row in page]  # pages in any order
    record = mapping.social_security_record(social_payload(account), rows)
    assert len(record.history) == len(account.contributions())
    months = [c.month for c in record.history]
    assert months == sorted(months)
    pension = next(i for i in record.insurances if i.type == pb.INSURANCE_TYPE_PENSION)
    assert pension.total_months == account.total_months("110")
    assert pension.status == pb.INSURANCE_STATUS_ACTIVE
    first = account.contributions()[0]
    assert record.history[0].base_cents == first.base_cents


@pytest.mark.parametrize(
    ("value", "cents"),
    [("4860.00", 486000), ("4860", 486000), ("0.01", 1), (3000, 300000), (Decimal("12.5"), 1250)],
)
def test_yuan_to_cents(value: object, cents: int) -> None:
    assert mapping.yuan_to_cents(value) == cents


@pytest.mark.parametrize("value", ["4860.005", "-1.00", "abc", "NaN", "Infinity", None, True, []])
def test_bad_money_is_malformed(value: object) -> None:
    row = {"JFNY": "202401", "XZLX": "110", "DWMC": "某公司", "CBDQ": "350505", "JFJS": value}
    with pytest.raises(DepartmentMalformed):
        mapping.social_security_record({"XM": "某", "SFZHM": HEAD, "CBXX": []}, [row])


@pytest.mark.parametrize(
    ("key", "value"),
    [("XZLX", "999"), ("CBZT", "9"), ("QSNY", "200313"), ("LJJFYS", "-3"), ("LJJFYS", "x")],
)
def test_bad_insurance_codes_are_malformed(key: str, value: object) -> None:
    person = social_payload(POP.social_security[POP.scenarios["long_contributor"]])
    person["CBXX"][0][key] = value
    with pytest.raises(DepartmentMalformed, match=key):
        mapping.social_security_record(person, [])


def property_row(**changes: object) -> dict[str, Any]:
    row: dict[str, Any] = {
        "BDCQZH": "闽(2019)泉港区不动产权第0012345号",
        "ZL": "福建省泉州市泉港区驿峰东路88号锦绣花园3幢1202室",
        "XZQH": "350505",
        "MJ": 89.5,
        "YT": "住宅",
        "GYFS": "单独所有",
        "FE": "",
        "DJSJ": "2019-05-06 10:11:12",
        "DYZT": "1",
        "CFZT": "0",
        "GXSJ": "2024-01-02 03:04:05",
    }
    row.update(changes)
    return row


def test_property_record() -> None:
    record = mapping.property_record(property_row())
    assert record.certificate_number == "闽(2019)泉港区不动产权第0012345号"
    assert record.area_square_meters == 89.5
    assert record.usage == pb.PROPERTY_USAGE_RESIDENTIAL
    assert record.co_ownership == pb.CO_OWNERSHIP_SOLE
    assert record.share == 1.0
    assert record.registration_date == "2019-05-06"
    assert record.mortgaged
    assert not record.seized


@pytest.mark.parametrize(
    ("gyfs", "fe", "share"),
    [
        ("单独所有", "", 1.0),
        ("共同共有", None, 1.0),
        ("按份共有", "60%", 0.6),
        ("按份共有", "1/2", 0.5),
        ("按份共有", "0.25", 0.25),
        ("按份共有", "100%", 1.0),
    ],
)
def test_shares(gyfs: str, fe: object, share: float) -> None:
    assert mapping.property_record(property_row(GYFS=gyfs, FE=fe)).share == pytest.approx(share)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("FE", "150%"),
        ("FE", "1/0"),
        ("FE", "0"),
        ("FE", "half"),
        ("GYFS", "按份共有"),  # a share must be given for shared ownership
        ("GYFS", "合伙"),
        ("YT", "宅基地"),
        ("MJ", -3),
        ("MJ", "大"),
        ("DYZT", "2"),
        ("CFZT", None),
        ("DJSJ", "19/05/2019"),
        ("XZQH", 350505.0),
    ],
)
def test_property_malformed(key: str, value: object) -> None:
    with pytest.raises(DepartmentMalformed):
        mapping.property_record(property_row(**{key: value}))


def test_driver_types_are_accepted() -> None:
    # asyncpg hands NUMERIC as Decimal; a department could use real date columns.
    row = property_row(MJ=Decimal("120.456"), DJSJ=datetime(2020, 1, 2, 3, 4), DYZT=0, CFZT=1)
    record = mapping.property_record(row)
    assert record.area_square_meters == pytest.approx(120.46)
    assert record.registration_date == "2020-01-02"
    assert not record.mortgaged
    assert record.seized


def test_update_time_formats() -> None:
    a = mapping.as_of("20240102030405", "x")
    b = mapping.as_of("2024-01-02 03:04:05", "x")
    assert a == b
    assert a.utcoffset() is not None
    assert a.isoformat() == "2024-01-02T03:04:05+08:00"
    with pytest.raises(DepartmentMalformed):
        mapping.as_of("yesterday", "x")
    with pytest.raises(DepartmentMalformed):
        mapping.as_of(None, "x")
