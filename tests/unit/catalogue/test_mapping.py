"""The catalogue's converters and the record mapping of the three deployed evidence types,
against the simulators' own payloads, including everything malformed; the typed messages
built from the canonical records; and what the connectors make of an answer (the subject
echo, cardinality, the as-of time)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.connectors import common
from adapters.simulators import datagen
from adapters.simulators.household import person_payload as household_payload
from adapters.simulators.property_db import table_rows
from adapters.simulators.social_security import history_page
from adapters.simulators.social_security import person_payload as social_payload
from gateway.catalogue import converters
from gateway.catalogue.mapping import TypedBuilder, map_record
from gateway.catalogue.schema import EvidenceType, HttpCall
from gateway.domain.errors import DepartmentMalformed, DepartmentUnavailable, RecordNotFound
from proofless.v1 import verification_pb2 as pb
from tests.support.rules import catalogue

POP = datagen.generate(20261121, 400)
HEAD = POP.scenarios["household_head"]
LONG = POP.scenarios["long_contributor"]


def evidence(code: str) -> EvidenceType:
    return catalogue().evidence[code]


def household_data() -> dict[str, Any]:
    return household_payload(POP, POP.people[HEAD])


def household(data: object) -> dict[str, Any]:
    return map_record(evidence("household").record, data, "household")


def social_data(rows: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The person answer with the history pages merged in, as the http_json connector does."""
    account = POP.social_security[LONG]
    if rows is None:
        pages = history_page(account, 1, 24)["pages"]
        rows = [row for n in range(1, pages + 1) for row in history_page(account, n, 24)["list"]]
    return {**social_payload(account), "contributions": rows}


def social(data: object) -> dict[str, Any]:
    return map_record(evidence("social_security").record, data, "social_security")


def assert_nothing_personal(error: BaseException, *values: str) -> None:
    text = str(error)
    for value in values:
        assert value not in text
    assert error.__cause__ is None


# ---- household ----------------------------------------------------------------------------


def test_household_record_from_registry_payload() -> None:
    record = household(household_data())
    person = POP.people[HEAD]
    home = POP.household_of(HEAD)
    assert record["name"] == person.name
    assert record["id_number"] == HEAD
    assert record["gender"] == "male"
    assert record["ethnicity"] == person.ethnicity
    assert record["birth_date"] == person.birth_date.isoformat()
    assert record["household_number"] == home.number
    assert record["address"] == home.address
    assert record["region_code"] == home.region_code
    assert record["relation_to_head"] == "head"
    assert record["status"] == "active"
    assert record["registration_authority"] == home.authority
    assert {m["relation_to_head"] for m in record["members"]} == {"spouse", "child", "parent"}
    assert set(record) == set(evidence("household").record.names)


def test_household_typed_message() -> None:
    message = TypedBuilder(evidence("household")).build(household(household_data()))
    assert isinstance(message, pb.HouseholdRecord)
    assert message.id_number == HEAD
    assert message.gender == pb.GENDER_MALE
    assert message.relation_to_head == pb.RELATION_HEAD
    assert message.status == pb.HOUSEHOLD_STATUS_ACTIVE
    assert message.birth_date == POP.people[HEAD].birth_date.isoformat()
    assert {m.relation_to_head for m in message.members} == {
        pb.RELATION_SPOUSE,
        pb.RELATION_CHILD,
        pb.RELATION_PARENT,
    }


@pytest.mark.parametrize(
    ("scenario", "status", "number"),
    [
        ("moved_out", "moved_out", pb.HOUSEHOLD_STATUS_MOVED_OUT),
        ("deceased", "deceased", pb.HOUSEHOLD_STATUS_DECEASED),
    ],
)
def test_household_statuses(scenario: str, status: str, number: int) -> None:
    person = POP.people[POP.scenarios[scenario]]
    record = household(household_payload(POP, person))
    assert record["status"] == status
    message = TypedBuilder(evidence("household")).build(record)
    assert isinstance(message, pb.HouseholdRecord)
    assert message.status == number


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("XM", None, "XM"),
        ("XM", "", "XM"),
        ("XM", 12, "XM"),
        ("SFZHM", "35050519760926005", "SFZHM"),
        ("XB", "3", "XB"),
        ("XB", True, "XB"),
        ("CSRQ", "19761332", "CSRQ"),
        ("CSRQ", "1976-09-26", "CSRQ"),
        ("XZQH", "35050", "XZQH"),
        ("YHZGX", "邻居", "YHZGX"),
        ("ZT", "失踪", "ZT"),
        ("JTCY", "配偶", "JTCY"),
        ("JTCY", [{"XM": "某", "YHZGX": "房客"}], "YHZGX"),
        ("JTCY", [{"YHZGX": "配偶"}], "XM"),
        ("JTCY", ["配偶"], "object"),
    ],
)
def test_household_malformed_fields(key: str, value: object, named: str) -> None:
    data = household_data()
    data[key] = value
    with pytest.raises(DepartmentMalformed, match=named) as raised:
        household(data)
    assert str(raised.value).startswith("household")
    assert_nothing_personal(raised.value, HEAD, POP.people[HEAD].name)


def test_missing_field_and_non_object() -> None:
    data = household_data()
    del data["DJJG"]
    with pytest.raises(DepartmentMalformed, match="DJJG is missing"):
        household(data)
    junk: object
    for junk in (None, [], "x", 3):
        with pytest.raises(DepartmentMalformed, match="expected an object"):
            household(junk)


def test_members_are_optional() -> None:
    data = household_data()
    del data["JTCY"]
    record = household(data)
    assert "members" not in record
    message = TypedBuilder(evidence("household")).build(record)
    assert isinstance(message, pb.HouseholdRecord)
    assert list(message.members) == []
    data["JTCY"] = []
    assert household(data)["members"] == []


def test_id_number_check_character_is_upper_cased() -> None:
    assert converters.id_number(" 11010519491231002x ") == "11010519491231002X"


# ---- social security ----------------------------------------------------------------------


def test_social_security_record_sorts_pages_and_converts_money() -> None:
    account = POP.social_security[LONG]
    pages = [history_page(account, n, 24)["list"] for n in range(1, 20)]
    rows = [row for page in reversed(pages) for row in page]  # pages in any order
    record = social(social_data(rows))
    assert record["id_number"] == LONG
    assert len(record["history"]) == len(account.contributions())
    months = [c["month"] for c in record["history"]]
    assert months == sorted(months)
    pension = next(i for i in record["insurances"] if i["type"] == "pension")
    assert pension["total_months"] == account.total_months("110")
    assert pension["status"] == "active"
    first = account.contributions()[0]
    assert record["history"][0]["month"] == converters.month6(datagen.month_text(first.month))
    assert record["history"][0]["base_cents"] == first.base_cents


def test_social_security_typed_message_orders_history_by_enum_number() -> None:
    message = TypedBuilder(evidence("social_security")).build(social(social_data()))
    assert isinstance(message, pb.SocialSecurityRecord)
    keys = [(c.month, c.type) for c in message.history]
    assert keys == sorted(keys)
    pension = next(i for i in message.insurances if i.type == pb.INSURANCE_TYPE_PENSION)
    assert pension.status == pb.INSURANCE_STATUS_ACTIVE
    assert pension.total_months == POP.social_security[LONG].total_months("110")


@pytest.mark.parametrize(
    ("value", "cents"),
    [("4860.00", 486000), ("4860", 486000), ("0.01", 1), (3000, 300000), (Decimal("12.5"), 1250)],
)
def test_yuan_to_fen(value: object, cents: int) -> None:
    assert converters.yuan_to_fen(value) == cents


def money_row(value: object) -> dict[str, Any]:
    return {"JFNY": "202401", "XZLX": "110", "DWMC": "某公司", "CBDQ": "350505", "JFJS": value}


@pytest.mark.parametrize("value", ["4860.005", "-1.00", "abc", "NaN", "Infinity", None, True, []])
def test_bad_money_is_malformed(value: object) -> None:
    if value is not None:
        with pytest.raises(converters.FAILURES):
            converters.yuan_to_fen(value)
    data = {"XM": "某", "SFZHM": HEAD, "CBXX": [], "contributions": [money_row(value)]}
    with pytest.raises(DepartmentMalformed, match="JFJS") as raised:
        social(data)
    assert_nothing_personal(raised.value, HEAD)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("XZLX", "999"),
        ("CBZT", "9"),
        ("QSNY", "200313"),
        ("ZZNY", "2003-01"),
        ("CBDQ", "3505"),
        ("LJJFYS", "-3"),
        ("LJJFYS", "x"),
        ("LJJFYS", True),
    ],
)
def test_bad_insurance_codes_are_malformed(key: str, value: object) -> None:
    data = social_data([])
    data["CBXX"][0][key] = value
    with pytest.raises(DepartmentMalformed, match=key):
        social(data)


def test_employer_is_optional_for_residents_paying_themselves() -> None:
    data = social_data([{**money_row("100.00"), "DWMC": ""}])
    del data["CBXX"][0]["DWMC"]
    record = social(data)
    assert "employer" not in record["insurances"][0]
    assert "employer" not in record["history"][0]
    assert record["history"][0]["base_cents"] == 10000


def test_the_history_is_required() -> None:
    data = social_data([])
    del data["contributions"]
    with pytest.raises(DepartmentMalformed, match="contributions is missing"):
        social(data)


# ---- property -----------------------------------------------------------------------------


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


def prop(row: object) -> dict[str, Any]:
    return map_record(evidence("property").record, row, "property")


def test_property_record() -> None:
    record = prop(property_row())
    assert record == {
        "certificate_number": "闽(2019)泉港区不动产权第0012345号",
        "location": "福建省泉州市泉港区驿峰东路88号锦绣花园3幢1202室",
        "region_code": "350505",
        "area_square_meters": 89.5,
        "usage": "residential",
        "co_ownership": "sole",
        "share": 1.0,
        "registration_date": "2019-05-06",
        "mortgaged": True,
        "seized": False,
    }
    message = TypedBuilder(evidence("property")).build(record)
    assert isinstance(message, pb.PropertyRecord)
    assert message.usage == pb.PROPERTY_USAGE_RESIDENTIAL
    assert message.co_ownership == pb.CO_OWNERSHIP_SOLE
    assert message.share == 1.0
    assert message.mortgaged
    assert not message.seized


def test_property_rows_of_the_simulated_front_end_database() -> None:
    # The rows the simulator writes, joined as the view V_BDC_CQ joins them.
    units, owners = table_rows(POP)
    by_unit = {u[0]: u for u in units}
    mapped = 0
    for _, unit, _name, _kind, _owner_id, gyfs, fe in owners:
        u = by_unit[unit]
        row = dict(
            zip(
                ("BDCQZH", "ZL", "XZQH", "MJ", "YT", "DJSJ", "DYZT", "CFZT", "GXSJ"),
                (u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[10]),
                strict=True,
            )
        )
        record = prop({**row, "GYFS": gyfs, "FE": fe})
        assert 0 < record["share"] <= 1
        assert record["region_code"] == u[3]
        mapped += 1
    assert mapped == len(owners) > 0


@pytest.mark.parametrize(
    ("gyfs", "fe", "share"),
    [
        ("单独所有", "", 1.0),
        ("共同共有", None, 1.0),
        ("共同共有", "  ", 1.0),
        ("按份共有", "60%", 0.6),
        ("按份共有", "1/2", 0.5),
        ("按份共有", "0.25", 0.25),
        ("按份共有", "100%", 1.0),
    ],
)
def test_shares(gyfs: str, fe: object, share: float) -> None:
    assert converters.share(gyfs, fe) == pytest.approx(share)
    assert prop(property_row(GYFS=gyfs, FE=fe))["share"] == pytest.approx(share)


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
        ("MJ", 0),
        ("MJ", "大"),
        ("DYZT", "2"),
        ("CFZT", None),
        ("DJSJ", "19/05/2019"),
        ("XZQH", 350505.0),
        ("BDCQZH", ""),
    ],
)
def test_property_malformed(key: str, value: object) -> None:
    with pytest.raises(DepartmentMalformed):
        prop(property_row(**{key: value}))


def test_driver_types_are_accepted() -> None:
    # asyncpg hands NUMERIC as Decimal; a department could use real date columns.
    row = property_row(MJ=Decimal("120.456"), DJSJ=datetime(2020, 1, 2, 3, 4), DYZT=0, CFZT=1)
    record = prop(row)
    assert record["area_square_meters"] == pytest.approx(120.46)
    assert record["registration_date"] == "2020-01-02"
    assert not record["mortgaged"]
    assert record["seized"]
    assert prop(property_row(DJSJ=date(2020, 1, 2), DYZT="是", CFZT=False))["mortgaged"]
    assert prop(property_row(DJSJ="20200102"))["registration_date"] == "2020-01-02"


# ---- the smaller converters ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("convert", "value", "expected"),
    [
        (converters.date8, "19491231", "1949-12-31"),
        (converters.month6, "202402", "2024-02"),
        (converters.month6, 202402, "2024-02"),
        (converters.region_code, 350505, "350505"),
        (converters.count, "180", 180),
        (converters.count, 0, 0),
        (converters.integer, "-3", -3),
        (converters.number, "1.5", 1.5),
        (converters.text, "  某  ", "某"),
        (converters.flag, "否", False),
    ],
)
def test_converters_read(convert: Any, value: object, expected: object) -> None:
    assert convert(value) == expected


@pytest.mark.parametrize(
    ("convert", "value"),
    [
        (converters.date8, "19490231"),
        (converters.month6, "202413"),
        (converters.month6, True),
        (converters.region_code, True),
        (converters.count, True),
        (converters.integer, False),
        (converters.number, "Infinity"),
        (converters.text, 3),
        (converters.flag, None),
        (converters.credit_code, "91350100M000100Y4"),
        (converters.epoch_ms, 0),
        (converters.epoch_ms, "1700000000000"),
    ],
)
def test_converters_refuse(convert: Any, value: object) -> None:
    with pytest.raises(converters.FAILURES):
        convert(value)


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.integers(10**13, 10**14 - 1).map(str),  # every 14-digit string, most invalid
        st.datetimes(min_value=datetime(1000, 1, 1)).map(lambda d: f"{d:%Y%m%d%H%M%S}"),
        st.text(st.characters(categories=["Nd", "No"]), min_size=14, max_size=14),
    )
)
def test_fourteen_digit_times_read_as_strptime_reads_them(value: str) -> None:
    """beijing_time slices 14 digits itself; strptime's answer (or refusal) is the reference."""
    try:
        expected = datetime.strptime(value, "%Y%m%d%H%M%S").replace(tzinfo=converters.CHINA_TZ)
    except ValueError:
        with pytest.raises(converters.FAILURES):
            converters.beijing_time(value)
        return
    assert converters.beijing_time(value) == expected


def test_code_tables_take_strings_and_numbers_but_not_booleans() -> None:
    convert = converters.code({"1": "active", "2": "suspended"})
    assert convert("1") == convert(1) == convert(" 1 ") == "active"
    for bad in (True, 1.0, None, "3"):
        with pytest.raises(converters.Unreadable):
            convert(bad)


def test_update_time_formats() -> None:
    a = converters.beijing_time("20240102030405")
    b = converters.beijing_time("2024-01-02 03:04:05")
    assert a == b
    assert a.utcoffset() is not None
    assert a.isoformat() == "2024-01-02T03:04:05+08:00"
    assert converters.beijing_time(datetime(2024, 1, 2, 3, 4, 5)) == a  # a driver's naive time
    assert converters.beijing_time("2024-01-01T19:04:05+00:00") == a
    with pytest.raises(converters.FAILURES):
        converters.beijing_time("yesterday")
    with pytest.raises(converters.FAILURES):
        converters.beijing_time(None)


# ---- what the connectors make of an answer ------------------------------------------------


def test_the_answer_must_be_about_the_subject_asked_for() -> None:
    data = household_data()
    record, _ = common.records(evidence("household"), data, HEAD.lower(), {})
    assert record["id_number"] == HEAD
    other = POP.scenarios["household_child"]
    with pytest.raises(DepartmentMalformed, match="different subject") as raised:
        common.records(evidence("household"), data, other, {})
    assert_nothing_personal(raised.value, HEAD, other)
    del data["SFZHM"]
    with pytest.raises(DepartmentMalformed, match="different subject"):
        common.records(evidence("household"), data, HEAD, {})


def test_cardinality_one_wants_an_object_and_many_a_list() -> None:
    with pytest.raises(DepartmentMalformed, match="not an object"):
        common.records(evidence("household"), [household_data()], HEAD, {})
    with pytest.raises(DepartmentMalformed, match="not a list"):
        common.records(evidence("property"), property_row(), HEAD, None)
    assert common.records(evidence("property"), None, HEAD, None)[0] == []
    rows = [property_row(), property_row(BDCQZH="闽(2020)泉港区不动产权第0000001号")]
    records, _ = common.records(evidence("property"), rows, HEAD, None)
    assert [r["certificate_number"] for r in records] == [r["BDCQZH"] for r in rows]


def test_as_of_is_the_latest_row_time() -> None:
    rows = [
        property_row(GXSJ="2024-01-02 03:04:05"),
        property_row(GXSJ="2024-03-01 00:00:00"),
        property_row(GXSJ=None),
    ]
    _, when = common.records(evidence("property"), rows, HEAD, None)
    assert when == datetime(2024, 3, 1, tzinfo=converters.CHINA_TZ)
    with pytest.raises(DepartmentMalformed, match="GXSJ"):
        common.records(evidence("property"), [property_row(GXSJ="yesterday")], HEAD, None)


def test_as_of_falls_back_to_the_envelope_then_to_now() -> None:
    spec = evidence("household").as_of
    data = household_data()
    del data["GXSJ"]
    stamp = 1_735_689_600_000  # 2025-01-01T00:00:00Z
    assert common.as_of(spec, [data], {"timestamp": stamp}, "household") == datetime(
        2025, 1, 1, tzinfo=UTC
    )
    for bad in ("soon", -1, True):
        with pytest.raises(DepartmentMalformed, match="timestamp"):
            common.as_of(spec, [data], {"timestamp": bad}, "household")
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert common.as_of(spec, [data], {}, "household", now=now) == now
    # The row's own time wins over the envelope's.
    _, when = common.records(evidence("household"), household_data(), HEAD, {"timestamp": stamp})
    assert when.replace(tzinfo=None) == POP.people[HEAD].updated_at


@pytest.mark.parametrize(
    ("envelope", "error"),
    [
        ({"code": "0000", "data": {"x": 1}}, None),
        ({"code": "1004", "data": None}, RecordNotFound),
        ({"code": "1005", "data": None}, DepartmentUnavailable),
        ({"data": {}}, DepartmentMalformed),
        ({"code": True, "data": {}}, DepartmentMalformed),
        ({"code": "0000"}, DepartmentMalformed),
        ([], DepartmentMalformed),
    ],
)
def test_envelope_result_codes(envelope: object, error: type[Exception] | None) -> None:
    def read() -> Any:
        return common.result(
            envelope,
            department="household",
            result_field="code",
            success=("0000",),
            not_found=("1004",),
            data="data",
        )

    if error is None:
        assert read() == {"x": 1}
        return
    with pytest.raises(error) as raised:
        read()
    assert type(raised.value) is error


def test_integer_result_codes_compare_as_text() -> None:
    call = evidence("social_security").fetch
    assert isinstance(call, HttpCall)
    assert call.success == ("0",)
    assert call.not_found == ("40401",)
    found = {"code": 0, "data": {"a": 1}}
    assert common.result(
        found, department="s", result_field="code", success=("0",), not_found=(), data="data"
    ) == {"a": 1}
    assert common.dig({"a": {"b": 2}}, "a.b") == 2
    assert common.dig({"a": 1}, "a.b") is common._MISSING  # a marker, never a value
