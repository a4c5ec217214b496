"""The real-estate front-end database adapter on SQLite and on PostgreSQL, against the
simulator's tables and view: the same SQL text, the same answers, the same failures.

Every PostgreSQL test fills and drops a schema of its own, so tests run in any order."""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from adapters.base import (
    DepartmentMalformed,
    DepartmentTimeout,
    DepartmentUnavailable,
    RecordQuery,
)
from adapters.mapping import CHINA_TZ
from adapters.property import PropertyAdapter
from adapters.simulators import datagen
from adapters.simulators.property_db import PropertyFrontDb
from proofless.v1 import verification_pb2 as pb

POP = datagen.generate(20261121, 400)
S = POP.scenarios


@pytest.fixture(params=["sqlite", "postgresql"])
async def frontdb(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[PropertyFrontDb]:
    if request.param == "sqlite":
        dsn = f"sqlite:///{tmp_path}/frontdb.sqlite3"
    else:
        base = request.getfixturevalue("postgres_dsn")
        dsn = f"{base}?schema=bdc_test_{uuid.uuid4().hex[:10]}"
    db = PropertyFrontDb(POP, dsn)
    await db.fill()
    try:
        yield db
    finally:
        await db.drop()


@pytest.fixture
async def adapter(frontdb: PropertyFrontDb) -> AsyncIterator[PropertyAdapter]:
    adapter = PropertyAdapter(frontdb.dsn, timeout_ms=2000, pool_size=3)
    try:
        yield adapter
    finally:
        await adapter.close()


def soon(seconds: float = 5.0) -> float:
    return time.monotonic() + seconds


async def fetch(
    adapter: PropertyAdapter, scenario: str, seconds: float = 5.0
) -> list[pb.PropertyRecord]:
    return (await adapter.fetch(RecordQuery(S[scenario]), soon(seconds))).record


async def test_several_properties_only_current_rights(adapter: PropertyAdapter) -> None:
    fetched = await adapter.fetch(RecordQuery(S["several_properties"]), soon())
    expected = POP.properties_of(S["several_properties"])
    assert len(expected) >= 2
    assert sorted(r.certificate_number for r in fetched.record) == sorted(
        p.certificate_number for p in expected
    )
    ended = {
        p.certificate_number for p in POP.properties_of(S["several_properties"], include_ended=True)
    }
    assert ended - {r.certificate_number for r in fetched.record}, "the sold flat stays hidden"
    by_cert = {p.certificate_number: p for p in expected}
    for record in fetched.record:
        source = by_cert[record.certificate_number]
        assert record.area_square_meters == pytest.approx(float(source.area))
        assert record.region_code == source.region_code
        assert record.registration_date == source.registered_at.date().isoformat()
        assert 0 < record.share <= 1
    shared = [r for r in fetched.record if r.co_ownership == pb.CO_OWNERSHIP_SHARED]
    assert [r.share for r in shared] == [pytest.approx(0.6)]
    newest = max(p.updated_at for p in expected).replace(tzinfo=CHINA_TZ)
    assert fetched.as_of == newest


async def test_no_property_is_an_empty_list(adapter: PropertyAdapter) -> None:
    assert await fetch(adapter, "no_property") == []
    assert await fetch(adapter, "unknown") == []


async def test_encumbrances(adapter: PropertyAdapter) -> None:
    mortgaged = await fetch(adapter, "mortgaged_property")
    assert any(r.mortgaged for r in mortgaged)
    assert not any(r.seized for r in mortgaged)
    assert [r.share for r in mortgaged] == [pytest.approx(0.5)]
    seized = await fetch(adapter, "seized_property")
    assert any(r.seized for r in seized)


async def test_health(adapter: PropertyAdapter, frontdb: PropertyFrontDb) -> None:
    assert await adapter.health()
    await frontdb.set_faults(unavailable=True)
    assert not await adapter.health()


async def test_unavailable_and_back(adapter: PropertyAdapter, frontdb: PropertyFrontDb) -> None:
    assert await fetch(adapter, "several_properties")
    await frontdb.set_faults(unavailable=True)
    with pytest.raises(DepartmentUnavailable) as raised:
        await fetch(adapter, "several_properties")
    assert S["several_properties"] not in str(raised.value)
    assert raised.value.__cause__ is None
    await frontdb.clear_faults()
    assert await fetch(adapter, "several_properties")


async def test_locked_database_times_out(
    adapter: PropertyAdapter, frontdb: PropertyFrontDb
) -> None:
    await frontdb.set_faults(hang=True)
    with pytest.raises(DepartmentTimeout):
        await fetch(adapter, "several_properties", seconds=0.3)
    await frontdb.clear_faults()
    assert await fetch(adapter, "several_properties")


async def test_malformed_rows(adapter: PropertyAdapter, frontdb: PropertyFrontDb) -> None:
    sql = "UPDATE BDC_FW SET YT = '宅基地'"
    if frontdb.location.backend == "sqlite":
        with sqlite3.connect(frontdb.location.target) as conn:
            conn.execute(sql)
        conn.close()
    else:
        conn = await asyncpg.connect(frontdb.location.target)
        try:
            await conn.execute(f"SET search_path TO {frontdb.location.schema}")
            await conn.execute(sql)
        finally:
            await conn.close()
    with pytest.raises(DepartmentMalformed, match="YT"):
        await fetch(adapter, "several_properties")
    assert await fetch(adapter, "no_property") == []


async def test_deadline_already_passed(adapter: PropertyAdapter) -> None:
    with pytest.raises(DepartmentTimeout):
        await adapter.fetch(RecordQuery(S["several_properties"]), time.monotonic() - 0.1)


async def test_adapter_cannot_write(adapter: PropertyAdapter, frontdb: PropertyFrontDb) -> None:
    # Read-only by construction: a write through the adapter's reader fails.
    with pytest.raises(DepartmentUnavailable):
        await adapter._query("DELETE FROM BDC_FW", ())
    assert await fetch(adapter, "several_properties")


async def test_missing_sqlite_file_is_unavailable(tmp_path: Path) -> None:
    adapter = PropertyAdapter(f"sqlite:///{tmp_path}/absent.sqlite3")
    try:
        with pytest.raises(DepartmentUnavailable):
            await adapter.fetch(RecordQuery(S["several_properties"]), soon())
        assert not await adapter.health()
    finally:
        await adapter.close()


async def test_unreachable_postgres_is_unavailable() -> None:
    adapter = PropertyAdapter("postgresql://postgres@127.0.0.1:1/test", timeout_ms=2000)
    try:
        with pytest.raises(DepartmentUnavailable):
            await adapter.fetch(RecordQuery(S["several_properties"]), soon())
    finally:
        await adapter.close()


async def test_replaced_sqlite_file_is_picked_up(tmp_path: Path) -> None:
    dsn = f"sqlite:///{tmp_path}/frontdb.sqlite3"
    first = PropertyFrontDb(datagen.generate(1, 50), dsn)
    await first.fill()
    adapter = PropertyAdapter(dsn, pool_size=1)
    try:
        other = POP.scenarios["several_properties"]
        assert (await adapter.fetch(RecordQuery(other), soon())).record == []
        await PropertyFrontDb(POP, dsn).fill()  # the department republishes the database
        assert len((await adapter.fetch(RecordQuery(other), soon())).record) >= 2
    finally:
        await adapter.close()
