"""The http_json connector, built from the deployed catalogue, against the real household and
social-security simulators on port 0: found, not found, signing, timeouts, malformed and
failing answers, pages followed."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from adapters.base import (
    DepartmentMalformed,
    DepartmentTimeout,
    DepartmentUnavailable,
    RecordNotFound,
    RecordQuery,
)
from adapters.connectors import build_connector
from adapters.connectors.http_json import HttpJsonConnector
from adapters.simulators import Faults, Simulators, run_simulators
from adapters.simulators import social_security as ss_sim
from adapters.simulators.faults import FaultInjector
from adapters.simulators.from_catalogue import simulator_departments
from gateway.catalogue import Catalogue
from gateway.config import merge_tables
from gateway.devtools.recipe import endpoints
from tests.support.rules import catalogue_with

SECRET = "9f2c" * 16


def deployment(tmp_path: Path, **extra: dict[str, Any]) -> dict[str, Any]:
    """This test's [departments]: its own app secret and front-end database, small pools."""
    secret = tmp_path / "household-app.secret"
    if not secret.exists():
        secret.write_text(SECRET + "\n")
    base: dict[str, Any] = {
        "household": {"auth": {"secret_file": str(secret)}, "pool_size": 4},
        "social_security": {"pool_size": 4},
        "property": {"endpoint": f"sqlite:///{tmp_path}/frontdb.sqlite3"},
    }
    return merge_tables(base, extra)


@pytest.fixture
async def sims(tmp_path: Path) -> AsyncIterator[Simulators]:
    sim_cfg = {
        "seed": 20261121,
        "population": 400,
        "household_listen": "127.0.0.1:0",
        "social_security_listen": "127.0.0.1:0",
    }
    # The simulators learn the AppKey and secret from the same catalogue as the connectors.
    departments = simulator_departments(catalogue_with(deployment(tmp_path)))
    async with run_simulators(sim_cfg, departments) as running:
        yield running


def pointed(sims: Simulators, tmp_path: Path, **extra: dict[str, Any]) -> Catalogue:
    """The deployed catalogue pointed at the running simulators."""
    return catalogue_with(merge_tables(deployment(tmp_path, **extra), endpoints(sims)))


def connector(catalogue: Catalogue, code: str) -> HttpJsonConnector:
    built = build_connector(catalogue.departments[code], catalogue)
    assert isinstance(built, HttpJsonConnector)
    return built


@pytest.fixture
async def household(sims: Simulators, tmp_path: Path) -> AsyncIterator[HttpJsonConnector]:
    built = connector(pointed(sims, tmp_path), "household")
    yield built
    await built.close()


@pytest.fixture
async def social(sims: Simulators, tmp_path: Path) -> AsyncIterator[HttpJsonConnector]:
    built = connector(pointed(sims, tmp_path), "social_security")
    yield built
    await built.close()


def soon(seconds: float = 5.0) -> float:
    return time.monotonic() + seconds


def q(sims: Simulators, scenario: str, evidence: str) -> RecordQuery:
    return RecordQuery(sims.population.scenarios[scenario], request_id="req-1", evidence=evidence)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- household ---------------------------------------------------------------------------


async def test_household_found(sims: Simulators, household: HttpJsonConnector) -> None:
    fetched = await household.fetch(q(sims, "household_head", "household"), soon())
    person = sims.population.people[sims.population.scenarios["household_head"]]
    assert fetched.department == "household"
    assert fetched.evidence == "household"
    assert fetched.record["name"] == person.name
    assert fetched.record["id_number"] == person.id_number
    assert fetched.record["relation_to_head"] == "head"
    assert fetched.record["household_number"] == person.household_number
    assert fetched.as_of.utcoffset() is not None
    assert fetched.as_of.replace(tzinfo=None) == person.updated_at
    names = {m["name"] for m in fetched.record["members"]}
    child = sims.population.people[sims.population.scenarios["household_child"]]
    assert child.name in names
    assert await household.health()


async def test_household_statuses(sims: Simulators, household: HttpJsonConnector) -> None:
    moved = await household.fetch(q(sims, "moved_out", "household"), soon())
    dead = await household.fetch(q(sims, "deceased", "household"), soon())
    assert moved.record["status"] == "moved_out"
    assert dead.record["status"] == "deceased"
    assert dead.record["relation_to_head"] == "parent"


async def test_household_not_found(sims: Simulators, household: HttpJsonConnector) -> None:
    query = q(sims, "unknown", "household")
    with pytest.raises(RecordNotFound) as raised:
        await household.fetch(query, soon())
    assert query.subject not in str(raised.value)


async def test_household_wrong_secret_is_unavailable(sims: Simulators, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.secret"
    wrong.write_text("wrong\n")
    catalogue = pointed(sims, tmp_path, household={"auth": {"secret_file": str(wrong)}})
    refused = connector(catalogue, "household")
    try:
        with pytest.raises(DepartmentUnavailable, match="credentials") as raised:
            await refused.fetch(q(sims, "household_head", "household"), soon())
        assert "wrong" not in str(raised.value)
    finally:
        await refused.close()


async def test_household_wrong_app_key_is_unavailable(sims: Simulators, tmp_path: Path) -> None:
    catalogue = pointed(sims, tmp_path, household={"auth": {"app_key": "someone-else"}})
    refused = connector(catalogue, "household")
    try:
        with pytest.raises(DepartmentUnavailable, match="credentials"):
            await refused.fetch(q(sims, "household_head", "household"), soon())
    finally:
        await refused.close()


async def test_every_request_is_signed_afresh(
    sims: Simulators, household: HttpJsonConnector
) -> None:
    # The registry refuses a replayed nonce: many calls for one person all pass.
    seen = len(sims.household.verifier)
    for _ in range(5):
        await household.fetch(q(sims, "household_head", "household"), soon())
    assert len(sims.household.verifier) == seen + 5


async def test_many_concurrent_fetches_share_a_small_pool(
    sims: Simulators, household: HttpJsonConnector
) -> None:
    ids = list(sims.population.people)[:60]
    results = await asyncio.gather(
        *(household.fetch(RecordQuery(i, evidence="household"), soon(20)) for i in ids)
    )
    assert [r.record["id_number"] for r in results] == ids
    connector_ = household._http.session().connector
    assert connector_ is not None
    assert connector_.limit == 4


# ---- social security ---------------------------------------------------------------------


async def test_social_security_follows_every_page(
    sims: Simulators, social: HttpJsonConnector
) -> None:
    query = q(sims, "long_contributor", "social_security")
    account = sims.population.social_security[query.subject]
    assert len(account.months()) > ss_sim.DEFAULT_PAGE_SIZE * 5
    fetched = await social.fetch(query, soon())
    record = fetched.record
    assert fetched.department == "social_security"
    assert len(record["history"]) == len(account.contributions())
    months = [c["month"] for c in record["history"]]
    assert months == sorted(months)
    pension = next(i for i in record["insurances"] if i["type"] == "pension")
    assert pension["total_months"] >= 180
    assert pension["total_months"] == sum(1 for c in record["history"] if c["type"] == "pension")
    assert fetched.as_of.utcoffset() is not None
    assert fetched.as_of.replace(tzinfo=None) == account.updated_at
    assert await social.health()


def paged(catalogue: Catalogue, **pages: int) -> HttpJsonConnector:
    """The social-security connector with the history's paging changed (page_size, …)."""
    evidence = catalogue.evidence["social_security"]
    call = evidence.fetch
    assert call.pages is not None  # type: ignore[union-attr]
    call = dataclasses.replace(call, pages=dataclasses.replace(call.pages, **pages))  # type: ignore[arg-type,union-attr]
    changed = dataclasses.replace(evidence, fetch=call)
    return HttpJsonConnector(catalogue.departments["social_security"], {changed.code: changed})


@pytest.mark.parametrize("page_size", [1, 7, 120, 500])
async def test_page_size_does_not_change_the_record(
    sims: Simulators, social: HttpJsonConnector, tmp_path: Path, page_size: int
) -> None:
    query = q(sims, "broken_contributions", "social_security")
    small = paged(pointed(sims, tmp_path), page_size=page_size)
    try:
        a = await small.fetch(query, soon(20))
        b = await social.fetch(query, soon())
    finally:
        await small.close()
    assert a.record == b.record
    months = sorted({c["month"] for c in a.record["history"]})
    as_index = [int(m[:4]) * 12 + int(m[5:]) for m in months]
    assert any(y - x > 1 for x, y in itertools.pairwise(as_index)), "the gap"


async def test_more_pages_than_allowed_is_malformed(sims: Simulators, tmp_path: Path) -> None:
    capped = paged(pointed(sims, tmp_path), max_pages=3)
    try:
        with pytest.raises(DepartmentMalformed, match="paging"):
            await capped.fetch(q(sims, "long_contributor", "social_security"), soon())
    finally:
        await capped.close()


async def test_social_security_not_found(sims: Simulators, social: HttpJsonConnector) -> None:
    for scenario in ("household_only", "unknown"):
        with pytest.raises(RecordNotFound):
            await social.fetch(q(sims, scenario, "social_security"), soon())


async def test_pages_that_do_not_add_up_are_malformed(
    sims: Simulators, social: HttpJsonConnector, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = ss_sim.history_page

    def short_last_page(account: object, page: int, size: int) -> dict[str, object]:
        answer = real(account, page, size)  # type: ignore[arg-type]
        if page == answer["pages"]:
            answer["list"] = []
        return answer

    monkeypatch.setattr(ss_sim, "history_page", short_last_page)
    with pytest.raises(DepartmentMalformed, match="add up"):
        await social.fetch(q(sims, "long_contributor", "social_security"), soon())


async def test_a_page_without_its_list_is_malformed(
    sims: Simulators, social: HttpJsonConnector, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = ss_sim.history_page

    def listless(account: object, page: int, size: int) -> dict[str, object]:
        answer = real(account, page, size)  # type: ignore[arg-type]
        if page == 2:
            del answer["list"]
        return answer

    monkeypatch.setattr(ss_sim, "history_page", listless)
    with pytest.raises(DepartmentMalformed, match="list"):
        await social.fetch(q(sims, "long_contributor", "social_security"), soon())


# ---- faults, both HTTP departments --------------------------------------------------------

Department = tuple[HttpJsonConnector, FaultInjector, str, str]


@pytest.fixture(params=["household", "social_security"])
def department(
    request: pytest.FixtureRequest,
    sims: Simulators,
    household: HttpJsonConnector,
    social: HttpJsonConnector,
) -> Department:
    """(connector, the simulator's fault injector, its URL, the evidence code)"""
    if request.param == "household":
        return household, sims.household.injector, sims.household_url, "household"
    return social, sims.social_security.injector, sims.social_security_url, "social_security"


async def test_latency_beyond_the_deadline_times_out(
    sims: Simulators, department: Department
) -> None:
    connector_, injector, _, evidence = department
    injector.set(Faults(latency_ms=2000))
    started = time.monotonic()
    with pytest.raises(DepartmentTimeout):
        await connector_.fetch(q(sims, "long_contributor", evidence), soon(0.2))
    assert time.monotonic() - started < 1.5


async def test_hang_is_bounded_by_the_department_ceiling(
    sims: Simulators, department: Department, tmp_path: Path
) -> None:
    _, injector, _, evidence = department
    # The configured ceiling (timeout_ms), shorter than the caller's deadline.
    catalogue = pointed(sims, tmp_path, **{evidence: {"timeout_ms": 300}})
    bounded = connector(catalogue, evidence)
    try:
        injector.set(Faults(hang=True))
        started = time.monotonic()
        with pytest.raises(DepartmentTimeout):
            await bounded.fetch(q(sims, "long_contributor", evidence), soon(30))
        assert time.monotonic() - started < 2
        assert not await bounded.health()
        injector.clear()
        assert await bounded.health()
        fetched = await bounded.fetch(q(sims, "long_contributor", evidence), soon())
        assert fetched.record["name"]
    finally:
        await bounded.close()


async def test_deadline_already_passed(sims: Simulators, department: Department) -> None:
    connector_, _, _, evidence = department
    with pytest.raises(DepartmentTimeout):
        await connector_.fetch(q(sims, "long_contributor", evidence), time.monotonic() - 1)


@pytest.mark.parametrize(
    ("faults", "error"),
    [
        (Faults(malformed=True), DepartmentMalformed),
        (Faults(error_rate=1.0), DepartmentUnavailable),
        (Faults(error_rate=1.0, error_status=500), DepartmentUnavailable),
        (Faults(error_rate=1.0, error_status=429), DepartmentUnavailable),
        (Faults(error_rate=1.0, error_status=404), DepartmentUnavailable),
        (Faults(truncate=True), DepartmentUnavailable),
        (Faults(reset=True), DepartmentUnavailable),
    ],
)
async def test_failures_become_typed_errors(
    sims: Simulators, department: Department, faults: Faults, error: type
) -> None:
    connector_, injector, _, evidence = department
    query = q(sims, "long_contributor", evidence)
    injector.set(faults)
    with pytest.raises(error) as raised:
        await connector_.fetch(query, soon())
    assert not isinstance(raised.value, RecordNotFound)
    assert query.subject not in str(raised.value)
    assert raised.value.__cause__ is None or query.subject not in str(raised.value.__cause__)
    injector.clear()
    assert (await connector_.fetch(query, soon())).record["id_number"] == query.subject


async def test_malformed_is_still_unavailable_to_callers(
    sims: Simulators, department: Department
) -> None:
    connector_, injector, _, evidence = department
    injector.set(Faults(malformed=True))
    with pytest.raises(DepartmentUnavailable):  # DepartmentMalformed is a DepartmentUnavailable
        await connector_.fetch(q(sims, "long_contributor", evidence), soon())


async def test_admin_endpoint_switches_faults_at_runtime(
    sims: Simulators, department: Department
) -> None:
    connector_, _, url, evidence = department
    async with aiohttp.ClientSession() as session:
        async with session.post(url + "/_admin/faults", json={"error_rate": 1.0}) as resp:
            assert resp.status == 200
        with pytest.raises(DepartmentUnavailable):
            await connector_.fetch(q(sims, "long_contributor", evidence), soon())
        async with session.delete(url + "/_admin/faults") as resp:
            assert resp.status == 200
    assert (await connector_.fetch(q(sims, "long_contributor", evidence), soon())).record["name"]


async def test_nothing_listening_is_unavailable(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    catalogue = catalogue_with(
        deployment(tmp_path, household={"endpoint": url}, social_security={"endpoint": url})
    )
    for code in ("household", "social_security"):
        nowhere = connector(catalogue, code)
        try:
            with pytest.raises(DepartmentUnavailable, match="connection failed"):
                await nowhere.fetch(RecordQuery("11010519491231002X", evidence=code), soon())
            assert not await nowhere.health()
        finally:
            await nowhere.close()


async def test_closed_connector_refuses(sims: Simulators, tmp_path: Path) -> None:
    closing = connector(pointed(sims, tmp_path), "social_security")
    await closing.fetch(q(sims, "long_contributor", "social_security"), soon())
    await closing.close()
    with pytest.raises(DepartmentUnavailable, match="closed"):
        await closing.fetch(q(sims, "long_contributor", "social_security"), soon())
