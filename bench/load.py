"""The load generator, one process: `python -m bench.load --port P --rpc household ...`.

A grpc.aio client over mutual TLS that keeps `--concurrency` unary calls in flight over
`--channels` channels (closed loop), or sends `--rate` calls per second (open loop, for
latency at a fixed load). The request is serialized once: the low-level
`channel.unary_unary` with no serializers sends those bytes and hands back the response bytes
undecoded, which roughly halves the client's CPU per call compared with generated stubs.

It reads /proc/<pid>/stat of the processes named by `--pids` (the server, the department
simulators) and of itself at the start and end of the measured window, so the report shows
who was busy. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import statistics
import time
from pathlib import Path
from typing import Any

import aiohttp
import grpc
from google.protobuf import json_format

from bench.setup import (
    CLAIMS_CALLER,
    CLAIMS_ITEM,
    RECORD_CALLER,
    RECORD_FIELDS,
    RECORD_ITEM,
    applicant_ids,
    scenarios,
)
from gateway.devtools.pki import DevPki
from proofless.v1 import verification_pb2 as pb

CLK_TCK = os.sysconf("SC_CLK_TCK")
#: how long a server (a `--workers` supervisor still starting its workers, on a busy machine)
#: may take to accept the first connection; a readiness wait, not a measurement
CONNECT_TIMEOUT_S = 60.0
SERVICE = "/proofless.v1.VerificationService/"
#: --rpc: what one unit of work is; `item-separate` is the nurse renewal's requirements asked
#: one call each (sent together, as an approval system in a hurry would), `item` the same in
#: one CheckItem call
RPCS = ("household", "household-http", "claims", "item", "item-separate")
NURSE_CALLER = "ningde-window"
#: GetHouseholdRecord's route on the HTTP/JSON door (its google.api.http annotation)
HTTP_HOUSEHOLD = "/v1/records/household"
NURSE_ITEM = "nurse-renewal"


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, all its threads (/proc/<pid>/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


#: one unit of work: the calls (method path, serialized request) that make it
Unit = list[tuple[str, bytes]]


def request_units(rpc: str, ids: int = 1) -> tuple[str, list[Unit]]:
    """(caller, units) for --rpc: the single-call RPCs as one-call units; the nurse renewal
    as one CheckItem call or as its requirements asked one by one."""
    if rpc == "household-http":  # the same requests as proto3 JSON for the HTTP/JSON door
        caller, bodies = request_bodies("household", ids)
        return caller, [
            [(HTTP_HOUSEHOLD, json_format.MessageToJson(pb.RecordRequest.FromString(b)).encode())]
            for b in bodies
        ]
    if rpc in ("household", "claims"):
        caller, bodies = request_bodies(rpc, ids)
        method = SERVICE + ("GetHouseholdRecord" if rpc == "household" else "VerifyClaims")
        return caller, [[(method, b)] for b in bodies]
    nurse = scenarios()["nurse_renewal_due"]
    ctx = pb.RequestContext(service_item=NURSE_ITEM, case_id="BENCH-2026-000002")
    applicant = pb.Applicant(id_number=nurse)
    if rpc == "item":
        body = pb.CheckItemRequest(context=ctx, applicant=applicant).SerializeToString()
        return NURSE_CALLER, [[(SERVICE + "CheckItem", body)]]
    # the same requirements as deploy/config/policy.toml [items.nurse-renewal.requires]
    claims = [
        ("registration", "nurse.registration_valid", {"employer_matches": "true"}),
        ("due", "nurse.renewal_due", {"within_days": "30"}),
        ("resident", "household.residence", {"region": "350000"}),
        ("still_working", "social_security.contribution", {"min_months": "12"}),
        ("insured", "medical_insurance.enrolled", {"scheme": "employee"}),
    ]
    unit: Unit = [
        (
            SERVICE + "VerifyClaims",
            pb.VerifyClaimsRequest(
                context=ctx,
                applicant=applicant,
                claims=[pb.Claim(id=cid, type=kind, params=params)],
            ).SerializeToString(),
        )
        for cid, kind, params in claims
    ]
    form = pb.EvidenceRequest(context=ctx, applicant=applicant, evidence_type="nurse")
    form.read_mask.paths.extend(["certificate_number", "employer", "category", "valid_until"])
    unit.append((SERVICE + "GetEvidence", form.SerializeToString()))
    return NURSE_CALLER, [unit]


def request_bodies(rpc: str, ids: int = 1) -> tuple[str, list[bytes]]:
    """(caller, serialized requests) for the RPC measured: GetHouseholdRecord for `ids`
    applicants of the bench population (1: the household head only); VerifyClaims for its
    one scenario applicant (the three departments agree on few people)."""
    s = scenarios()
    ctx = pb.RequestContext(case_id="BENCH-2026-000001", purpose="benchmark")
    if rpc == "household":
        ctx.service_item = RECORD_ITEM
        bodies = []
        for idn in [s["household_head"]] if ids <= 1 else applicant_ids(ids):
            req = pb.RecordRequest(context=ctx, applicant=pb.Applicant(id_number=idn))
            req.read_mask.paths.extend(RECORD_FIELDS)
            bodies.append(req.SerializeToString())
        return RECORD_CALLER, bodies
    ctx.service_item = CLAIMS_ITEM
    claims = pb.VerifyClaimsRequest(
        context=ctx,
        applicant=pb.Applicant(id_number=s["long_contributor"]),
        claims=[
            pb.Claim(id="lives", type="household.residence", params={"region": "350000"}),
            pb.Claim(id="house", type="property.ownership", params={"owns": "false"}),
            pb.Claim(id="paid", type="social_security.contribution", params={"min_months": "12"}),
        ],
    )
    return CLAIMS_CALLER, [claims.SerializeToString()]


def credentials(pki: DevPki, caller: str) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=pki.ca_pem.read_bytes(),
        private_key=pki.client_key(caller).read_bytes(),
        certificate_chain=pki.client_pem(caller).read_bytes(),
    )


class Window:
    """What happened between `open()` and `close()`: calls, errors, latencies, CPU."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = {**pids, "client": os.getpid()}
        self.measuring = False
        self.latencies: list[float] = []
        self.errors: dict[str, int] = {}
        self.start = self.end = 0.0
        self.cpu0: dict[str, float] = {}
        self.cpu1: dict[str, float] = {}

    def open(self) -> None:
        self.cpu0 = {k: cpu_seconds(p) for k, p in self.pids.items()}
        self.start = time.perf_counter()
        self.measuring = True

    def close(self) -> None:
        self.measuring = False
        self.end = time.perf_counter()
        self.cpu1 = {k: cpu_seconds(p) for k, p in self.pids.items()}

    def record(self, latency: float, error: str | None) -> None:
        if not self.measuring:
            return
        if error is None:
            self.latencies.append(latency)
        else:
            self.errors[error] = self.errors.get(error, 0) + 1

    def report(self) -> dict[str, Any]:
        elapsed = self.end - self.start
        lat = sorted(self.latencies)

        def pct(q: float) -> float:
            return lat[min(len(lat) - 1, int(q * len(lat)))] * 1e3 if lat else float("nan")

        cpu = {k: (self.cpu1[k] - self.cpu0[k]) / elapsed for k in self.pids}
        ok = len(lat)
        server_cpu = self.cpu1.get("server", 0.0) - self.cpu0.get("server", 0.0)
        return {
            "seconds": elapsed,
            "ok": ok,
            "errors": self.errors,
            "rps": ok / elapsed,
            "p50_ms": pct(0.50),
            "p90_ms": pct(0.90),
            "p99_ms": pct(0.99),
            "mean_ms": statistics.fmean(lat) * 1e3 if lat else float("nan"),
            "cpu": cpu,  # cores busy, per process
            "server_us_per_call": server_cpu / ok * 1e6 if ok else float("nan"),
        }


async def _call(
    call: dict[str, Any],
    unit: Unit,
    window: Window,
    timeout: float,  # noqa: ASYNC109 - the gRPC call's own deadline, passed through
    started: float | None = None,
) -> None:
    """One unit of work on one channel (`call`: method → its callable): its calls sent
    together; the unit's latency is the slowest's, an error in any fails the unit."""
    t0 = time.perf_counter() if started is None else started
    try:
        if len(unit) == 1:
            method, body = unit[0]
            await call[method](body, timeout=timeout)
        else:
            await asyncio.gather(*(call[m](b, timeout=timeout) for m, b in unit))
    except (grpc.aio.AioRpcError, HttpError) as err:
        window.record(0.0, err.code().name)
        return
    except aiohttp.ClientError as err:
        window.record(0.0, type(err).__name__)
        return
    window.record(time.perf_counter() - t0, None)


async def closed_loop(
    calls: list[dict[str, Any]], bodies: list[Unit], args: argparse.Namespace, w: Window
) -> None:
    stop = False
    sent = 0

    async def worker(call: Any) -> None:
        nonlocal sent
        while not stop:
            sent += 1
            await _call(call, bodies[sent % len(bodies)], w, args.timeout)

    workers = [asyncio.create_task(worker(calls[i % len(calls)])) for i in range(args.concurrency)]
    await asyncio.sleep(args.warmup)
    w.open()
    await asyncio.sleep(args.seconds)
    w.close()
    stop = True
    await asyncio.gather(*workers)


async def open_loop(
    calls: list[dict[str, Any]], bodies: list[Unit], args: argparse.Namespace, w: Window
) -> None:
    """`rate` calls per second on a fixed schedule; latency counts from the scheduled time,
    so a client that falls behind shows it instead of hiding it."""
    interval = 1.0 / args.rate
    pending: set[asyncio.Task[None]] = set()
    begin = time.perf_counter()
    end_warmup = begin + args.warmup
    end = end_warmup + args.seconds
    n = 0
    opened = False
    while True:
        due = begin + n * interval
        now = time.perf_counter()
        if not opened and now >= end_warmup:
            w.open()
            opened = True
        if due >= end:
            break
        if due > now:
            await asyncio.sleep(due - now)
        body = bodies[n % len(bodies)]
        task = asyncio.create_task(_call(calls[n % len(calls)], body, w, args.timeout, due))
        pending.add(task)
        task.add_done_callback(pending.discard)
        n += 1
    await asyncio.gather(*pending)
    w.close()


async def held(
    calls: list[dict[str, Any]], bodies: list[Unit], args: argparse.Namespace, w: Window
) -> None:
    """Memory: `concurrency` calls in flight at once (the server holds each), RSS sampled
    while they are held; prints the server's RSS before and during."""
    rss0 = rss_kib(w.pids["server"])
    tasks = [
        asyncio.create_task(_call(calls[i % len(calls)], bodies[i % len(bodies)], w, args.timeout))
        for i in range(args.concurrency)
    ]
    w.open()
    await asyncio.sleep(args.seconds)
    rss1 = rss_kib(w.pids["server"])
    await asyncio.gather(*tasks)
    w.close()
    w.rss = (rss0, rss1)  # type: ignore[attr-defined]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class HttpError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status

    def code(self) -> Any:
        return self  # named like grpc's StatusCode for Window.record: `.name`

    @property
    def name(self) -> str:
        return f"HTTP_{self.status}"


def http_caller(session: aiohttp.ClientSession, base: str, path: str) -> Any:
    """A callable like grpc's unary_unary(method): POST the pre-encoded JSON body."""
    url = base + path

    async def call(body: bytes, timeout: float) -> bytes:  # noqa: ASYNC109 - as grpc's
        headers = {"content-type": "application/json", "grpc-timeout": f"{int(timeout)}S"}
        async with session.post(url, data=body, headers=headers) as reply:
            data = await reply.read()
            if reply.status != 200:
                raise HttpError(reply.status)
            return data

    return call


async def main(args: argparse.Namespace) -> dict[str, Any]:
    if args.rpc.endswith("-http"):
        return await main_http(args)
    return await main_grpc(args)


async def main_http(args: argparse.Namespace) -> dict[str, Any]:
    pki = DevPki(Path(args.workdir) / "pki")
    caller, bodies = request_units(args.rpc, args.ids)
    ctx = ssl.create_default_context(cafile=str(pki.ca_pem))
    ctx.load_cert_chain(str(pki.client_pem(caller)), str(pki.client_key(caller)))
    ctx.check_hostname = False  # the dev server certificate names localhost
    connector = aiohttp.TCPConnector(ssl=ctx, limit=args.concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        base = f"https://127.0.0.1:{args.port}"
        calls = [{HTTP_HOUSEHOLD: http_caller(session, base, HTTP_HOUSEHOLD)}]
        pids = dict(kv.split("=") for kv in args.pids.split(",") if kv)
        w = Window({k: int(v) for k, v in pids.items()})
        await closed_loop(calls, bodies, args, w)
        out = w.report()
        out.update(mode=args.mode, concurrency=args.concurrency, channels=1, ids=len(bodies))
        return out


async def main_grpc(args: argparse.Namespace) -> dict[str, Any]:
    pki = DevPki(Path(args.workdir) / "pki")
    caller, bodies = request_units(args.rpc, args.ids)
    creds = credentials(pki, caller)
    options = [("grpc.ssl_target_name_override", "localhost")]
    channels = [
        grpc.aio.secure_channel(f"127.0.0.1:{args.port}", creds, options=options)
        for _ in range(args.channels)
    ]
    try:
        for ch in channels:
            await asyncio.wait_for(ch.channel_ready(), CONNECT_TIMEOUT_S)
        methods = {m for unit in bodies for m, _ in unit}
        calls = [{m: ch.unary_unary(m) for m in methods} for ch in channels]
        pids = dict(kv.split("=") for kv in args.pids.split(",") if kv)
        w = Window({k: int(v) for k, v in pids.items()})
        if args.mode == "closed":
            await closed_loop(calls, bodies, args, w)
        elif args.mode == "open":
            await open_loop(calls, bodies, args, w)
        else:
            await held(calls, bodies, args, w)
        out = w.report()
        if hasattr(w, "rss"):
            out["rss_kib"] = list(w.rss)
        out.update(
            mode=args.mode, concurrency=args.concurrency, channels=args.channels, ids=len(bodies)
        )
        if args.mode == "open":
            out["rate"] = args.rate
        return out
    finally:
        for ch in channels:
            await ch.close()


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--rpc", choices=RPCS, default="household")
    parser.add_argument("--mode", choices=("closed", "open", "held"), default="closed")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--channels", type=int, default=4)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument(
        "--ids", type=int, default=512, help="GetHouseholdRecord: applicants cycled through"
    )
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--pids", default="", help="name=pid,... whose CPU to report")
    parser.add_argument("--uvloop", action="store_true")
    args = parser.parse_args()
    if args.uvloop:
        import uvloop  # noqa: PLC0415 - optional, only with --uvloop

        result = uvloop.run(main(args))
    else:
        result = asyncio.run(main(args))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    run()
