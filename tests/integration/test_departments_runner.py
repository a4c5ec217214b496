"""Running the three simulators together: configuration, the property admin endpoint,
`serve_forever`, and no leaked tasks or connections after many failed calls."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from pathlib import Path

import aiohttp
import pytest

from adapters.base import DepartmentUnavailable, RecordQuery
from adapters.registry import build_adapters
from adapters.simulators import Faults, run_simulators, serve_forever
from gateway.domain.errors import ConfigError

SECRET = b"c0ffee" * 8


def config(tmp_path: Path, dsn: str) -> tuple[dict[str, object], dict[str, dict[str, object]]]:
    secret_file = tmp_path / "household-app.secret"
    secret_file.write_text(SECRET.decode() + "\n")
    sim_cfg: dict[str, object] = {
        "seed": 7,
        "population": 200,
        "household_listen": "127.0.0.1:0",
        "social_security_listen": "127.0.0.1:0",
        "property_admin_listen": "127.0.0.1:0",
    }
    departments: dict[str, dict[str, object]] = {
        "household": {"app_key": "gw", "app_secret_file": str(secret_file), "pool_size": 4},
        "social_security": {"pool_size": 4},
        "property": {"dsn": dsn, "pool_size": 2},
    }
    return sim_cfg, departments


@pytest.fixture(params=["sqlite", "postgresql"])
def dsn(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/frontdb.sqlite3"
    base = request.getfixturevalue("postgres_dsn")
    return f"{base}?schema=bdc_run_{uuid.uuid4().hex[:10]}"


async def test_configured_gateway_reads_every_simulator(tmp_path: Path, dsn: str) -> None:
    sim_cfg, departments = config(tmp_path, dsn)
    async with run_simulators(sim_cfg, departments) as sims:  # secret read from the file
        departments["household"]["url"] = sims.household_url
        departments["social_security"]["url"] = sims.social_security_url
        departments["property"]["dsn"] = sims.property_dsn
        adapters = build_adapters(departments)
        try:
            query = RecordQuery(sims.population.scenarios["several_properties"])
            deadline = time.monotonic() + 5
            answers = await asyncio.gather(*(a.fetch(query, deadline) for a in adapters.values()))
            assert [a.department for a in answers] == list(adapters)
            assert len(answers[2].record) >= 2

            assert sims.property_admin_url
            async with aiohttp.ClientSession() as session:
                url = sims.property_admin_url + "/_admin/faults"
                async with session.post(url, json={"unavailable": True}) as resp:
                    assert (await resp.json()) == {"unavailable": True, "hang": False}
                with pytest.raises(DepartmentUnavailable):
                    await adapters["property"].fetch(query, time.monotonic() + 5)
                async with session.post(url, json={"unavailable": "yes"}) as resp:
                    assert resp.status == 400
                async with session.delete(url) as resp:
                    assert (await resp.json())["unavailable"] is False
            assert (await adapters["property"].fetch(query, time.monotonic() + 5)).record
        finally:
            for adapter in adapters.values():
                await adapter.close()
    await sims.property.drop()


async def test_missing_secret_is_a_config_error(tmp_path: Path) -> None:
    sim_cfg, departments = config(tmp_path, f"sqlite:///{tmp_path}/f.sqlite3")
    departments["household"]["app_secret_file"] = str(tmp_path / "absent")
    with pytest.raises(ConfigError, match="certs init"):
        async with run_simulators(sim_cfg, departments):
            pass


async def test_busy_port_is_a_config_error(tmp_path: Path) -> None:
    sim_cfg, departments = config(tmp_path, f"sqlite:///{tmp_path}/f.sqlite3")
    async with run_simulators(sim_cfg, departments) as sims:
        taken = dict(sim_cfg, household_listen=sims.household_url.removeprefix("http://"))
        with pytest.raises(ConfigError, match="cannot listen"):
            async with run_simulators(taken, departments):
                pass


async def test_serve_forever_until_cancelled(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sim_cfg, departments = config(tmp_path, f"sqlite:///{tmp_path}/f.sqlite3")
    caplog.set_level(logging.INFO, logger="proofless.simulators")
    task = asyncio.create_task(serve_forever({"simulators": sim_cfg, "departments": departments}))
    for _ in range(500):
        if any("simulators up" in r.getMessage() for r in caplog.records):
            break
        await asyncio.sleep(0.01)
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert any("simulators up" in r.getMessage() for r in caplog.records)


async def test_failed_calls_leak_no_tasks_or_connections(tmp_path: Path) -> None:
    sim_cfg, departments = config(tmp_path, f"sqlite:///{tmp_path}/f.sqlite3")
    async with run_simulators(sim_cfg, departments) as sims:
        departments["household"]["url"] = sims.household_url
        departments["social_security"]["url"] = sims.social_security_url
        adapters = build_adapters({k: departments[k] for k in ("household", "social_security")})
        query = RecordQuery(sims.population.scenarios["long_contributor"])
        try:
            for adapter in adapters.values():
                await adapter.fetch(query, time.monotonic() + 5)  # warm the pool
            baseline = len(asyncio.all_tasks())
            sims.household.injector.set(Faults(error_rate=1.0))
            sims.social_security.injector.set(Faults(reset=True))
            for _ in range(200):
                for adapter in adapters.values():
                    with pytest.raises(DepartmentUnavailable):
                        await adapter.fetch(query, time.monotonic() + 5)
            await asyncio.sleep(0)
            assert len(asyncio.all_tasks()) <= baseline
            for adapter in adapters.values():
                connector = adapter._http.session().connector  # type: ignore[attr-defined]
                assert connector is not None
                open_now = sum(len(c) for c in connector._conns.values())
                assert open_now <= 4
        finally:
            for adapter in adapters.values():
                await adapter.close()
