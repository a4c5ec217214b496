"""The one recipe for running the embedded departments with a gateway in this process: what
the demo, the tests and the benchmarks all need.

    async with simulated(raw_config) as (sims, raw):        # raw: departments pointed at sims
        config = parse_config(raw, "demo")
    async with gateway_with_simulators(raw_config) as run:   # run.sims, run.config, run.gateway

The simulators read from the catalogue what they must agree on with the gateway (the household
registry's AppKey and secret, the other departments' credential files, the front-end databases
to fill), so they cannot drift apart; every listen address may be port 0, and the gateway is
then pointed at the ports bound (`endpoints`: the departments added by catalogue file too,
with an OAuth token URL where the department has one). A department whose simulator did not
start (its front-end database does not answer) keeps its catalogue endpoint, and the gateway
reports it unavailable.
`proofless dev` runs the simulators as a child process instead (gateway.devtools.dev).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from adapters.simulators import Simulators, run_simulators
from adapters.simulators.from_catalogue import simulator_departments
from gateway.catalogue import Catalogue, load_catalogue
from gateway.config import Config, merge_tables, parse_config
from gateway.domain.errors import ConfigError
from gateway.server.app import RunningGateway, running_gateway


def catalogue_of(raw: Mapping[str, Any]) -> Catalogue:
    directory = Path(raw.get("catalogue", {}).get("dir", "deploy/catalogue"))
    return load_catalogue(directory, raw.get("departments"))


def endpoints(sims: Simulators) -> dict[str, dict[str, Any]]:
    """Where the started simulators listen, as department endpoint overrides (and the
    authentication keys that name a simulator's address, such as an OAuth token URL)."""
    out: dict[str, dict[str, Any]] = {
        "household": {"endpoint": sims.household_url},
        "social_security": {"endpoint": sims.social_security_url},
        "property": {"endpoint": sims.property_dsn},
    }
    for code, added in sims.added.items():
        out[code] = {"endpoint": added.endpoint}
        if added.auth:
            out[code]["auth"] = dict(added.auth)
    return out


def household_secret(catalogue: Catalogue) -> bytes:
    auth = catalogue.departments["household"].auth.settings
    try:
        return Path(auth["secret_file"]).read_text(encoding="ascii").strip().encode("ascii")
    except (KeyError, OSError):
        raise ConfigError(
            "the household registry's app secret cannot be read (run `make certs`)"
        ) from None


@asynccontextmanager
async def simulated(raw: Mapping[str, Any]) -> AsyncIterator[tuple[Simulators, dict[str, Any]]]:
    """The simulators for `raw` (a configuration table), and `raw` pointed at them."""
    catalogue = catalogue_of(raw)
    async with run_simulators(
        raw.get("simulators", {}),
        simulator_departments(catalogue),
        secret=household_secret(catalogue),
    ) as sims:
        yield sims, merge_tables(raw, {"departments": endpoints(sims)})


@dataclass
class Running:
    sims: Simulators
    config: Config
    raw: dict[str, Any]
    gateway: RunningGateway


@asynccontextmanager
async def gateway_with_simulators(
    raw: Mapping[str, Any],
    *,
    source: str = "config",
    registry: CollectorRegistry | None = None,
) -> AsyncIterator[Running]:
    async with simulated(raw) as (sims, pointed):
        config = parse_config(pointed, source)
        async with running_gateway(config, registry=registry) as gw:
            yield Running(sims, config, pointed, gw)
