"""The servers under test, one process each: `python -m bench.servers KIND --workdir DIR`.

    sims      the three department simulators (HTTP household and social security, SQLite
              property front-end database)
    b0        bare grpc.aio over mutual TLS: GetHouseholdRecord answers a canned response
    b0-yield  b0 suspending 4 times per call (asyncio.sleep(0))
    b0-hop    b0 hopping to the default executor once per call (asyncio.to_thread)
    b0-int    b0 with a no-op `grpc.aio.ServerInterceptor` installed (prices grpc's
              interceptor path; `python -m bench.ab b0 b0-int`)
    b1        bare grpc.aio pass-through: the same RPC calls the household simulator through
              the real signed adapter and returns the mapped record; no policy, audit or proof
    b1-raw    the transport's floor for that department call: bare grpc.aio, one pooled
              aiohttp POST of the same body to the same simulator's code and population
              (its unsigned twin), the answer read and not parsed, b0's canned response
    gw-mem    Proofless, every feature on, household department in process (canned record)
    gw-http   Proofless, every feature on, the three simulators over HTTP and SQL

A server prints one line `READY {json}` on stdout once it serves, then runs until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import grpc
from aiohttp import web

from adapters.auth import json_body
from adapters.base import DepartmentAdapter, DepartmentId, Fetched, RecordNotFound, RecordQuery
from adapters.connectors import build_connector
from adapters.connectors.common import records
from adapters.httpclient import JSON_CONTENT_TYPE
from adapters.simulators.datagen import generate
from adapters.simulators.household import HouseholdSimulator, person_payload
from bench.setup import POPULATION, RECORD_FIELDS, SEED, Workdir
from gateway.catalogue import Catalogue, load_catalogue
from gateway.catalogue.mapping import TypedBuilder
from gateway.catalogue.schema import HttpCall
from gateway.config import parse_config
from gateway.devtools.pki import DevPki
from proofless.v1 import verification_pb2 as pb
from proofless.v1 import verification_pb2_grpc as pb_grpc


def bench_catalogue() -> Catalogue:
    return load_catalogue(Path(__file__).resolve().parents[1] / "deploy" / "catalogue")


def household_records() -> dict[str, tuple[dict[str, Any], datetime]]:
    """Everyone in the bench population as the household connector maps them (canonical
    record and as-of time), by the deployed catalogue's own mapping."""
    evidence = bench_catalogue().evidence["household"]
    population = generate(seed=SEED, size=POPULATION)
    out: dict[str, tuple[dict[str, Any], datetime]] = {}
    for idn, person in population.people.items():
        data = person_payload(population, person)
        out[idn] = records(evidence, data, idn, data)
    return out


def canned_record() -> tuple[str, pb.HouseholdRecord, datetime]:
    """The household head of the bench population, as the gateway types it."""
    population = generate(seed=SEED, size=POPULATION)
    idn = population.scenarios["household_head"]
    record, as_of = household_records()[idn]
    builder = TypedBuilder(bench_catalogue().evidence["household"])
    return idn, builder.build(record), as_of


class InProcessHousehold:
    """A `DepartmentAdapter` answering from memory, for everyone in the bench population (the
    load cycles through many applicants): the department costs nothing, so the figure is the
    gateway's own cost. `delay_s` holds requests in flight (memory figure)."""

    department: DepartmentId = "household"

    def __init__(self, delay_s: float = 0.0) -> None:
        self._records = household_records()
        self._delay_s = delay_s

    async def fetch(self, query: RecordQuery, deadline: float) -> Fetched[dict[str, Any]]:
        if self._delay_s:
            await asyncio.sleep(self._delay_s)
        found = self._records.get(query.subject)
        if found is None:
            raise RecordNotFound("household: no such person")
        # a fresh dict per fetch, as a real connector returns
        return Fetched(self.department, dict(found[0]), found[1], "household")

    async def health(self) -> bool:
        return True

    async def close(self) -> None:
        return None


def _server_credentials(pki: DevPki) -> grpc.ServerCredentials:
    return grpc.ssl_server_credentials(
        [(pki.server_key.read_bytes(), pki.server_pem.read_bytes())],
        root_certificates=pki.ca_pem.read_bytes(),
        require_client_auth=True,
    )


class CannedServicer(pb_grpc.VerificationServiceServicer):
    """B0: the stack's ceiling: TLS, HTTP/2, protobuf, one canned answer."""

    def __init__(self) -> None:
        _, record, _ = canned_record()
        masked = pb.HouseholdRecord()
        for name in RECORD_FIELDS:
            setattr(masked, name, getattr(record, name))
        self._response = pb.HouseholdRecordResponse(record=masked)

    async def GetHouseholdRecord(self, request: Any, context: Any) -> pb.HouseholdRecordResponse:
        return self._response


class SuspendingServicer(CannedServicer):
    """B0 that suspends `yields` times per call (`asyncio.sleep(0)`) and hops to a thread
    `hops` times (`asyncio.to_thread`): prices the event loop's and grpc's per-resumption
    cost and a thread hand-off under grpc.aio (kinds b0-yield, b0-hop)."""

    def __init__(self, yields: int = 0, hops: int = 0) -> None:
        super().__init__()
        self._yields, self._hops = yields, hops

    async def GetHouseholdRecord(self, request: Any, context: Any) -> pb.HouseholdRecordResponse:
        for _ in range(self._yields):
            await asyncio.sleep(0)
        for _ in range(self._hops):
            await asyncio.to_thread(int)
        return self._response


class PassThroughServicer(pb_grpc.VerificationServiceServicer):
    """B1: the irreducible work of a gateway: the same department call through the same
    signed, pooled adapter, the answer mapped and returned."""

    def __init__(self, adapter: DepartmentAdapter[Any], builder: TypedBuilder) -> None:
        self._adapter = adapter
        self._builder = builder

    async def GetHouseholdRecord(self, request: Any, context: Any) -> pb.HouseholdRecordResponse:
        fetched = await self._adapter.fetch(
            RecordQuery(request.applicant.id_number, evidence="household"), time.monotonic() + 5
        )
        record = self._builder.build(fetched.record)
        masked = pb.HouseholdRecord()
        for name in RECORD_FIELDS:
            setattr(masked, name, getattr(record, name))
        return pb.HouseholdRecordResponse(record=masked)


class RawPassThroughServicer(CannedServicer):
    """B1-raw: what the department call costs at the least: a bare pooled aiohttp POST of
    the request body the household connector sends, its answer read whole, nothing signed,
    checked, parsed or mapped; then b0's canned response."""

    def __init__(self, url: str, body: Mapping[str, Any], pool_size: int) -> None:
        super().__init__()
        self._url = url
        self._body = body
        self._pool_size = pool_size
        self._session: aiohttp.ClientSession | None = None

    async def GetHouseholdRecord(self, request: Any, context: Any) -> pb.HouseholdRecordResponse:
        if self._session is None:  # created on the serving loop
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._pool_size)
            )
        body = json_body(self._body, {"{subject}": request.applicant.id_number})
        async with self._session.post(
            self._url, data=body, headers={"Content-Type": JSON_CONTENT_TYPE}
        ) as resp:
            await resp.read()
        if resp.status != 200:  # counted as an error by the client: the figure is not a 401's
            raise RuntimeError(f"household twin answered HTTP {resp.status}")
        return self._response

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class _AcceptAll:
    """The unsigned twin's verifier: every request passes (b1-raw sends none)."""

    def check(self, *args: Any) -> None:
        return None


async def _unsigned_household(population: Any) -> tuple[web.AppRunner, str]:
    """The household simulator's code on the same population, signatures not checked: the
    server b1-raw posts to, so its answer is the signed simulator's, byte for byte."""
    twin = HouseholdSimulator(population, apps={})
    twin.verifier = _AcceptAll()  # type: ignore[assignment]
    runner = web.AppRunner(twin.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


class NoOpInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc is untyped
    """Passes every call straight on: what grpc.aio's interceptor machinery costs alone."""

    async def intercept_service(self, continuation: Any, details: Any) -> Any:
        return await continuation(details)


@contextlib.asynccontextmanager
async def bare_server(
    work: Workdir, servicer: Any, interceptors: list[Any] | None = None
) -> AsyncIterator[int]:
    server = grpc.aio.server(
        interceptors=interceptors,
        options=[("grpc.max_concurrent_streams", 1024), ("grpc.so_reuseport", 1)],
    )
    pb_grpc.add_VerificationServiceServicer_to_server(servicer, server)
    port = server.add_secure_port("127.0.0.1:0", _server_credentials(work.pki))
    await server.start()
    try:
        yield port
    finally:
        await server.stop(0.5)


def _with_sims(raw: dict[str, Any], sims: dict[str, str]) -> dict[str, Any]:
    deps = raw.setdefault("departments", {})
    deps.setdefault("household", {})["endpoint"] = sims["household_url"]
    deps.setdefault("social_security", {})["endpoint"] = sims["social_security_url"]
    deps.setdefault("property", {})["endpoint"] = sims["property_dsn"]
    return raw


async def _until_stopped() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def _ready(**info: Any) -> None:
    print("READY " + json.dumps(info), flush=True)


async def main(args: argparse.Namespace) -> None:
    work = Workdir(Path(args.workdir), DevPki(Path(args.workdir) / "pki"))
    raw = work.raw_config()
    sims = json.loads(args.sims) if args.sims else None
    if sims:
        raw = _with_sims(raw, sims)
    kind = args.kind
    if kind == "sims":
        from gateway.devtools.recipe import simulated  # noqa: PLC0415 - sims process only

        async with simulated(raw) as (s, _):
            twin, unsigned_url = await _unsigned_household(s.population)
            try:
                _ready(
                    household_url=s.household_url,
                    household_unsigned_url=unsigned_url,
                    social_security_url=s.social_security_url,
                    property_dsn=s.property_dsn,
                )
                await _until_stopped()
            finally:
                await twin.cleanup()
    elif kind in ("b0", "b0-int"):
        interceptors = [NoOpInterceptor()] if kind == "b0-int" else None
        async with bare_server(work, CannedServicer(), interceptors) as port:
            _ready(port=port)
            await _until_stopped()
    elif kind in ("b0-yield", "b0-hop"):
        servicer = (
            SuspendingServicer(yields=4) if kind == "b0-yield" else SuspendingServicer(hops=1)
        )
        async with bare_server(work, servicer) as port:
            _ready(port=port)
            await _until_stopped()
    elif kind == "b1-raw":
        assert sims, "b1-raw needs --sims"
        catalogue = load_catalogue(Path(raw["catalogue"]["dir"]), raw.get("departments"))
        call = catalogue.evidence["household"].fetch
        assert isinstance(call, HttpCall)
        servicer = RawPassThroughServicer(
            sims["household_unsigned_url"].rstrip("/") + call.path,
            call.body,
            catalogue.departments["household"].pool_size,
        )
        try:
            async with bare_server(work, servicer) as port:
                _ready(port=port)
                await _until_stopped()
        finally:
            await servicer.close()
    elif kind == "b1":
        catalogue = load_catalogue(Path(raw["catalogue"]["dir"]), raw.get("departments"))
        adapter = build_connector(catalogue.departments["household"], catalogue)
        builder = TypedBuilder(catalogue.evidence["household"])
        try:
            async with bare_server(work, PassThroughServicer(adapter, builder)) as port:
                _ready(port=port)
                await _until_stopped()
        finally:
            await adapter.close()
    elif kind in ("gw-mem", "gw-http"):
        from gateway.ops.logging import configure_logging  # noqa: PLC0415 - gateway processes only
        from gateway.server.app import running_gateway  # noqa: PLC0415 - gateway processes only

        # as `proofless serve` runs: JSON lines on stderr (this server's log file), including
        # the access log's line per call
        configure_logging("INFO")
        raw["audit"]["dir"] = str(work.dir / f"audit-{kind}-{args.tag}")
        if kind == "gw-mem":  # the HTTP/JSON door too: its figure beside gRPC's, same server
            raw["server"]["http_listen"] = "127.0.0.1:0"
        config = parse_config(raw, "bench")
        adapters = None
        if kind == "gw-mem":
            adapters = {"household": InProcessHousehold(args.delay_ms / 1000)}
        async with running_gateway(config, adapters=adapters) as gw:
            _ready(port=gw.port, ops_port=gw.ops_port, http_port=gw.http_port)
            await _until_stopped()
    else:
        raise SystemExit(f"unknown server kind {kind!r}")


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind")
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--sims", default="", help="the sims' READY json (URLs, DSN)")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="gw-mem: hold each fetch")
    parser.add_argument("--tag", default="0", help="distinguishes audit directories")
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop")
    parser.add_argument(
        "--without",
        action="append",
        default=[],
        help="gw-mem, gw-http: replace a stage by its stand-in (bench.inproc STAGES), to price "
        "it in a served call; the answers are then not valid",
    )
    args = parser.parse_args()
    if args.without:
        from bench.inproc import STAGES  # noqa: PLC0415 - measuring tool only

        for stage in args.without:
            STAGES[stage]()
    if args.uvloop:
        import uvloop  # noqa: PLC0415 - optional, only with --uvloop

        uvloop.run(main(args))
    else:
        asyncio.run(main(args))
    sys.stdout.flush()


if __name__ == "__main__":
    run()
