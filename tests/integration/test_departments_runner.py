"""Running the three simulators together as the catalogue describes them (the recipe the demo,
tests and benchmarks share): connectors built from the catalogue reach every simulator, the
property admin endpoint, `serve_forever`, and no leaked tasks or connections after many
failed calls."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from adapters.base import DepartmentUnavailable, RecordQuery
from adapters.connectors import build_connector, build_connectors
from adapters.connectors.http_json import HttpJsonConnector
from adapters.simulators import Faults, run_simulators, serve_forever
from adapters.simulators.from_catalogue import simulator_departments
from gateway.devtools.recipe import simulated
from gateway.domain.errors import ConfigError
from tests.support.rules import CATALOGUE_DIR, catalogue_with

SECRET = "c0ffee" * 8
SIMULATORS: dict[str, object] = {
    "seed": 7,
    "population": 200,
    "household_listen": "127.0.0.1:0",
    "social_security_listen": "127.0.0.1:0",
    "property_admin_listen": "127.0.0.1:0",
}


def departments(tmp_path: Path, dsn: str, schema: str | None = None) -> dict[str, Any]:
    """This deployment's [departments]: its app secret file, front-end database, pool sizes."""
    secret_file = tmp_path / "household-app.secret"
    secret_file.write_text(SECRET + "\n")
    property_: dict[str, Any] = {"endpoint": dsn, "pool_size": 2}
    if schema:
        property_["settings"] = {"schema": schema}
    return {
        "household": {"auth": {"app_key": "gw", "secret_file": str(secret_file)}, "pool_size": 4},
        "social_security": {"pool_size": 4},
        "property": property_,
    }


def raw_config(tmp_path: Path, dsn: str, schema: str | None = None) -> dict[str, Any]:
    return {
        "catalogue": {"dir": str(CATALOGUE_DIR)},
        "departments": departments(tmp_path, dsn, schema),
        "simulators": dict(SIMULATORS),
    }


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str | None]:
    """(DSN, schema) of the front-end database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/frontdb.sqlite3", None
    base = request.getfixturevalue("postgres_dsn")
    return base, f"bdc_run_{uuid.uuid4().hex[:10]}"


async def test_configured_gateway_reads_every_simulator(
    tmp_path: Path, location: tuple[str, str | None]
) -> None:
    dsn, schema = location
    async with simulated(raw_config(tmp_path, dsn, schema)) as (sims, pointed):
        if schema:
            assert sims.property.location.schema == schema
        catalogue = catalogue_with(pointed["departments"])
        connectors = build_connectors(catalogue)
        try:
            subject = sims.population.scenarios["several_properties"]
            deadline = time.monotonic() + 5
            calls = {
                e.code: connectors[e.department].fetch(
                    RecordQuery(subject, evidence=e.code), deadline
                )
                for e in catalogue.evidence.values()
                if e.department in ("household", "social_security", "property")
            }
            answers = dict(zip(calls, await asyncio.gather(*calls.values()), strict=True))
            assert {a.department for a in answers.values()} == set(answers)
            assert answers["household"].record["id_number"] == subject
            assert answers["social_security"].record["id_number"] == subject
            assert len(answers["property"].record) >= 2
            for connector in connectors.values():
                assert await connector.health()

            assert sims.property_admin_url
            query = RecordQuery(subject, evidence="property")
            async with aiohttp.ClientSession() as session:
                url = sims.property_admin_url + "/_admin/faults"
                async with session.post(url, json={"unavailable": True}) as resp:
                    assert (await resp.json()) == {"unavailable": True, "hang": False}
                with pytest.raises(DepartmentUnavailable):
                    await connectors["property"].fetch(query, time.monotonic() + 5)
                assert not await connectors["property"].health()
                async with session.post(url, json={"unavailable": "yes"}) as resp:
                    assert resp.status == 400
                async with session.get(url) as resp:
                    assert (await resp.json())["unavailable"] is True
                async with session.delete(url) as resp:
                    assert (await resp.json())["unavailable"] is False
            assert (await connectors["property"].fetch(query, time.monotonic() + 5)).record
        finally:
            for connector in connectors.values():
                await connector.close()
    await sims.property.drop()


async def test_missing_secret_is_a_config_error(tmp_path: Path) -> None:
    raw = raw_config(tmp_path, f"sqlite:///{tmp_path}/f.sqlite3")
    raw["departments"]["household"]["auth"]["secret_file"] = str(tmp_path / "absent")
    with pytest.raises(ConfigError, match="certs init"):
        async with run_simulators(
            SIMULATORS, simulator_departments(catalogue_with(raw["departments"]))
        ):
            pass
    with pytest.raises(ConfigError, match="app secret cannot be read"):
        async with simulated(raw):
            pass


async def test_busy_port_is_a_config_error(tmp_path: Path) -> None:
    raw = raw_config(tmp_path, f"sqlite:///{tmp_path}/f.sqlite3")
    async with simulated(raw) as (sims, _):
        taken = dict(
            raw,
            simulators={
                **SIMULATORS,
                "household_listen": sims.household_url.removeprefix("http://"),
            },
        )
        with pytest.raises(ConfigError, match="cannot listen"):
            async with simulated(taken):
                pass


async def test_serve_forever_until_cancelled(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    deployed = catalogue_with(departments(tmp_path, f"sqlite:///{tmp_path}/f.sqlite3"))
    caplog.set_level(logging.INFO, logger="proofless.simulators")
    # What `proofless simulators` runs: the departments as the catalogue declares them.
    config = {"simulators": SIMULATORS, "departments": simulator_departments(deployed)}
    task = asyncio.create_task(serve_forever(config))
    for _ in range(500):
        if any("simulators up" in r.getMessage() for r in caplog.records):
            break
        await asyncio.sleep(0.01)
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert any("simulators up" in r.getMessage() for r in caplog.records)
    assert (tmp_path / "f.sqlite3").exists()  # the front-end database the catalogue names


async def test_failed_calls_leak_no_tasks_or_connections(tmp_path: Path) -> None:
    raw = raw_config(tmp_path, f"sqlite:///{tmp_path}/f.sqlite3")
    async with simulated(raw) as (sims, pointed):
        catalogue = catalogue_with(pointed["departments"])
        connectors = {
            code: build_connector(catalogue.departments[code], catalogue)
            for code in ("household", "social_security")
        }
        subject = sims.population.scenarios["long_contributor"]
        try:
            for code, connector in connectors.items():  # warm the pool
                await connector.fetch(RecordQuery(subject, evidence=code), time.monotonic() + 5)
            baseline = len(asyncio.all_tasks())
            sims.household.injector.set(Faults(error_rate=1.0))
            sims.social_security.injector.set(Faults(reset=True))
            for _ in range(200):
                for code, connector in connectors.items():
                    with pytest.raises(DepartmentUnavailable):
                        await connector.fetch(
                            RecordQuery(subject, evidence=code), time.monotonic() + 5
                        )
            await asyncio.sleep(0)
            assert len(asyncio.all_tasks()) <= baseline
            for connector in connectors.values():
                assert isinstance(connector, HttpJsonConnector)
                pool = connector._http.session().connector
                assert pool is not None
                open_now = sum(len(c) for c in pool._conns.values())
                assert open_now <= 4
        finally:
            for connector in connectors.values():
                await connector.close()
