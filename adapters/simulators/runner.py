"""Starting and stopping the embedded departments together.

    async with run_simulators(cfg["simulators"], cfg["departments"], secret=b"...") as sims:
        sims.household_url, sims.social_security_url, sims.property_dsn, sims.population
        sims.added["marriage"].endpoint, sims.registers

Listen addresses may use port 0 (tests): the URLs carry the ports actually bound. The property
simulator fills the front-end database named by `departments.property.dsn` (and `schema`),
which is the database the gateway's adapter reads. `serve_forever` is what
`proofless simulators` runs.

The departments added by catalogue file (`ADDED`: marriage, …) are simulated when the
catalogue has them, on the same population (`registers`). Each listens on
`[simulators] <code>_listen` (port 0 by default; `serve_forever` uses the address of the
department's endpoint in the catalogue, so the gateway finds them there) and accepts the
credentials the catalogue's files hold. One whose credential file cannot be read, or whose
front-end database does not answer, is not started: a warning says so, and the gateway
reports that department unavailable.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

from adapters import signing
from adapters.simulators.datagen import Population, generate
from adapters.simulators.faults import FaultInjector
from adapters.simulators.household import HouseholdSimulator
from adapters.simulators.market import TOKEN_PATH, MarketSimulator
from adapters.simulators.marriage import PATH as MARRIAGE_PATH
from adapters.simulators.marriage import MarriageSimulator
from adapters.simulators.medical_insurance import MedicalInsuranceSimulator
from adapters.simulators.population import Registers
from adapters.simulators.property_db import PropertyFrontDb
from adapters.simulators.registers import registers
from adapters.simulators.registers_db import (
    DISABILITY_TABLE,
    NURSE_TABLE,
    RegisterFrontDb,
    Table,
    disability_rows,
    nurse_rows,
)
from adapters.simulators.social_security import SocialSecuritySimulator
from gateway.domain.errors import ConfigError

log = logging.getLogger("proofless.simulators")

DEFAULT_SEED = 20261121
DEFAULT_POPULATION = 2000
DEFAULT_DSN = "sqlite:///var/frontdb/property.sqlite3"
SHUTDOWN_GRACE_S = 1.0


@dataclass(frozen=True)
class Added:
    """A department added by catalogue file, as simulated: what the gateway should be given
    to reach it (`endpoint`, and `auth` keys such as an OAuth token URL) and the simulator."""

    code: str
    endpoint: str
    server: Any
    auth: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Simulators:
    population: Population
    household: HouseholdSimulator
    social_security: SocialSecuritySimulator
    property: PropertyFrontDb
    household_url: str
    social_security_url: str
    property_dsn: str
    property_admin_url: str | None = None
    registers: Registers | None = None
    added: Mapping[str, Added] = field(default_factory=dict)


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ConfigError(f"listen address {value!r}: expected host:port")
    return host.strip("[]"), int(port)


async def _serve(
    stack: AsyncExitStack, app: web.Application, listen: str, injector: FaultInjector | None
) -> str:
    host, port = parse_listen(listen)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {listen}: {exc.strerror}") from None
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_GRACE_S)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    if injector is not None:
        # Runs before cleanup (LIFO): hung requests must end for the server to stop.
        stack.callback(injector.release)
    await web.SockSite(runner, sock).start()
    bound_host, bound_port = sock.getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    return f"http://{shown}:{bound_port}"


@asynccontextmanager
async def run_simulators(
    sim_cfg: Mapping[str, Any],
    departments_cfg: Mapping[str, Any],
    *,
    secret: bytes | None = None,
) -> AsyncIterator[Simulators]:
    population = generate(
        int(sim_cfg.get("seed", DEFAULT_SEED)), int(sim_cfg.get("population", DEFAULT_POPULATION))
    )
    household_cfg: Mapping[str, Any] = departments_cfg.get("household", {})
    property_cfg: Mapping[str, Any] = departments_cfg.get("property", {})
    if secret is None:
        try:
            secret = signing.read_secret(str(household_cfg["app_secret_file"]))
        except KeyError:
            raise ConfigError("departments.household.app_secret_file is not set") from None
        except OSError:
            raise ConfigError(
                "departments.household.app_secret_file cannot be read (run `proofless certs init`)"
            ) from None
    app_key = str(household_cfg.get("app_key", "proofless-gateway"))

    async with AsyncExitStack() as stack:
        household = HouseholdSimulator(population, apps={app_key: secret})
        household_url = await _serve(
            stack,
            household.app(),
            str(sim_cfg.get("household_listen", "127.0.0.1:0")),
            household.injector,
        )
        social = SocialSecuritySimulator(population)
        social_url = await _serve(
            stack,
            social.app(),
            str(sim_cfg.get("social_security_listen", "127.0.0.1:0")),
            social.injector,
        )
        schema = property_cfg.get("schema")
        frontdb = PropertyFrontDb(
            population,
            str(property_cfg.get("dsn", DEFAULT_DSN)),
            schema=str(schema) if schema else None,
        )
        await frontdb.fill()
        stack.push_async_callback(frontdb.close)
        admin_url = None
        if sim_cfg.get("property_admin_listen"):
            admin_url = await _serve(
                stack, frontdb.admin_app(), str(sim_cfg["property_admin_listen"]), None
            )
        today = _today(sim_cfg)
        regs = registers(population, today)
        added: dict[str, Added] = {}
        for code, start in ADDED.items():
            if code in departments_cfg:
                started = await start(
                    _Start(stack, code, departments_cfg[code], sim_cfg, regs, population.seed)
                )
                if started is not None:
                    added[code] = started
        yield Simulators(
            population=population,
            household=household,
            social_security=social,
            property=frontdb,
            household_url=household_url,
            social_security_url=social_url,
            property_dsn=frontdb.dsn,
            property_admin_url=admin_url,
            registers=regs,
            added=added,
        )


def _today(sim_cfg: Mapping[str, Any]) -> date:
    """`[simulators] today` (YYYY-MM-DD), else the date in Beijing now."""
    pinned = sim_cfg.get("today")
    if pinned:
        try:
            return date.fromisoformat(str(pinned))
        except ValueError:
            raise ConfigError(f"simulators.today {pinned!r}: expected YYYY-MM-DD") from None
    return (datetime.now(UTC) + timedelta(hours=8)).date()


# ---- the departments added by catalogue file ---------------------------------------------


@dataclass(frozen=True)
class _Start:
    stack: AsyncExitStack
    code: str
    department: Mapping[str, Any]  # from simulator_departments: endpoint, auth, dsn …
    sim_cfg: Mapping[str, Any]
    registers: Registers
    seed: int

    @property
    def listen(self) -> str:
        return str(self.sim_cfg.get(f"{self.code}_listen", "127.0.0.1:0"))

    async def serve(self, app: web.Application, injector: FaultInjector | None) -> str | None:
        """Serve `app` on this department's listen address; its URL. An address taken from
        the catalogue's endpoint (`proofless simulators`) that is busy, say by another run,
        leaves the department out with a warning; one configured explicitly must be free."""
        try:
            return await _serve(self.stack, app, self.listen, injector)
        except ConfigError:
            if self.code not in self.sim_cfg.get(FROM_CATALOGUE, ()):
                raise
            log.warning(
                "department %s is not simulated: %s is in use; the gateway will report the "
                "department unavailable unless another simulator answers there",
                self.code,
                self.listen,
            )
            return None

    def secret(self, key: str) -> str | None:
        """The credential file the catalogue names under auth.`key`; None (and a warning)
        when it cannot be read."""
        path = self.department.get("auth", {}).get(key)
        try:
            value = Path(str(path)).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError, TypeError):
            value = ""
        if not value:
            log.warning(
                "department %s is not simulated: its credential file (auth.%s) cannot be "
                "read (run `proofless certs init`)",
                self.code,
                key,
            )
            return None
        return value


async def _marriage(s: _Start) -> Added | None:
    password = s.secret("password_file")
    if password is None:
        return None
    username = str(s.department.get("auth", {}).get("username", ""))
    sim = MarriageSimulator(s.registers, username=username, password=password, seed=s.seed)
    url = await s.serve(sim.app(), sim.injector)
    return None if url is None else Added(s.code, f"{url}{MARRIAGE_PATH}?wsdl", sim)


async def _medical_insurance(s: _Start) -> Added | None:
    key = s.secret("key_file")
    if key is None:
        return None
    header = str(s.department.get("auth", {}).get("header", "X-API-Key"))
    sim = MedicalInsuranceSimulator(s.registers, api_key=key, header=header, seed=s.seed)
    url = await s.serve(sim.app(), sim.injector)
    return None if url is None else Added(s.code, url, sim)


async def _business_licence(s: _Start) -> Added | None:
    secret = s.secret("client_secret_file")
    if secret is None:
        return None
    client_id = str(s.department.get("auth", {}).get("client_id", ""))
    sim = MarketSimulator(s.registers, client_id=client_id, client_secret=secret, seed=s.seed)
    url = await s.serve(sim.app(), sim.injector)
    return None if url is None else Added(s.code, url, sim, {"token_url": url + TOKEN_PATH})


async def _frontdb(s: _Start, table: Table, rows: list[tuple[Any, ...]]) -> Added | None:
    dsn = s.department.get("dsn")
    if not dsn:
        return None
    schema = s.department.get("schema")
    db = RegisterFrontDb(table, rows, str(dsn), schema=str(schema) if schema else None)
    if not await db.answers():
        log.warning(
            "department %s is not simulated: its front-end database (%s) does not answer; "
            "the gateway will report the department unavailable",
            s.code,
            _shown(str(dsn)),
        )
        return None
    await db.fill()
    return Added(s.code, db.dsn, db)


async def _nurse(s: _Start) -> Added | None:
    return await _frontdb(s, NURSE_TABLE, nurse_rows(s.registers))


async def _disability(s: _Start) -> Added | None:
    return await _frontdb(s, DISABILITY_TABLE, disability_rows(s.registers))


ADDED: dict[str, Callable[[_Start], Awaitable[Added | None]]] = {
    "nurse": _nurse,
    "disability": _disability,
    "marriage": _marriage,
    "business_licence": _business_licence,
    "medical_insurance": _medical_insurance,
}


FROM_CATALOGUE = "_listens_from_catalogue"


def catalogue_listens(departments: Mapping[str, Any]) -> dict[str, Any]:
    """`<code>_listen` for each added HTTP department: the host and port of its endpoint in
    the catalogue, where the gateway will call it (and which of them were derived so)."""
    out: dict[str, Any] = {}
    for code in ADDED:
        url = departments.get(code, {}).get("url")
        if not url:
            continue
        parts = urllib.parse.urlsplit(str(url))
        if parts.hostname and parts.port:
            out[f"{code}_listen"] = f"{parts.hostname}:{parts.port}"
            out.setdefault(FROM_CATALOGUE, []).append(code)
    return out


async def serve_forever(config: Mapping[str, Any]) -> None:
    """Run the departments from a full Proofless config until cancelled."""
    departments = config.get("departments", {})
    configured = config.get("simulators", {})
    derived = catalogue_listens(departments)
    derived[FROM_CATALOGUE] = [
        c for c in derived.get(FROM_CATALOGUE, []) if f"{c}_listen" not in configured
    ]
    sim_cfg = {**derived, **configured}
    async with run_simulators(sim_cfg, departments) as sims:
        log.info(
            "department simulators up: household %s, social security %s, property %s "
            "(%d people, seed %d)",
            sims.household_url,
            sims.social_security_url,
            sims.property.location.backend,
            len(sims.population.people),
            sims.population.seed,
        )
        for added in sims.added.values():
            log.info("department simulator up: %s %s", added.code, _shown(added.endpoint))
        if sims.property_admin_url:
            log.info(
                "property front-end database faults: %s/_admin/faults", sims.property_admin_url
            )
        await asyncio.Event().wait()


def _shown(endpoint: str) -> str:
    """An endpoint for a log line, without a password a DSN may carry."""
    parts = urllib.parse.urlsplit(endpoint)
    if parts.password is None:
        return endpoint
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
