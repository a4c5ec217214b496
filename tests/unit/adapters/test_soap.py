"""Reading SOAP 1.1 answers (adapters.connectors.soap): the operation's result as plain
values, faults and anything that is not an answer to the operation refused with the typed
department errors, and no personal data in their messages."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from adapters.connectors.soap import locate, read_reply
from adapters.simulators.marriage import NAMESPACE, answer, envelope, fault
from adapters.simulators.population import MarriageRegistration
from gateway.domain.errors import DepartmentMalformed, DepartmentUnavailable

RESPONSE = f"{{{NAMESPACE}}}queryHydjxxResponse"
ID = "350505197609260058"


def registration(kind: str = "结婚", day: int = 1) -> MarriageRegistration:
    return MarriageRegistration(
        kind=kind,
        husband_id=ID,
        husband_name="黄华",
        wife_id="350505197803316107",
        wife_name="许美琴",
        registered_on=date(2005, 7, day),
        certificate_number="J350505-2005-145937",
        authority="泉州市泉港区民政局",
        updated_at=datetime(2005, 7, day, 9, 0),
    )


def test_records_are_read_as_plain_values() -> None:
    raw = answer("0000", "成功", [registration(), registration("补发", 2)]).encode()
    got = read_reply(raw, RESPONSE, "marriage")
    assert got["code"] == "0000"
    rows = locate(got, "records.record", many=True)
    assert [r["YWLX"] for r in rows] == ["结婚", "补发"]
    assert rows[0]["NFSFZH"] == ID
    assert rows[0]["DJJG"] == "泉州市泉港区民政局"


def test_one_record_and_no_records_are_lists_for_many() -> None:
    one = read_reply(answer("0000", "成功", [registration()]).encode(), RESPONSE, "marriage")
    assert isinstance(one["records"]["record"], dict)  # XML cannot tell: the catalogue can
    assert len(locate(one, "records.record", many=True)) == 1
    assert locate(one, "records.record", many=False)["YWLX"] == "结婚"
    none = read_reply(answer("0000", "成功", []).encode(), RESPONSE, "marriage")
    assert none["records"] == ""
    assert locate(none, "records.record", many=True) == []
    absent = read_reply(answer("1004", "无婚姻登记记录", None).encode(), RESPONSE, "marriage")
    assert "records" not in absent
    assert locate(absent, "records.record", many=True) is None  # the path itself breaks
    assert locate(absent, "code", many=False) == "1004"


def test_a_fault_is_the_department_failing_without_its_text() -> None:
    raw = fault("Server", f"查询 {ID} 失败").encode()
    with pytest.raises(DepartmentUnavailable, match="SOAP fault") as raised:
        read_reply(raw, RESPONSE, "marriage")
    assert ID not in str(raised.value)
    assert not isinstance(raised.value, DepartmentMalformed)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{}", "not XML"),
        (b"<html><body>502 Bad Gateway</body></html>", "not a SOAP 1.1 envelope"),
        (envelope("").encode(), "no single body element"),
        (envelope("<other xmlns='urn:x'><return/></other>").encode(), "operation's response"),
        (
            envelope(f"<ns:queryHydjxxResponse xmlns:ns='{NAMESPACE}'/>").encode(),
            "no single result",
        ),
        (
            b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "' + ID.encode() + b'">]>'
            b'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">'
            b"<soap:Body><x>&e;</x></soap:Body></soap:Envelope>",
            "DTD",
        ),
        (
            b'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">'
            b"<soap:Body><a>" + b"<b>" * 20 + b"x" + b"</b>" * 20 + b"</a></soap:Body>"
            b"</soap:Envelope>",
            "operation's response",
        ),
    ],
)
def test_anything_else_is_malformed(raw: bytes, reason: str) -> None:
    with pytest.raises(DepartmentMalformed, match=reason) as raised:
        read_reply(raw, RESPONSE, "marriage")
    assert ID not in str(raised.value)


def test_deep_nesting_is_refused() -> None:
    deep = "<a>" * 12 + "x" + "</a>" * 12
    response = f"<ns:queryHydjxxResponse xmlns:ns='{NAMESPACE}'>{deep}</ns:queryHydjxxResponse>"
    raw = envelope(response)
    with pytest.raises(DepartmentMalformed, match="nested too deeply"):
        read_reply(raw.encode(), RESPONSE, "marriage")


def test_external_entities_are_never_resolved(tmp_path: object) -> None:
    raw = (
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/hostname">]>'
        b'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
        b'<ns:queryHydjxxResponse xmlns:ns="' + NAMESPACE.encode() + b'"><return>'
        b"<code>&x;</code></return></ns:queryHydjxxResponse></soap:Body></soap:Envelope>"
    )
    with pytest.raises(DepartmentMalformed, match="DTD"):
        read_reply(raw, RESPONSE, "marriage")
