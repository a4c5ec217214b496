"""Starting and stopping the three embedded departments together.

    async with run_simulators(cfg["simulators"], cfg["departments"], secret=b"...") as sims:
        sims.household_url, sims.social_security_url, sims.property_dsn, sims.population

Listen addresses may use port 0 (tests): the URLs carry the ports actually bound. The property
simulator fills the front-end database named by `departments.property.dsn` (and `schema`),
which is the database the gateway's adapter reads. `serve_forever` is what
`proofless simulators` runs.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from adapters import signing
from adapters.simulators.datagen import Population, generate
from adapters.simulators.faults import FaultInjector
from adapters.simulators.household import HouseholdSimulator
from adapters.simulators.property_db import PropertyFrontDb
from adapters.simulators.social_security import SocialSecuritySimulator
from gateway.domain.errors import ConfigError

log = logging.getLogger("proofless.simulators")

DEFAULT_SEED = 20261121
DEFAULT_POPULATION = 2000
DEFAULT_DSN = "sqlite:///var/frontdb/property.sqlite3"
SHUTDOWN_GRACE_S = 1.0


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
        yield Simulators(
            population=population,
            household=household,
            social_security=social,
            property=frontdb,
            household_url=household_url,
            social_security_url=social_url,
            property_dsn=frontdb.dsn,
            property_admin_url=admin_url,
        )


async def serve_forever(config: Mapping[str, Any]) -> None:
    """Run the three departments from a full Proofless config until cancelled."""
    async with run_simulators(config.get("simulators", {}), config.get("departments", {})) as sims:
        log.info(
            "department simulators up: household %s, social security %s, property %s "
            "(%d people, seed %d)",
            sims.household_url,
            sims.social_security_url,
            sims.property.location.backend,
            len(sims.population.people),
            sims.population.seed,
        )
        if sims.property_admin_url:
            log.info(
                "property front-end database faults: %s/_admin/faults", sims.property_admin_url
            )
        await asyncio.Event().wait()
