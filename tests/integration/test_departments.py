"""The HTTP department adapters against the real simulators on port 0: found, not found,
timeouts, malformed and failing answers, pages followed."""

from __future__ import annotations

import asyncio
import itertools
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from adapters.base import (
    DepartmentMalformed,
    DepartmentTimeout,
    DepartmentUnavailable,
    RecordNotFound,
    RecordQuery,
)
from adapters.household import HouseholdAdapter
from adapters.simulators import Faults, Simulators, run_simulators
from adapters.simulators import social_security as ss_sim
from adapters.social_security import SocialSecurityAdapter
from proofless.v1 import verification_pb2 as pb

SECRET = b"9f2c" * 16
APP_KEY = "proofless-gateway"


@pytest.fixture
async def sims(tmp_path: Path) -> AsyncIterator[Simulators]:
    sim_cfg = {
        "seed": 20261121,
        "population": 400,
        "household_listen": "127.0.0.1:0",
        "social_security_listen": "127.0.0.1:0",
    }
    departments = {
        "household": {"app_key": APP_KEY},
        "property": {"dsn": f"sqlite:///{tmp_path}/frontdb.sqlite3"},
    }
    async with run_simulators(sim_cfg, departments, secret=SECRET) as running:
        yield running


@pytest.fixture
async def household(sims: Simulators) -> AsyncIterator[HouseholdAdapter]:
    adapter = HouseholdAdapter(
        sims.household_url, app_key=APP_KEY, secret=SECRET, timeout_ms=2000, pool_size=4
    )
    yield adapter
    await adapter.close()


@pytest.fixture
async def social(sims: Simulators) -> AsyncIterator[SocialSecurityAdapter]:
    adapter = SocialSecurityAdapter(sims.social_security_url, timeout_ms=2000, pool_size=4)
    yield adapter
    await adapter.close()


def soon(seconds: float = 5.0) -> float:
    return time.monotonic() + seconds


def q(sims: Simulators, scenario: str) -> RecordQuery:
    return RecordQuery(sims.population.scenarios[scenario], request_id="req-1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- household ---------------------------------------------------------------------------


async def test_household_found(sims: Simulators, household: HouseholdAdapter) -> None:
    fetched = await household.fetch(q(sims, "household_head"), soon())
    person = sims.population.people[sims.population.scenarios["household_head"]]
    assert fetched.department == "household"
    assert fetched.record.name == person.name
    assert fetched.record.relation_to_head == pb.RELATION_HEAD
    assert fetched.record.household_number == person.household_number
    assert fetched.as_of.utcoffset() is not None
    assert fetched.as_of.replace(tzinfo=None) == person.updated_at
    names = {m.name for m in fetched.record.members}
    child = sims.population.people[sims.population.scenarios["household_child"]]
    assert child.name in names


async def test_household_statuses(sims: Simulators, household: HouseholdAdapter) -> None:
    moved = await household.fetch(q(sims, "moved_out"), soon())
    dead = await household.fetch(q(sims, "deceased"), soon())
    assert moved.record.status == pb.HOUSEHOLD_STATUS_MOVED_OUT
    assert dead.record.status == pb.HOUSEHOLD_STATUS_DECEASED
    assert dead.record.relation_to_head == pb.RELATION_PARENT


async def test_household_not_found(sims: Simulators, household: HouseholdAdapter) -> None:
    query = q(sims, "unknown")
    with pytest.raises(RecordNotFound) as raised:
        await household.fetch(query, soon())
    assert query.id_number not in str(raised.value)


async def test_household_wrong_secret_is_unavailable(sims: Simulators) -> None:
    adapter = HouseholdAdapter(sims.household_url, app_key=APP_KEY, secret=b"wrong")
    try:
        with pytest.raises(DepartmentUnavailable, match="credentials"):
            await adapter.fetch(q(sims, "household_head"), soon())
    finally:
        await adapter.close()


async def test_many_concurrent_fetches_share_a_small_pool(
    sims: Simulators, household: HouseholdAdapter
) -> None:
    ids = list(sims.population.people)[:60]
    results = await asyncio.gather(*(household.fetch(RecordQuery(i), soon(20)) for i in ids))
    assert [r.record.id_number for r in results] == ids


# ---- social security ---------------------------------------------------------------------


async def test_social_security_follows_every_page(
    sims: Simulators, social: SocialSecurityAdapter
) -> None:
    query = q(sims, "long_contributor")
    account = sims.population.social_security[query.id_number]
    assert len(account.months()) > ss_sim.DEFAULT_PAGE_SIZE * 5
    fetched = await social.fetch(query, soon())
    record = fetched.record
    assert len(record.history) == len(account.contributions())
    months = [c.month for c in record.history]
    assert months == sorted(months)
    pension = next(i for i in record.insurances if i.type == pb.INSURANCE_TYPE_PENSION)
    assert pension.total_months >= 180
    assert pension.total_months == sum(
        1 for c in record.history if c.type == pb.INSURANCE_TYPE_PENSION
    )
    assert fetched.as_of.replace(tzinfo=None) == account.updated_at


@pytest.mark.parametrize("page_size", [1, 7, 120, 500])
async def test_page_size_does_not_change_the_record(sims: Simulators, page_size: int) -> None:
    query = q(sims, "broken_contributions")
    small = SocialSecurityAdapter(sims.social_security_url, page_size=page_size)
    default = SocialSecurityAdapter(sims.social_security_url)
    try:
        a = await small.fetch(query, soon(20))
        b = await default.fetch(query, soon())
    finally:
        await small.close()
        await default.close()
    assert a.record == b.record
    months = sorted({c.month for c in a.record.history})
    as_index = [int(m[:4]) * 12 + int(m[5:]) for m in months]
    assert any(y - x > 1 for x, y in itertools.pairwise(as_index)), "the gap"


async def test_social_security_not_found(sims: Simulators, social: SocialSecurityAdapter) -> None:
    for scenario in ("household_only", "unknown"):
        with pytest.raises(RecordNotFound):
            await social.fetch(q(sims, scenario), soon())


async def test_pages_that_do_not_add_up_are_malformed(
    sims: Simulators, social: SocialSecurityAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = ss_sim.history_page

    def short_last_page(account: object, page: int, size: int) -> dict[str, object]:
        answer = real(account, page, size)  # type: ignore[arg-type]
        if page == answer["pages"]:
            answer["list"] = []
        return answer

    monkeypatch.setattr(ss_sim, "history_page", short_last_page)
    with pytest.raises(DepartmentMalformed, match="add up"):
        await social.fetch(q(sims, "long_contributor"), soon())


# ---- faults, both HTTP departments --------------------------------------------------------


@pytest.fixture(params=["household", "social_security"])
def department(
    request: pytest.FixtureRequest,
    sims: Simulators,
    household: HouseholdAdapter,
    social: SocialSecurityAdapter,
) -> tuple[HouseholdAdapter | SocialSecurityAdapter, Simulators, str]:
    if request.param == "household":
        return household, sims, "household"
    return social, sims, "social_security"


def injector(sims: Simulators, name: str):  # type: ignore[no-untyped-def]
    return sims.household.injector if name == "household" else sims.social_security.injector


async def test_latency_beyond_the_deadline_times_out(department) -> None:  # type: ignore[no-untyped-def]
    adapter, sims, name = department
    injector(sims, name).set(Faults(latency_ms=2000))
    with pytest.raises(DepartmentTimeout):
        await adapter.fetch(q(sims, "long_contributor"), soon(0.2))


async def test_hang_is_bounded_by_the_department_ceiling(department) -> None:  # type: ignore[no-untyped-def]
    adapter, sims, name = department
    adapter._timeout_s = 0.2  # the configured ceiling, shorter than the caller's deadline
    injector(sims, name).set(Faults(hang=True))
    with pytest.raises(DepartmentTimeout):
        await adapter.fetch(q(sims, "long_contributor"), soon(30))
    assert not await adapter.health()
    injector(sims, name).clear()
    assert await adapter.health()
    assert (await adapter.fetch(q(sims, "long_contributor"), soon())).record.name


async def test_deadline_already_passed(department) -> None:  # type: ignore[no-untyped-def]
    adapter, sims, _ = department
    with pytest.raises(DepartmentTimeout):
        await adapter.fetch(q(sims, "long_contributor"), time.monotonic() - 1)


@pytest.mark.parametrize(
    ("faults", "error"),
    [
        (Faults(malformed=True), DepartmentMalformed),
        (Faults(error_rate=1.0), DepartmentUnavailable),
        (Faults(error_rate=1.0, error_status=500), DepartmentUnavailable),
        (Faults(error_rate=1.0, error_status=429), DepartmentUnavailable),
        (Faults(truncate=True), DepartmentUnavailable),
        (Faults(reset=True), DepartmentUnavailable),
    ],
)
async def test_failures_become_typed_errors(department, faults: Faults, error: type) -> None:  # type: ignore[no-untyped-def]
    adapter, sims, name = department
    query = q(sims, "long_contributor")
    injector(sims, name).set(faults)
    with pytest.raises(error) as raised:
        await adapter.fetch(query, soon())
    assert query.id_number not in str(raised.value)
    assert raised.value.__cause__ is None or query.id_number not in str(raised.value.__cause__)
    injector(sims, name).clear()
    assert (await adapter.fetch(query, soon())).record.id_number == query.id_number


async def test_malformed_is_still_unavailable_to_callers(department) -> None:  # type: ignore[no-untyped-def]
    adapter, sims, name = department
    injector(sims, name).set(Faults(malformed=True))
    with pytest.raises(DepartmentUnavailable):  # DepartmentMalformed is a DepartmentUnavailable
        await adapter.fetch(q(sims, "long_contributor"), soon())


async def test_admin_endpoint_switches_faults_at_runtime(department) -> None:  # type: ignore[no-untyped-def]
    adapter, sims, name = department
    url = sims.household_url if name == "household" else sims.social_security_url
    async with aiohttp.ClientSession() as session:
        async with session.post(url + "/_admin/faults", json={"error_rate": 1.0}) as resp:
            assert resp.status == 200
        with pytest.raises(DepartmentUnavailable):
            await adapter.fetch(q(sims, "long_contributor"), soon())
        async with session.delete(url + "/_admin/faults") as resp:
            assert resp.status == 200
    assert (await adapter.fetch(q(sims, "long_contributor"), soon())).record.name


async def test_nothing_listening_is_unavailable() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for adapter in (
        HouseholdAdapter(url, app_key=APP_KEY, secret=SECRET),
        SocialSecurityAdapter(url),
    ):
        try:
            with pytest.raises(DepartmentUnavailable, match="connection failed"):
                await adapter.fetch(RecordQuery("11010519491231002X"), soon())
            assert not await adapter.health()
        finally:
            await adapter.close()


async def test_closed_adapter_refuses(sims: Simulators) -> None:
    adapter = SocialSecurityAdapter(sims.social_security_url)
    await adapter.fetch(q(sims, "long_contributor"), soon())
    await adapter.close()
    with pytest.raises(DepartmentUnavailable, match="closed"):
        await adapter.fetch(q(sims, "long_contributor"), soon())
