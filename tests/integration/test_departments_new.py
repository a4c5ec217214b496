"""The departments added by catalogue file, each connector against its real simulator on the
same synthetic population: found, not found, malformed answers and refused credentials.

The connectors are built from the deployed catalogue (deploy/catalogue/), laid over with this
test's credentials and pointed at the simulators started here (gateway.devtools.recipe
`endpoints`), exactly as the gateway builds them.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from adapters.base import (
    DepartmentMalformed,
    DepartmentUnavailable,
    RecordNotFound,
    RecordQuery,
)
from adapters.connectors import build_connector
from adapters.connectors.soap import SoapConnector
from adapters.simulators import Simulators, run_simulators, serve_forever
from adapters.simulators.datagen import generate
from adapters.simulators.from_catalogue import simulator_departments
from adapters.simulators.registers_db import NURSE_TABLE, RegisterFrontDb
from gateway.catalogue import Catalogue
from gateway.catalogue.load import parse_catalogue
from gateway.config import merge_tables
from gateway.devtools.recipe import endpoints
from gateway.domain.errors import DepartmentTimeout
from tests.conftest import need_service
from tests.support.rules import CATALOGUE_DIR, catalogue_with

SEED, SIZE = 20261121, 400
MARIADB = "mysql://root@127.0.0.1:3306/test"


def secret(tmp: Path, name: str, value: str) -> str:
    path = tmp / name
    if not path.exists():
        path.write_text(value + "\n")
    return str(path)


def deployment(tmp: Path, **extra: dict[str, Any]) -> dict[str, Any]:
    """This test's [departments]: its own credentials and front-end databases (a MariaDB
    database of its own, named after the temporary directory)."""
    base: dict[str, Any] = {
        "nurse": {"endpoint": MARIADB, "settings": {"schema": own_database(tmp)}},
        "disability": {"endpoint": f"sqlite:///{tmp}/disability.sqlite3"},
        "household": {"auth": {"secret_file": secret(tmp, "household.secret", "ab" * 32)}},
        "property": {"endpoint": f"sqlite:///{tmp}/property.sqlite3"},
        "marriage": {"auth": {"password_file": secret(tmp, "marriage.password", "s3cret-mz")}},
        "medical_insurance": {"auth": {"key_file": secret(tmp, "medical.key", "yb-Key-1")}},
        "business_licence": {
            "auth": {"client_secret_file": secret(tmp, "market.secret", "scjg+Secret/1")}
        },
    }
    return merge_tables(base, extra)


def own_database(tmp: Path) -> str:
    return "pl_test_" + hashlib.sha256(str(tmp).encode()).hexdigest()[:12]


@pytest.fixture
async def sims(tmp_path: Path) -> AsyncIterator[Simulators]:
    sim_cfg = {
        "seed": SEED,
        "population": SIZE,
        "household_listen": "127.0.0.1:0",
        "social_security_listen": "127.0.0.1:0",
    }
    departments = simulator_departments(catalogue_with(deployment(tmp_path)))
    async with run_simulators(sim_cfg, departments) as running:
        yield running
        if "nurse" in running.added:
            await running.added["nurse"].server.drop()


def pointed(sims: Simulators, tmp: Path, **extra: dict[str, Any]) -> Catalogue:
    """The deployed catalogue pointed at the running simulators."""
    return catalogue_with(merge_tables(merge_tables(deployment(tmp), endpoints(sims)), extra))


def soon(seconds: float = 5.0) -> float:
    return time.monotonic() + seconds


def person(sims: Simulators, scenario: str, evidence: str) -> RecordQuery:
    return RecordQuery(sims.population.scenarios[scenario], request_id="req-1", evidence=evidence)


async def fetch(catalogue: Catalogue, code: str, query: RecordQuery) -> Any:
    connector = build_connector(catalogue.departments[code], catalogue)
    try:
        return await connector.fetch(query, soon())
    finally:
        await connector.close()


async def set_faults(url: str, **faults: Any) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}/_admin/faults", json=faults) as resp,
    ):
        assert resp.status == 200


def base_url(endpoint: str) -> str:
    return endpoint.split("/ws/", 1)[0]


# ---- civil affairs: marriage registration over SOAP --------------------------------------


async def test_marriage_found_over_soap(sims: Simulators, tmp_path: Path) -> None:
    catalogue = pointed(sims, tmp_path)
    query = person(sims, "divorced", "marriage")
    fetched = await fetch(catalogue, "marriage", query)
    assert sims.registers is not None
    expected = sims.registers.marriages[query.subject]
    assert fetched.department == "marriage"
    assert [r["kind"] for r in fetched.record] == ["marriage", "divorce"]
    first = fetched.record[0]
    assert first["husband_id_number"] == query.subject
    wife = sims.population.people[first["wife_id_number"]]  # a person of the population
    assert first["wife_name"] == wife.name == expected[0].wife_name
    assert first["registration_date"] == "2012-05-20"
    assert first["certificate_number"] == expected[0].certificate_number
    assert fetched.as_of.utcoffset() is not None
    assert fetched.as_of.replace(tzinfo=None) == expected[-1].updated_at


async def test_marriage_spouse_is_in_the_same_household(sims: Simulators, tmp_path: Path) -> None:
    query = person(sims, "married", "marriage")
    (record,) = (await fetch(pointed(sims, tmp_path), "marriage", query)).record
    household = sims.population.household_of(query.subject)
    assert {record["husband_id_number"], record["wife_id_number"]} <= set(household.member_ids)
    assert record["kind"] == "marriage"


async def test_marriage_not_found(sims: Simulators, tmp_path: Path) -> None:
    query = person(sims, "unknown", "marriage")
    with pytest.raises(RecordNotFound) as raised:
        await fetch(pointed(sims, tmp_path), "marriage", query)
    assert query.subject not in str(raised.value)


async def test_marriage_malformed_answer(sims: Simulators, tmp_path: Path) -> None:
    url = base_url(sims.added["marriage"].endpoint)
    catalogue = pointed(sims, tmp_path)
    connector = build_connector(catalogue.departments["marriage"], catalogue)
    try:
        await connector.fetch(person(sims, "married", "marriage"), soon())  # WSDL loaded
        await set_faults(url, malformed=True)
        with pytest.raises(DepartmentMalformed, match="not XML"):
            await connector.fetch(person(sims, "married", "marriage"), soon())
        await set_faults(url, error_rate=1.0, error_status=503)
        with pytest.raises(DepartmentUnavailable, match="HTTP 503"):
            await connector.fetch(person(sims, "married", "marriage"), soon())
        await set_faults(url, latency_ms=3000)
        with pytest.raises(DepartmentTimeout):
            await connector.fetch(person(sims, "married", "marriage"), soon(0.3))
    finally:
        await connector.close()


async def test_marriage_wrong_password_is_refused(sims: Simulators, tmp_path: Path) -> None:
    wrong = secret(tmp_path, "wrong.password", "guess")
    catalogue = pointed(sims, tmp_path, marriage={"auth": {"password_file": wrong}})
    with pytest.raises(DepartmentUnavailable, match="credentials") as raised:
        await fetch(catalogue, "marriage", person(sims, "married", "marriage"))
    assert "guess" not in str(raised.value)


async def test_marriage_wsdl_is_read_once_and_must_declare_the_catalogue_arguments(
    sims: Simulators, tmp_path: Path
) -> None:
    catalogue = pointed(sims, tmp_path)
    connector = build_connector(catalogue.departments["marriage"], catalogue)
    try:
        assert isinstance(connector, SoapConnector)
        service = await connector.service()
        operation = service.operations["queryHydjxx"]
        assert operation.arguments == {"SFZHM", "QQLSH"}
        assert operation.action == "urn:fj:mz:hydj:v1#queryHydjxx"
        assert service.address.startswith("http://127.0.0.1:")
        assert await connector.service() is service
    finally:
        await connector.close()
    # A catalogue file naming an argument the WebService does not take is refused when the
    # WSDL is read; nothing is sent to the department.
    files = {p.name: p.read_bytes() for p in CATALOGUE_DIR.glob("*.toml")}
    files["marriage.toml"] = files["marriage.toml"].replace(b"QQLSH =", b"QQXH =")
    overrides = merge_tables(deployment(tmp_path), endpoints(sims))
    typo = parse_catalogue(files, overrides)
    sent = sims.added["marriage"].server.requests
    with pytest.raises(DepartmentUnavailable, match="does not match"):
        await fetch(typo, "marriage", person(sims, "married", "marriage"))
    assert sims.added["marriage"].server.requests == sent


async def test_marriage_health(sims: Simulators, tmp_path: Path) -> None:
    catalogue = pointed(sims, tmp_path)
    connector = build_connector(catalogue.departments["marriage"], catalogue)
    try:
        assert await connector.health()
    finally:
        await connector.close()


# ---- medical insurance: enrolment over HTTP JSON with an API key -------------------------


async def test_medical_insurance_found(sims: Simulators, tmp_path: Path) -> None:
    query = person(sims, "insured", "medical_insurance")
    fetched = await fetch(pointed(sims, tmp_path), "medical_insurance", query)
    assert sims.registers is not None
    enrolment = sims.registers.medical[query.subject]
    account = sims.population.social_security[query.subject]
    assert fetched.department == "medical_insurance"
    assert fetched.record["id_number"] == query.subject
    assert fetched.record["scheme"] == "employee"  # employee medical insurance at the plant
    assert fetched.record["status"] == "active"
    assert fetched.record["region_code"] == account.spells[-1].region_code == "350505"
    assert fetched.record["enrolled_on"] == f"{enrolment.enrolled_on:%Y-%m-%d}"
    assert "ended_on" not in fetched.record
    assert fetched.as_of.replace(tzinfo=None) == enrolment.updated_at


async def test_medical_insurance_covers_the_never_employed(
    sims: Simulators, tmp_path: Path
) -> None:
    # The social-security bureau never enrolled the farmer; the resident scheme did.
    query = person(sims, "disabled", "medical_insurance")
    assert query.subject not in sims.population.social_security
    fetched = await fetch(pointed(sims, tmp_path), "medical_insurance", query)
    assert fetched.record["scheme"] == "resident"


async def test_medical_insurance_not_found(sims: Simulators, tmp_path: Path) -> None:
    query = person(sims, "unknown", "medical_insurance")
    with pytest.raises(RecordNotFound) as raised:
        await fetch(pointed(sims, tmp_path), "medical_insurance", query)
    assert query.subject not in str(raised.value)


async def test_medical_insurance_malformed(sims: Simulators, tmp_path: Path) -> None:
    url = sims.added["medical_insurance"].endpoint
    await set_faults(url, malformed=True)
    with pytest.raises(DepartmentMalformed, match="not JSON"):
        await fetch(
            pointed(sims, tmp_path),
            "medical_insurance",
            person(sims, "insured", "medical_insurance"),
        )
    await set_faults(url, truncate=True)
    with pytest.raises(DepartmentUnavailable):
        await fetch(
            pointed(sims, tmp_path),
            "medical_insurance",
            person(sims, "insured", "medical_insurance"),
        )


async def test_medical_insurance_wrong_key_is_refused(sims: Simulators, tmp_path: Path) -> None:
    wrong = secret(tmp_path, "wrong.key", "yb-guess")
    catalogue = pointed(sims, tmp_path, medical_insurance={"auth": {"key_file": wrong}})
    with pytest.raises(DepartmentUnavailable, match="credentials") as raised:
        await fetch(catalogue, "medical_insurance", person(sims, "insured", "medical_insurance"))
    assert "guess" not in str(raised.value)


# ---- market regulation: business licences over HTTP JSON with OAuth 2.0 -----------------


def organisation(sims: Simulators, name: str) -> RecordQuery:
    assert sims.registers is not None
    code = sims.registers.organisations[name]
    return RecordQuery(code, request_id="req-1", evidence="business_licence")


async def test_business_licence_found(sims: Simulators, tmp_path: Path) -> None:
    query = organisation(sims, "restaurant_sole_trader")
    fetched = await fetch(pointed(sims, tmp_path), "business_licence", query)
    record = fetched.record
    owner = sims.population.scenarios["business_owner"]
    assert fetched.department == "business_licence"
    assert record["credit_code"] == query.subject
    assert query.subject.startswith("92")  # a sole trader: the code is personal data
    assert record["kind"] == "sole_trader"
    assert record["status"] == "existing"
    assert "餐饮服务" in record["scope"]
    # the restaurant's operator is a citizen of the population, with a household record
    assert record["representative_id_number"] == owner
    assert record["representative"] == sims.population.people[owner].name
    company = await fetch(
        pointed(sims, tmp_path), "business_licence", organisation(sims, "restaurant_company")
    )
    assert (company.record["kind"], company.record["status"]) == ("company", "operating")
    assert company.record["representative_id_number"] == owner


async def test_business_licence_not_found(sims: Simulators, tmp_path: Path) -> None:
    unknown = RecordQuery("91350100M000100Y43", request_id="r", evidence="business_licence")
    with pytest.raises(RecordNotFound) as raised:
        await fetch(pointed(sims, tmp_path), "business_licence", unknown)
    assert unknown.subject not in str(raised.value)


async def test_business_licence_token_is_cached_and_refreshed(
    sims: Simulators, tmp_path: Path
) -> None:
    market = sims.added["business_licence"].server
    catalogue = pointed(sims, tmp_path)
    connector = build_connector(catalogue.departments["business_licence"], catalogue)
    try:
        issued = market.tokens_issued
        for name in ("restaurant_sole_trader", "restaurant_company", "revoked_company"):
            await connector.fetch(organisation(sims, name), soon())
        assert market.tokens_issued == issued + 1  # one token for the three calls
        market.revoke_tokens()  # the bureau rotates its keys: the next call is refused once
        revoked = await connector.fetch(organisation(sims, "revoked_company"), soon())
        assert revoked.record["status"] == "revoked"
        assert market.tokens_issued == issued + 2
    finally:
        await connector.close()


async def test_business_licence_malformed(sims: Simulators, tmp_path: Path) -> None:
    catalogue = pointed(sims, tmp_path)
    connector = build_connector(catalogue.departments["business_licence"], catalogue)
    try:
        await connector.fetch(organisation(sims, "restaurant_company"), soon())  # token held
        await set_faults(sims.added["business_licence"].endpoint, malformed=True)
        with pytest.raises(DepartmentMalformed, match="not JSON"):
            await connector.fetch(organisation(sims, "restaurant_company"), soon())
    finally:
        await connector.close()


async def test_business_licence_wrong_client_secret_is_refused(
    sims: Simulators, tmp_path: Path
) -> None:
    wrong = secret(tmp_path, "wrong.secret", "scjg-guess")
    catalogue = pointed(sims, tmp_path, business_licence={"auth": {"client_secret_file": wrong}})
    with pytest.raises(DepartmentUnavailable, match="credentials") as raised:
        await fetch(catalogue, "business_licence", organisation(sims, "restaurant_company"))
    assert "guess" not in str(raised.value)


# ---- health commission: nurse registrations in a MariaDB front-end database -------------


@pytest.fixture
def mariadb() -> None:
    need_service("MariaDB", "127.0.0.1", 3306)


@pytest.mark.usefixtures("mariadb")
async def test_nurse_found_and_her_employer_is_her_social_security_employer(
    sims: Simulators, tmp_path: Path
) -> None:
    assert sims.registers is not None
    query = person(sims, "nurse_renewal_due", "nurse")
    fetched = await fetch(pointed(sims, tmp_path), "nurse", query)
    record = fetched.record
    account = sims.population.social_security[query.subject]
    assert fetched.department == "nurse"
    assert record["id_number"] == query.subject
    assert record["status"] == "valid"
    assert record["employer"] == account.insurances()[0].employer == "宁德市蕉城区医院"
    due = sims.registers.nurses[query.subject].valid_until
    assert record["valid_until"] == due.isoformat()  # a DATE column, read as a date
    assert (due - sims.registers.today).days == 20
    assert fetched.as_of.replace(tzinfo=None) == sims.registers.nurses[query.subject].updated_at
    moved = person(sims, "nurse_employer_changed", "nurse")
    other = (await fetch(pointed(sims, tmp_path), "nurse", moved)).record
    current = sims.population.social_security[moved.subject].insurances()[0].employer
    assert other["employer"] == "泉州市泉港区医院" != current


@pytest.mark.usefixtures("mariadb")
async def test_nurse_not_found(sims: Simulators, tmp_path: Path) -> None:
    query = person(sims, "household_head", "nurse")  # a plant worker, not a nurse
    with pytest.raises(RecordNotFound) as raised:
        await fetch(pointed(sims, tmp_path), "nurse", query)
    assert query.subject not in str(raised.value)


@pytest.mark.usefixtures("mariadb")
async def test_nurse_duplicate_rows_are_malformed(sims: Simulators, tmp_path: Path) -> None:
    query = person(sims, "nurse_employer_changed", "nurse")
    await sims.added["nurse"].server.duplicate(query.subject)
    with pytest.raises(DepartmentMalformed, match="more than one row") as raised:
        await fetch(pointed(sims, tmp_path), "nurse", query)
    assert query.subject not in str(raised.value)


@pytest.mark.usefixtures("mariadb")
async def test_nurse_wrong_password_is_unavailable(sims: Simulators, tmp_path: Path) -> None:
    wrong = "mysql://root:not-the-password@127.0.0.1:3306/test"
    catalogue = pointed(sims, tmp_path, nurse={"endpoint": wrong})
    connector = build_connector(catalogue.departments["nurse"], catalogue)
    try:
        with pytest.raises(DepartmentUnavailable, match="query failed") as raised:
            await connector.fetch(person(sims, "nurse_renewal_due", "nurse"), soon())
        assert "not-the-password" not in str(raised.value)
        assert not await connector.health()
    finally:
        await connector.close()
    good = build_connector(pointed(sims, tmp_path).departments["nurse"], pointed(sims, tmp_path))
    try:
        assert await good.health()
    finally:
        await good.close()


async def test_nurse_without_mariadb_is_not_simulated(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A laptop without MariaDB: the other departments run, the nurse department is left out
    # with a line saying why, and the gateway's connector answers "unavailable".
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    nowhere = f"mysql://root:pw@127.0.0.1:{port}/test"
    caplog.set_level(logging.WARNING, logger="proofless.simulators")
    departments = simulator_departments(
        catalogue_with(deployment(tmp_path, nurse={"endpoint": nowhere}))
    )
    sim_cfg = {"seed": SEED, "population": SIZE}
    async with run_simulators(sim_cfg, departments) as running:
        assert "nurse" not in running.added
        assert "marriage" in running.added
        (line,) = [r.getMessage() for r in caplog.records if "nurse" in r.getMessage()]
        assert "does not answer" in line
        assert "pw@" not in line
        catalogue = pointed(running, tmp_path, nurse={"endpoint": nowhere})
        with pytest.raises(DepartmentUnavailable):
            await fetch(catalogue, "nurse", person(running, "nurse_renewal_due", "nurse"))


# ---- disabled persons' federation: certificates in a PostgreSQL (or SQLite) front-end db -


@pytest.fixture
async def pg_disability(
    postgres_dsn: str, tmp_path: Path
) -> AsyncIterator[tuple[Simulators, dict[str, Any]]]:
    """The simulators with the disability register in PostgreSQL, a schema of this test's."""
    schema = "cl_test_" + hashlib.sha256(str(tmp_path).encode()).hexdigest()[:12]
    extra = {"endpoint": postgres_dsn, "settings": {"schema": schema}}
    departments = simulator_departments(catalogue_with(deployment(tmp_path, disability=extra)))
    async with run_simulators({"seed": SEED, "population": SIZE}, departments) as running:
        try:
            yield running, extra
        finally:
            await running.added["disability"].server.drop()
            if "nurse" in running.added:
                await running.added["nurse"].server.drop()


async def test_disability_found_in_sqlite(sims: Simulators, tmp_path: Path) -> None:
    query = person(sims, "disabled", "disability")
    fetched = await fetch(pointed(sims, tmp_path), "disability", query)
    assert sims.added["disability"].endpoint.startswith("sqlite:///")
    assert fetched.record["category"] == "physical"
    assert fetched.record["grade"] == 2
    assert fetched.record["certificate_number"] == query.subject + "42"


async def test_disability_found_in_postgresql(
    pg_disability: tuple[Simulators, dict[str, Any]], tmp_path: Path
) -> None:
    sims, extra = pg_disability
    assert sims.registers is not None
    query = person(sims, "disabled", "disability")
    fetched = await fetch(pointed(sims, tmp_path, disability=extra), "disability", query)
    certificate = sims.registers.disability[query.subject]
    assert fetched.department == "disability"
    assert fetched.record["category"] == "physical"
    assert fetched.record["grade"] == 2
    assert fetched.record["valid_until"] == certificate.valid_until.isoformat()
    assert fetched.record["issued_on"] == certificate.issued_on.isoformat()
    assert fetched.as_of.replace(tzinfo=None) == certificate.updated_at


async def test_disability_not_found_and_malformed_in_postgresql(
    pg_disability: tuple[Simulators, dict[str, Any]], tmp_path: Path
) -> None:
    sims, extra = pg_disability
    catalogue = pointed(sims, tmp_path, disability=extra)
    with pytest.raises(RecordNotFound):
        await fetch(catalogue, "disability", person(sims, "household_head", "disability"))
    query = person(sims, "disabled", "disability")
    await sims.added["disability"].server.duplicate(query.subject)
    with pytest.raises(DepartmentMalformed, match="more than one row"):
        await fetch(catalogue, "disability", query)


async def test_disability_unknown_role_is_unavailable(
    pg_disability: tuple[Simulators, dict[str, Any]], tmp_path: Path
) -> None:
    sims, extra = pg_disability
    wrong = {**extra, "endpoint": "postgresql://no_such_role_pl@127.0.0.1:5432/test"}
    catalogue = pointed(sims, tmp_path, disability=wrong)
    with pytest.raises(DepartmentUnavailable, match="query failed") as raised:
        await fetch(catalogue, "disability", person(sims, "disabled", "disability"))
    assert "no_such_role" not in str(raised.value)


async def test_disability_malformed_in_sqlite(sims: Simulators, tmp_path: Path) -> None:
    query = person(sims, "disabled", "disability")
    await sims.added["disability"].server.duplicate(query.subject)
    with pytest.raises(DepartmentMalformed):
        await fetch(pointed(sims, tmp_path), "disability", query)


# ---- `proofless simulators`: where the catalogue says the departments are -----------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_serve_forever_listens_at_the_catalogue_endpoints(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The gateway of `make run` calls each department at its catalogue endpoint; the
    # simulators listen there. One whose address is taken (another run) is left out with a
    # warning instead of stopping the others.
    market, medical = free_port(), free_port()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        extra = {
            "marriage": {"endpoint": f"http://127.0.0.1:{taken}/ws/hydj?wsdl"},
            "business_licence": {
                "endpoint": f"http://127.0.0.1:{market}",
                "auth": {"token_url": f"http://127.0.0.1:{market}/oauth/token"},
            },
            "medical_insurance": {"endpoint": f"http://127.0.0.1:{medical}"},
        }
        deployed = catalogue_with(deployment(tmp_path, **extra))
        config = {
            "simulators": {
                "seed": SEED,
                "population": SIZE,
                "household_listen": "127.0.0.1:0",
                "social_security_listen": "127.0.0.1:0",
            },
            "departments": simulator_departments(deployed),
        }
        caplog.set_level(logging.INFO, logger="proofless.simulators")
        task = asyncio.create_task(serve_forever(config))
        try:
            for _ in range(500):
                if any("simulators up" in r.getMessage() for r in caplog.records):
                    break
                await asyncio.sleep(0.02)
            assert not task.done()
            messages = [r.getMessage() for r in caplog.records]
            assert any(f"marriage is not simulated: 127.0.0.1:{taken} is in use" in m
                       for m in messages)  # fmt: skip
            # the others are where the catalogue says: the connector finds them unchanged
            query = RecordQuery(insured_person(), "r", "medical_insurance")
            fetched = await fetch(deployed, "medical_insurance", query)
            assert fetched.record["scheme"] == "employee"
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            nurse_db = RegisterFrontDb(NURSE_TABLE, [], MARIADB, schema=own_database(tmp_path))
            if await nurse_db.answers():
                await nurse_db.drop()


def insured_person() -> str:
    return generate(SEED, SIZE).scenarios["insured"]
