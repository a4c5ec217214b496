"""Soak: the gateway under steady load for minutes, as real processes.

    python -m tests.e2e.soak --minutes 10            # what `make soak` runs
    python -m tests.e2e.soak --minutes 1 --rate 300  # a fixed rate instead of 70% of capacity

Starts the department simulators and the gateway as subprocesses (a fresh dev PKI and state
directory under a temporary directory), measures capacity with a short closed-loop burst, then
paces requests at ~70% of it, sampling the gateway's RSS. Prints a table and a JSON line:
requests, errors by status, latency percentiles, RSS at the start of the steady phase and at
the end, and the growth in percent (target ≤ 10%).

The process helpers here (`ProcessStack`, `write_config`, ...) are shared with the other
end-to-end tests (crash, lifecycle, hostile input): one way to run Proofless as processes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request
from collections import Counter
from collections.abc import Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from adapters.simulators.datagen import generate
from gateway.config import merge_tables
from gateway.pki import DevPki, init_dev_pki
from proofless.v1 import verification_pb2 as pb
from proofless.v1 import verification_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parents[2]
DEV_CONFIG = ROOT / "deploy" / "config" / "gateway.toml"
POLICY = ROOT / "deploy" / "config" / "policy.toml"
SEED = 20261121
POPULATION = 300
START_TIMEOUT_S = 30.0


# ---- running Proofless as processes -----------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML for {type(value).__name__}")


def dump_toml(data: Mapping[str, Any], prefix: str = "") -> str:
    """Enough TOML for a gateway configuration: tables of scalars, lists and inline tables."""
    scalars = [f"{k} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, Mapping)]
    out = ([f"[{prefix}]"] if prefix and scalars else []) + scalars
    for key, value in data.items():
        if isinstance(value, Mapping):
            out.append(dump_toml(value, f"{prefix}.{key}" if prefix else key))
    return "\n".join(out) + "\n"


def fast_policy(dest: Path) -> Path:
    """The dev policy with every rate limit lifted: these tests load the gateway on purpose."""
    text = re.sub(
        r"rate = \{[^}]*\}", "rate = { per_second = 1000000, burst = 1000000 }", POLICY.read_text()
    )
    dest.write_text(text)
    return dest


@dataclass
class ProcessStack:
    """Where a process-run Proofless lives: its configuration, ports and directories."""

    pki: DevPki
    state: Path
    config_path: Path
    raw: dict[str, Any]
    grpc_port: int
    ops_port: int
    logs: Path
    simulators: subprocess.Popen[bytes] | None = None
    gateway: subprocess.Popen[bytes] | None = None
    _starts: int = field(default=0)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def audit_dir(self) -> Path:
        return Path(self.raw["audit"]["dir"])

    def credentials(self, caller: str) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.pki.ca_pem.read_bytes(),
            private_key=self.pki.client_key(caller).read_bytes(),
            certificate_chain=self.pki.client_pem(caller).read_bytes(),
        )

    def channel(self, caller: str, *, quick_reconnect: bool = False) -> grpc.aio.Channel:
        """A channel as `caller`; `quick_reconnect` for tests that restart the gateway (grpc
        otherwise waits a second or more before it tries a dead address again)."""
        options = (
            [
                ("grpc.initial_reconnect_backoff_ms", 50),
                ("grpc.min_reconnect_backoff_ms", 50),
                ("grpc.max_reconnect_backoff_ms", 200),
            ]
            if quick_reconnect
            else []
        )
        return grpc.aio.secure_channel(self.address, self.credentials(caller), options=options)

    def _spawn(self, command: str, name: str) -> subprocess.Popen[bytes]:
        self._starts += 1
        log = (self.logs / f"{name}-{self._starts}.log").open("wb")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "grpc_proxy"):
            env.pop(var, None)
        return subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", command, "--config", str(self.config_path)],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )

    def start_simulators(self) -> None:
        self.simulators = self._spawn("simulators", "simulators")
        for url in (
            self.raw["departments"]["household"]["url"],
            self.raw["departments"]["social_security"]["url"],
        ):
            _wait_for(lambda u=url: _http_status(u + "/health") is not None, self.simulators)
        dsn = self.raw["departments"]["property"]["dsn"]
        _wait_for(lambda: Path(dsn.removeprefix("sqlite:///")).exists(), self.simulators)

    def start_gateway(self) -> subprocess.Popen[bytes]:
        self.gateway = self._spawn("serve", "gateway")
        _wait_for(lambda: self.ops_status("/readyz") == 200, self.gateway)
        return self.gateway

    def ops_status(self, path: str) -> int | None:
        return _http_status(f"http://127.0.0.1:{self.ops_port}{path}")

    def kill_gateway(self, sig: int = signal.SIGKILL) -> int:
        assert self.gateway is not None
        self.gateway.send_signal(sig)
        return self.gateway.wait(timeout=30)

    def stop(self) -> None:
        for proc in (self.gateway, self.simulators):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    def log_text(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}"
            for p in sorted(self.logs.glob("*.log"))
        )


def _http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
    except OSError:
        return None


def _wait_for(ready: Any, proc: subprocess.Popen[bytes]) -> None:
    until = time.monotonic() + START_TIMEOUT_S
    while not ready():
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} while starting")
        if time.monotonic() > until:
            raise RuntimeError("process did not become ready in time")
        time.sleep(0.05)


def write_config(
    base: Path, *, pki: DevPki | None = None, overrides: Mapping[str, Any] | None = None
) -> ProcessStack:
    """A dev PKI (unless given), a state directory and a gateway TOML under `base`, all on
    free loopback ports, with rate limits lifted."""
    pki = pki or init_dev_pki(base / "pki")
    state = base / "state"
    logs = base / "logs"
    state.mkdir(parents=True, exist_ok=True)
    logs.mkdir(exist_ok=True)
    grpc_port, ops_port, hh_port, ss_port = (free_port() for _ in range(4))
    raw = merge_tables(
        merge_tables(tomllib.loads(DEV_CONFIG.read_text()), pki.config_overrides()),
        {
            "server": {
                "listen": f"127.0.0.1:{grpc_port}",
                "ops_listen": f"127.0.0.1:{ops_port}",
                "grace_seconds": 5,
            },
            "audit": {"dir": str(state / "audit"), "checkpoint_every_ms": 200},
            "policy": {"file": str(fast_policy(base / "policy.toml"))},
            "departments": {
                "household": {"url": f"http://127.0.0.1:{hh_port}"},
                "social_security": {"url": f"http://127.0.0.1:{ss_port}"},
                "property": {"dsn": f"sqlite:///{state / 'frontdb' / 'property.sqlite3'}"},
            },
            "simulators": {
                "population": POPULATION,
                "seed": SEED,
                "household_listen": f"127.0.0.1:{hh_port}",
                "social_security_listen": f"127.0.0.1:{ss_port}",
            },
            "ratelimit": {"backend": "local"},
        },
    )
    raw = merge_tables(raw, overrides or {})
    config_path = base / "gateway.toml"
    config_path.write_text(dump_toml(raw))
    return ProcessStack(
        pki=pki,
        state=state,
        config_path=config_path,
        raw=raw,
        grpc_port=grpc_port,
        ops_port=ops_port,
        logs=logs,
    )


@contextlib.contextmanager
def process_stack(
    base: Path, *, pki: DevPki | None = None, overrides: Mapping[str, Any] | None = None
) -> Iterator[ProcessStack]:
    """Simulators and gateway running as subprocesses; both stopped (SIGTERM) on exit."""
    stack = write_config(base, pki=pki, overrides=overrides)
    try:
        stack.start_simulators()
        stack.start_gateway()
        yield stack
    finally:
        stack.stop()


def rss_kib(pid: int) -> int:
    """Resident set size of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


# ---- the load ---------------------------------------------------------------------------------


class Workload:
    """A realistic mix of approval-system calls over two callers' channels."""

    def __init__(self, stack: ProcessStack) -> None:
        population = generate(SEED, POPULATION)
        self.ids = sorted(population.people)
        self.window = pb_grpc.VerificationServiceStub(stack.channel("quangang-window"))
        self.hrss = pb_grpc.VerificationServiceStub(stack.channel("fuan-hrss"))
        self._n = 0

    async def one(self, rng: random.Random, deadline_s: float = 5.0) -> Any:
        """One call; returns the response or raises grpc.aio.AioRpcError. NOT_FOUND is an
        answer (not every synthetic citizen is known to every department). Social security
        is one call in eight: its simulator pages decades of history and would otherwise
        measure itself rather than the gateway."""
        self._n += 1
        idn = rng.choice(self.ids)
        applicant = pb.Applicant(id_number=idn)
        case = f"SOAK-{self._n:09d}"
        kind = (0, 0, 0, 1, 1, 3, 3, 2)[self._n % 8]
        if kind == 0:
            ctx = pb.RequestContext(service_item="housing-transfer", case_id=case, purpose="soak")
            return await self.window.GetPropertyRecords(
                pb.RecordRequest(context=ctx, applicant=applicant), timeout=deadline_s
            )
        if kind == 1:
            ctx = pb.RequestContext(service_item="housing-transfer", case_id=case, purpose="soak")
            return await self.window.GetHouseholdRecord(
                pb.RecordRequest(context=ctx, applicant=applicant), timeout=deadline_s
            )
        if kind == 2:
            ctx = pb.RequestContext(service_item="retirement", case_id=case, purpose="soak")
            return await self.hrss.GetSocialSecurityRecord(
                pb.RecordRequest(context=ctx, applicant=applicant), timeout=deadline_s
            )
        ctx = pb.RequestContext(service_item="housing-transfer", case_id=case, purpose="soak")
        return await self.window.VerifyClaims(
            pb.VerifyClaimsRequest(
                context=ctx,
                applicant=applicant,
                claims=[
                    pb.Claim(id="a", type="property.ownership", params={"owns": "false"}),
                    pb.Claim(id="b", type="household.residence", params={"region": "350000"}),
                ],
            ),
            timeout=deadline_s,
        )


@dataclass
class Tally:
    ok: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)

    async def call(self, work: Workload, rng: random.Random) -> None:
        t0 = time.perf_counter()
        try:
            await work.one(rng)
        except grpc.aio.AioRpcError as err:
            if err.code() != grpc.StatusCode.NOT_FOUND:
                self.errors[err.code().name] += 1
                return
        self.ok += 1
        self.latencies.append(time.perf_counter() - t0)


async def closed(work: Workload, callers: int, seconds: float, tally: Tally) -> None:
    """Closed loop: `callers` callers, each starting its next call when its last one ends."""
    rng = random.Random(1)
    stop = time.monotonic() + seconds

    async def caller() -> None:
        while time.monotonic() < stop:
            await tally.call(work, rng)

    await asyncio.gather(*(caller() for _ in range(callers)))


async def measure_capacity(work: Workload, seconds: float, concurrency: int = 32) -> float:
    """Completed calls per second with `concurrency` callers that never wait."""
    tally = Tally()
    t0 = time.monotonic()
    await closed(work, concurrency, seconds, tally)
    return (tally.ok + sum(tally.errors.values())) / (time.monotonic() - t0)


async def paced(work: Workload, rate: float, seconds: float, tally: Tally) -> None:
    """Open loop: start a call every 1/rate seconds, whatever the previous ones are doing."""
    rng = random.Random(2)
    pending: set[asyncio.Task[None]] = set()
    start = time.monotonic()
    n = 0
    while (now := time.monotonic()) - start < seconds:
        due = int((now - start) * rate) + 1
        while n < due:
            task = asyncio.create_task(tally.call(work, rng))
            pending.add(task)
            task.add_done_callback(pending.discard)
            n += 1
        await asyncio.sleep(0.005)
    await asyncio.gather(*pending)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run_soak(
    stack: ProcessStack,
    *,
    seconds: float,
    rate: float | None,
    callers: int | None = None,
    warmup_s: float = 10.0,
) -> dict[str, Any]:
    """Open loop at `rate` (or 70 % of the measured capacity), or with `callers` given, a
    closed loop of that many callers: its load follows the machine's speed, so a slow minute
    lengthens calls instead of queueing them past their deadlines."""
    assert stack.gateway is not None
    pid = stack.gateway.pid
    work = Workload(stack)
    capacity = await measure_capacity(work, 5.0)
    target = None if callers is not None else rate if rate is not None else round(0.7 * capacity)

    def load_for(duration: float, tally: Tally) -> Coroutine[Any, Any, None]:
        if callers is not None:
            return closed(work, callers, duration, tally)
        assert target is not None
        return paced(work, target, duration, tally)

    # Warm-up under the same load: caches, pools and allocator arenas settle before the baseline.
    await load_for(warmup_s, Tally())
    rss_start = rss_kib(pid)
    samples = [rss_start]
    tally = Tally()
    load = asyncio.create_task(load_for(seconds, tally))
    while not load.done():
        await asyncio.wait([load], timeout=5.0)
        samples.append(rss_kib(pid))
    await load
    rss_end = rss_kib(pid)
    requests = tally.ok + sum(tally.errors.values())
    return {
        "seconds": seconds,
        "capacity_rps": round(capacity, 1),
        "target_rps": target,
        "callers": callers,
        "achieved_rps": round(requests / seconds, 1),
        "requests": requests,
        "errors": sum(tally.errors.values()),
        "errors_by_code": dict(tally.errors),
        "latency_ms": {
            "p50": round(percentile(tally.latencies, 0.50) * 1000, 2),
            "p99": round(percentile(tally.latencies, 0.99) * 1000, 2),
            "max": round(max(tally.latencies, default=0.0) * 1000, 2),
            "median_all": round(statistics.median(tally.latencies or [0.0]) * 1000, 2),
        },
        "rss_kib_start": rss_start,
        "rss_kib_end": rss_end,
        "rss_kib_max": max(samples),
        "rss_growth_percent": round(100.0 * (rss_end - rss_start) / rss_start, 2),
        "audit_entries": _audit_size(stack),
    }


def _audit_size(stack: ProcessStack) -> int:
    return sum(p.read_bytes().count(b"\n") for p in (stack.audit_dir / "entries").glob("*.jsonl"))


def table(result: Mapping[str, Any]) -> str:
    rows = [
        ("duration", f"{result['seconds']:.0f} s"),
        ("capacity (closed loop, 32 callers)", f"{result['capacity_rps']} req/s"),
        (
            ("target rate", f"{result['target_rps']} req/s")
            if result.get("callers") is None
            else ("load", f"closed loop, {result['callers']} callers")
        ),
        ("achieved rate", f"{result['achieved_rps']} req/s"),
        ("requests", str(result["requests"])),
        ("errors", f"{result['errors']} {result['errors_by_code'] or ''}".strip()),
        ("latency p50 / p99 / max", "{p50} / {p99} / {max} ms".format(**result["latency_ms"])),
        ("gateway RSS start → end", f"{result['rss_kib_start']} → {result['rss_kib_end']} KiB"),
        ("gateway RSS max", f"{result['rss_kib_max']} KiB"),
        ("RSS growth", f"{result['rss_growth_percent']} % (target ≤ 10 %)"),
        ("audit entries", str(result["audit_entries"])),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def soak(
    seconds: float,
    rate: float | None,
    base: Path | None = None,
    callers: int | None = None,
) -> dict[str, Any]:
    """Soak for `seconds` at `rate` requests/s, or at 70 % of the capacity measured first, or
    with `callers` closed-loop callers."""
    with contextlib.ExitStack() as exits:
        if base is None:
            base = Path(exits.enter_context(tempfile.TemporaryDirectory(prefix="soak-")))
        with process_stack(base) as stack:
            return asyncio.run(run_soak(stack, seconds=seconds, rate=rate, callers=callers))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.e2e.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0, help="steady phase (default 10)")
    parser.add_argument("--rate", type=float, help="requests/s (default: 70%% of capacity)")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "grpc_proxy"):
        os.environ.pop(var, None)
    result = soak(args.minutes * 60, args.rate)
    print(table(result))
    print(json.dumps(result, ensure_ascii=False))
    if args.json:
        args.json.write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n")
    ok = result["errors"] == 0 and result["rss_growth_percent"] <= 10.0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
