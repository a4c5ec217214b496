"""The sql connector, built from the deployed catalogue (property.toml), on SQLite and on
PostgreSQL, against the simulator's tables and view: the same SQL text, the same answers, the
same failures.

Every PostgreSQL test fills and drops a schema of its own, so tests run in any order."""

from __future__ import annotations

import dataclasses
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from adapters.base import (
    DepartmentMalformed,
    DepartmentTimeout,
    DepartmentUnavailable,
    RecordNotFound,
    RecordQuery,
)
from adapters.connectors import build_connector
from adapters.connectors.sql import SqlConnector
from adapters.simulators import datagen
from adapters.simulators.property_db import PropertyFrontDb
from gateway.catalogue.converters import CHINA_TZ
from tests.support.rules import catalogue_with

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


def sql_connector(dsn: str, schema: str | None = None, **settings: Any) -> SqlConnector:
    """The property department of the deployed catalogue, reading `dsn`. The catalogue's
    `settings.schema` wins over a DSN's `?schema=`, so a test schema is given there too."""
    over: dict[str, Any] = {"endpoint": dsn, **settings}
    if schema:
        over["settings"] = {"schema": schema}
    catalogue = catalogue_with({"property": over})
    built = build_connector(catalogue.departments["property"], catalogue)
    assert isinstance(built, SqlConnector)
    return built


@pytest.fixture
async def connector(frontdb: PropertyFrontDb) -> AsyncIterator[SqlConnector]:
    built = sql_connector(frontdb.dsn, frontdb.location.schema, timeout_ms=2000, pool_size=3)
    assert built.location == frontdb.location
    try:
        yield built
    finally:
        await built.close()


def soon(seconds: float = 5.0) -> float:
    return time.monotonic() + seconds


def query(scenario: str) -> RecordQuery:
    return RecordQuery(S[scenario], request_id="req-1", evidence="property")


async def fetch(connector: SqlConnector, scenario: str, seconds: float = 5.0) -> list[Any]:
    records: list[Any] = (await connector.fetch(query(scenario), soon(seconds))).record
    return records


async def test_several_properties_only_current_rights(connector: SqlConnector) -> None:
    fetched = await connector.fetch(query("several_properties"), soon())
    assert fetched.department == fetched.evidence == "property"
    expected = POP.properties_of(S["several_properties"])
    assert len(expected) >= 2
    assert sorted(r["certificate_number"] for r in fetched.record) == sorted(
        p.certificate_number for p in expected
    )
    ended = {
        p.certificate_number for p in POP.properties_of(S["several_properties"], include_ended=True)
    }
    assert ended - {r["certificate_number"] for r in fetched.record}, "the sold flat stays hidden"
    by_cert = {p.certificate_number: p for p in expected}
    for record in fetched.record:
        source = by_cert[record["certificate_number"]]
        assert record["area_square_meters"] == pytest.approx(float(source.area))
        assert record["region_code"] == source.region_code
        assert record["registration_date"] == source.registered_at.date().isoformat()
        assert record["location"] == source.location
        assert 0 < record["share"] <= 1
    # ORDER BY DJSJ: oldest registration first.
    dates = [r["registration_date"] for r in fetched.record]
    assert dates == sorted(dates)
    shared = [r for r in fetched.record if r["co_ownership"] == "shared"]
    assert [r["share"] for r in shared] == [pytest.approx(0.6)]
    newest = max(p.updated_at for p in expected).replace(tzinfo=CHINA_TZ)
    assert fetched.as_of == newest


async def test_no_property_is_an_empty_list(connector: SqlConnector) -> None:
    assert await fetch(connector, "no_property") == []
    assert await fetch(connector, "unknown") == []


async def test_encumbrances(connector: SqlConnector) -> None:
    mortgaged = await fetch(connector, "mortgaged_property")
    assert any(r["mortgaged"] for r in mortgaged)
    assert not any(r["seized"] for r in mortgaged)
    assert [r["share"] for r in mortgaged] == [pytest.approx(0.5)]
    seized = await fetch(connector, "seized_property")
    assert any(r["seized"] for r in seized)


async def test_cardinality_one_is_one_row(frontdb: PropertyFrontDb) -> None:
    # The same query declared as one record per subject: none is "not found", several broken.
    catalogue = catalogue_with(
        {"property": {"endpoint": frontdb.dsn, "settings": {"schema": frontdb.location.schema}}}
    )
    evidence = dataclasses.replace(catalogue.evidence["property"], cardinality="one")
    one = SqlConnector(catalogue.departments["property"], {"property": evidence})
    try:
        fetched = await one.fetch(query("mortgaged_property"), soon())
        assert isinstance(fetched.record, dict)
        assert fetched.record["mortgaged"]
        with pytest.raises(RecordNotFound):
            await one.fetch(query("no_property"), soon())
        with pytest.raises(DepartmentMalformed, match="more than one row"):
            await one.fetch(query("several_properties"), soon())
    finally:
        await one.close()


async def test_health(connector: SqlConnector, frontdb: PropertyFrontDb) -> None:
    assert await connector.health()
    await frontdb.set_faults(unavailable=True)
    assert not await connector.health()
    await frontdb.clear_faults()
    assert await connector.health()


async def test_unavailable_and_back(connector: SqlConnector, frontdb: PropertyFrontDb) -> None:
    assert await fetch(connector, "several_properties")
    await frontdb.set_faults(unavailable=True)
    with pytest.raises(DepartmentUnavailable) as raised:
        await fetch(connector, "several_properties")
    assert S["several_properties"] not in str(raised.value)
    assert raised.value.__cause__ is None
    await frontdb.clear_faults()
    assert await fetch(connector, "several_properties")


async def test_locked_database_times_out(connector: SqlConnector, frontdb: PropertyFrontDb) -> None:
    await frontdb.set_faults(hang=True)
    started = time.monotonic()
    with pytest.raises(DepartmentTimeout):
        await fetch(connector, "several_properties", seconds=0.3)
    assert time.monotonic() - started < 1.5
    await frontdb.clear_faults()
    assert await fetch(connector, "several_properties")


async def test_malformed_rows(connector: SqlConnector, frontdb: PropertyFrontDb) -> None:
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
    with pytest.raises(DepartmentMalformed, match="YT") as raised:
        await fetch(connector, "several_properties")
    assert "宅基地" not in str(raised.value)
    assert await fetch(connector, "no_property") == []


async def test_deadline_already_passed(connector: SqlConnector) -> None:
    with pytest.raises(DepartmentTimeout):
        await connector.fetch(query("several_properties"), time.monotonic() - 0.1)


async def test_connector_cannot_write(connector: SqlConnector, frontdb: PropertyFrontDb) -> None:
    # Read-only by construction: a write through the connector's reader fails.
    with pytest.raises(DepartmentUnavailable):
        await connector._query("DELETE FROM BDC_FW", ())
    assert await fetch(connector, "several_properties")


async def test_missing_sqlite_file_is_unavailable(tmp_path: Path) -> None:
    connector = sql_connector(f"sqlite:///{tmp_path}/absent.sqlite3")
    try:
        with pytest.raises(DepartmentUnavailable):
            await connector.fetch(query("several_properties"), soon())
        assert not await connector.health()
    finally:
        await connector.close()


async def test_unreachable_postgres_is_unavailable() -> None:
    connector = sql_connector("postgresql://postgres@127.0.0.1:1/test", timeout_ms=2000)
    try:
        with pytest.raises(DepartmentUnavailable):
            await connector.fetch(query("several_properties"), soon())
        assert not await connector.health()
    finally:
        await connector.close()


async def test_replaced_sqlite_file_is_picked_up(tmp_path: Path) -> None:
    dsn = f"sqlite:///{tmp_path}/frontdb.sqlite3"
    first = PropertyFrontDb(datagen.generate(1, 50), dsn)
    await first.fill()
    connector = sql_connector(dsn, pool_size=1)
    try:
        assert (await connector.fetch(query("several_properties"), soon())).record == []
        await PropertyFrontDb(POP, dsn).fill()  # the department republishes the database
        assert len((await connector.fetch(query("several_properties"), soon())).record) >= 2
    finally:
        await connector.close()
