"""`python -m bench [--quick] [--rounds N] [--seconds S]`: Proofless against bare grpc.aio.

Servers run pinned to core 0, the load generator (and the department simulators) to core 1.
Baseline and gateway are measured interleaved (forward order, then reverse: A B B A), several
rounds of a few seconds each, and every ratio is taken within a round, then summarised as
min/median/max: this machine's speed drifts 10-20% from minute to minute. Prints a table and
writes bench/results.json. See BENCHMARKS.md for the method and the last results.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import cel, micro
from bench.procs import CLIENT_CORE, SERVER_CORE, Server, run_client, start_server
from bench.setup import prepare

RESULTS = Path(__file__).resolve().parent / "results.json"
# name → (server, rpc): the throughput figures, in the order of a forward round.
FIGURES = {
    "b0": ("b0", "household"),
    "gw_mem": ("gw-mem", "household"),
    # the same two servers on uvloop (the loop `proofless serve` runs on)
    "b0_uvloop": ("b0-uvloop", "household"),
    "gw_mem_uvloop": ("gw-mem-uvloop", "household"),
    # the same server and call through the HTTP/JSON door (HTTP/1.1, keep-alive, mutual TLS)
    "gw_mem_http": ("gw-mem", "household-http"),
    # the transport's floor for the department call: an unsigned pooled POST, nothing parsed
    "b1_raw": ("b1-raw", "household"),
    "b1": ("b1", "household"),
    "gw_http": ("gw-http", "household"),
    "gw_claims": ("gw-http", "claims"),
    # the nurse renewal over four departments: one CheckItem, and its requirements asked one
    # call each (five VerifyClaims and a GetEvidence, sent together)
    "gw_item": ("gw-http", "item"),
    "gw_item_separate": ("gw-http", "item-separate"),
}
TARGETS = {
    "gw_mem/b0": 0.50,
    "gw_mem/b0 on uvloop": 0.50,
    "gw_http/b1": 0.80,
    # (B1 − B0) ÷ (B1-raw − B0): the department call against the bare transport, at most
    "department_call/raw_transport": 1.5,
    # gw-mem − B0, server µs per call: the gateway's own work, at most
    "gateway_own_us": 250,
    "added_p50_ms": 1.0,
    # the `--workers 2 ÷ 1` ratio against the machine's bound: within 5 %
    "workers_2/1 ÷ machine bound": 0.95,
    "item/separate": 1.0,  # at most: one call must cost less than the separate ones
    "verify_claims/record": 1.8,  # at most (issue: VerifyClaims over three ≤ 1.8× one record)
}
AT_MOST = (
    "added_p50_ms",
    "item/separate",
    "verify_claims/record",
    "department_call/raw_transport",
    "gateway_own_us",
)
#: server name → (server kind of bench.servers, extra arguments)
SERVERS = {
    "b0": ("b0", []),
    "b0-uvloop": ("b0", ["--uvloop"]),
    "b1-raw": ("b1-raw", []),
    "b1": ("b1", []),
    "gw-mem": ("gw-mem", []),
    "gw-mem-uvloop": ("gw-mem", ["--uvloop"]),
    "gw-http": ("gw-http", []),
}


def summary(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def machine() -> dict[str, Any]:
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break

    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "absent"

    from google.protobuf.internal import api_implementation  # noqa: PLC0415 - reporting only

    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "grpcio": version("grpcio"),
        "protobuf": version("protobuf"),
        "protobuf_backend": api_implementation.Type(),
        "cryptography": version("cryptography"),
        "aiohttp": version("aiohttp"),
        "uvloop": version("uvloop"),
        "kernel": platform.release(),
        "taskset": bool(shutil.which("taskset")),
    }


def throughput_rounds(
    work: Path, servers: dict[str, Server], sims: Server, args: argparse.Namespace
) -> dict[str, list[dict[str, Any]]]:
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in FIGURES}
    order = list(FIGURES)
    for r in range(args.rounds):
        for name in order if r % 2 == 0 else reversed(order):
            server_name, rpc = FIGURES[name]
            server = servers[server_name]
            pids = {"server": server.pid}
            if server_name in ("b1", "b1-raw", "gw-http"):
                pids["sims"] = sims.pid
            port = int(server.info["http_port"]) if rpc.endswith("-http") else server.port
            result = run_client(
                work,
                port,
                pids,
                rpc=rpc,
                seconds=args.seconds,
                warmup=args.warmup,
                concurrency=args.concurrency,
                channels=args.channels,
                ids=args.ids,
            )
            result["round"] = r
            runs[name].append(result)
            print(
                f"  round {r + 1}/{args.rounds} {name:9s} {result['rps']:8.0f} req/s  "
                f"server {result['cpu']['server']:.2f} core  client {result['cpu']['client']:.2f}"
                f"  errors {sum(result['errors'].values())}",
                flush=True,
            )
    return runs


def latency_rounds(
    work: Path, servers: dict[str, Server], sims: Server, rate: float, args: argparse.Namespace
) -> dict[str, list[dict[str, Any]]]:
    runs: dict[str, list[dict[str, Any]]] = {"b1": [], "gw_http": []}
    order = [("b1", "b1"), ("gw_http", "gw-http")]
    for r in range(args.rounds):
        for name, server_name in order if r % 2 == 0 else list(reversed(order)):
            server = servers[server_name]
            result = run_client(
                work,
                server.port,
                {"server": server.pid, "sims": sims.pid},
                mode="open",
                rate=f"{rate:.1f}",
                seconds=args.seconds,
                warmup=args.warmup,
                channels=args.channels,
                ids=args.ids,
            )
            runs[name].append(result)
            print(
                f"  round {r + 1}/{args.rounds} {name:9s} at {rate:.0f} req/s: "
                f"p50 {result['p50_ms']:.2f} ms  p99 {result['p99_ms']:.2f} ms",
                flush=True,
            )
    return runs


def memory_rounds(work: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    """RSS growth of a gateway holding `held` requests in flight (its department sleeps)."""
    runs = []
    slow = start_server(
        "gw-held", "gw-mem", work, core=SERVER_CORE, extra=["--delay-ms", str(args.hold_ms)]
    )
    try:
        for r in range(max(2, args.rounds)):
            result = run_client(
                work,
                slow.port,
                {"server": slow.pid},
                mode="held",
                concurrency=args.held,
                channels=max(4, args.held // 200),
                seconds=args.hold_ms / 1000 * 0.7,
                timeout=args.hold_ms / 1000 + 30,
                # one applicant: the held calls join one department call; distinct ones
                # would meet the household bulkhead, which refuses beyond its size
                ids=1,
            )
            rss0, rss1 = result["rss_kib"]
            result["kib_per_1000"] = (rss1 - rss0) / args.held * 1000
            print(
                f"  round {r + 1} memory: RSS {rss0 / 1024:.1f} MiB idle, {rss1 / 1024:.1f} MiB "
                f"with {args.held} in flight ({result['ok']} answered)",
                flush=True,
            )
            runs.append(result)
    finally:
        slow.stop()
    # The first round also grows the allocator's arenas and grpc's pools once.
    return runs[1:]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children(pid: int) -> list[int]:
    """The child processes of `pid` (the workers `proofless serve --workers N` started)."""
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _machine_bound(one: dict[str, Any], two: dict[str, Any]) -> float:
    """The most `--workers 2` could gain over `--workers 1` on this machine, given what each
    call costs everyone: all cores ÷ (gateway + client + simulators CPU per call, measured in
    the 2-worker run) ÷ the 1-worker rate. The client and the simulators share the cores."""
    cores = os.cpu_count() or 1
    cpu_per_call = sum(two["cpu"].values()) / two["rps"]
    return cores / cpu_per_call / one["rps"]


def workers_rounds(work: Path, sims: Server, args: argparse.Namespace) -> dict[str, Any] | None:
    """`proofless serve --workers N` for N = 1, 2, against the HTTP departments. Nothing is
    pinned: the workers need both cores (the client and simulators share them). Each run
    reports the cores the gateway (supervisor and workers), the client and the simulators
    used, and each round the machine's bound on the ratio (`_machine_bound`)."""
    proofless = Path(sys.executable).parent / "proofless"
    help_text = subprocess.run(
        [str(proofless), "serve", "--help"], capture_output=True, text=True, check=False
    ).stdout
    if "--workers" not in help_text:
        return None
    raw = json.loads((work / "gateway.json").read_text())
    sims_info = sims.info
    runs: dict[str, list[float]] = {"1": [], "2": []}
    results: dict[str, list[dict[str, Any]]] = {"1": [], "2": []}
    for n in ("1", "2") * args.rounds:
        port = _free_port()
        env = dict(os.environ)
        flat = {
            "SERVER__LISTEN": f"127.0.0.1:{port}",
            "SERVER__OPS_LISTEN": f"127.0.0.1:{_free_port()}",
            "SERVER__HTTP_LISTEN": '""',
            "SERVER__MAX_IN_FLIGHT": "8192",
            "TLS__CA": raw["tls"]["ca"],
            "TLS__CERT": raw["tls"]["cert"],
            "TLS__KEY": raw["tls"]["key"],
            "TLS__CRL": raw["tls"]["crl"],
            "PROOFS__SIGNING_KEY": raw["proofs"]["signing_key"],
            "AUDIT__DIR": str(work / f"audit-workers-{n}-{time.monotonic_ns()}"),
            "AUDIT__NOTE_KEY": raw["audit"]["note_key"],
            "AUDIT__PEPPER_FILE": raw["audit"]["pepper_file"],
            "POLICY__FILE": raw["policy"]["file"],
            "CATALOGUE__DIR": raw["catalogue"]["dir"],
            "DEPARTMENTS__HOUSEHOLD__ENDPOINT": f'"{sims_info["household_url"]}"',
            "DEPARTMENTS__SOCIAL_SECURITY__ENDPOINT": f'"{sims_info["social_security_url"]}"',
            "DEPARTMENTS__PROPERTY__ENDPOINT": f'"{sims_info["property_dsn"]}"',
            "CONSENT__ISSUERS_JWKS": raw["consent"]["issuers_jwks"],
        }
        # every department's credential files, from the bench's own dev PKI
        for code, table in raw["departments"].items():
            for key, path in table.get("auth", {}).items():
                flat[f"DEPARTMENTS__{code.upper()}__AUTH__{key.upper()}"] = f'"{path}"'
        env.update({f"PROOFLESS__{k}": v for k, v in flat.items()})
        log = (work / f"workers-{n}.log").open("w")
        proc = subprocess.Popen(
            [str(proofless), "serve", "--workers", n],  # logging as served: access log on
            stdout=log,
            stderr=log,
            env=env,
            cwd=Path(__file__).resolve().parent.parent,
        )
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    time.sleep(0.2)
            time.sleep(1.0)  # every worker listening
            pids = {"server": proc.pid, "sims": sims.pid}
            pids.update({f"worker{i}": pid for i, pid in enumerate(_children(proc.pid))})
            result = run_client(
                work,
                port,
                pids,
                seconds=args.seconds,
                warmup=args.warmup,
                concurrency=args.concurrency * 2,
                channels=args.channels * 2,
                unpinned=True,
            )
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        runs[n].append(result["rps"])
        results[n].append(result)
        cpu = result["cpu"]
        gateway = sum(v for k, v in cpu.items() if k == "server" or k.startswith("worker"))
        print(
            f"  --workers {n}: {result['rps']:.0f} req/s; cores busy: gateway {gateway:.2f}, "
            f"client {cpu['client']:.2f}, simulators {cpu['sims']:.2f}",
            flush=True,
        )
    ratios = [b / a for a, b in zip(runs["1"], runs["2"], strict=True)]
    bounds = [_machine_bound(a, b) for a, b in zip(results["1"], results["2"], strict=True)]
    return {
        "rps_workers_1": runs["1"],
        "rps_workers_2": runs["2"],
        "cpu_workers_1": [r["cpu"] for r in results["1"]],
        "cpu_workers_2": [r["cpu"] for r in results["2"]],
        "ratio": summary(ratios),
        "machine_bound": summary(bounds),
        "of_bound": summary([r / b for r, b in zip(ratios, bounds, strict=True)]),
    }


def table(results: dict[str, Any]) -> str:
    lines = ["", "figure                                   min       median      max"]

    def row(label: str, s: dict[str, float], fmt: str = "{:10.0f}") -> None:
        lines.append(f"{label:36s}" + "".join(fmt.format(s[k]) for k in ("min", "median", "max")))

    t = results["throughput"]
    for name, (server, rpc) in FIGURES.items():
        row(f"{name} req/s ({server}, {rpc})", t[name]["rps"])
    for name in FIGURES:
        row(f"{name} server µs/call", t[name]["server_us_per_call"])
    for name in FIGURES:
        row(f"{name} server cores busy", t[name]["server_cpu"], "{:10.2f}")
        row(f"{name} client cores busy", t[name]["client_cpu"], "{:10.2f}")
    lines.append("")
    lines.append("ratio                                    min       median      max    target")
    for key, s in results["ratios"].items():
        target = TARGETS.get(key.removesuffix(" (by server CPU)"))
        lines.append(
            f"{key:36s}"
            + "".join(f"{s[k]:10.2f}" for k in ("min", "median", "max"))
            + (
                f"   {'≤' if key.removesuffix(' (by server CPU)') in AT_MOST else '≥'} {target}"
                if target
                else ""
            )
        )
    lines.append("")
    for key, value in results["other"].items():
        lines.append(f"{key:44s} {value}")
    for note in results["notes"]:
        lines.append(f"note: {note}")
    return "\n".join(lines)


def _latency_rate(throughput: dict[str, list[dict[str, Any]]]) -> float:
    """Half of the gateway's own median peak (gw-http): the open-loop rate of the latency
    figure. (Half of B1's peak would run the gateway near its own and time its queue.)"""
    return statistics.median(r["rps"] for r in throughput["gw_http"]) / 2


def _server_figures(
    work: Path, sims: Server, args: argparse.Namespace
) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]], dict[str, Any] | None]:
    """Throughput, latency, memory and workers figures, against the running simulators."""
    servers: dict[str, Server] = {}
    extra = ["--sims", json.dumps(sims.info)] + (["--uvloop"] if args.uvloop else [])
    try:
        for name, (kind, more) in SERVERS.items():
            servers[name] = start_server(name, kind, work, core=SERVER_CORE, extra=extra + more)
        print("throughput (closed loop):", flush=True)
        runs = throughput_rounds(work, servers, sims, args)
        rate = _latency_rate(runs)
        print(f"latency at half of the gateway's peak ({rate:.0f} req/s, open loop):")
        lat = latency_rounds(work, servers, sims, rate, args)
    finally:
        for server in servers.values():
            server.stop()
    print("memory:", flush=True)
    mem = memory_rounds(work, args)
    workers = None
    if not args.no_workers:
        print("workers:", flush=True)
        workers = workers_rounds(work, sims, args)
    return runs, lat, mem, workers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 round, ~1.5 s per figure")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0, help="measured seconds per run")
    parser.add_argument("--concurrency", type=int, default=64, help="calls in flight")
    parser.add_argument("--channels", type=int, default=4, help="client channels (connections)")
    parser.add_argument(
        "--ids", type=int, default=512, help="GetHouseholdRecord applicants cycled through"
    )
    parser.add_argument("--held", type=int, default=1000, help="in flight for the memory figure")
    parser.add_argument("--uvloop", action="store_true", help="servers on uvloop")
    parser.add_argument("--no-workers", action="store_true", help="skip the --workers figure")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.seconds = 1, 1.5
        args.held = 500
    args.warmup = 0.5 if args.quick else 1.0
    # Below the department timeout (2 s), so every held call is answered.
    args.hold_ms = 1500
    notes: list[str] = []
    if (os.cpu_count() or 1) < 2 or not shutil.which("taskset"):
        notes.append("not pinned (needs taskset and two cores): figures are less stable")

    print(f"Proofless bench: {args.rounds} round(s) of {args.seconds:g} s per figure", flush=True)
    with tempfile.TemporaryDirectory(prefix="proofless-bench-") as tmp:
        work = Path(tmp)
        prepare(work)
        sims = start_server("sims", "sims", work, core=CLIENT_CORE)
        try:  # a failing figure must not leave the simulators running
            runs, lat, mem, workers = _server_figures(work, sims, args)
        finally:
            sims.stop()

    print("JWS and audit log (in process):", flush=True)
    other: dict[str, Any] = {}
    for k, v in micro.jws_rates(0.5 if args.quick else 2.0).items():
        other[k] = round(v)
    audit = micro.audit_figures(5_000 if args.quick else 100_000, 20_000 if args.quick else 200_000)
    other.update({k: round(v, 3) if isinstance(v, float) else v for k, v in audit.items()})
    print("CEL claim rules (in process, bench/cel.py):", flush=True)
    cel_figures = cel.measure(quick=args.quick)
    mem_kib = [r["kib_per_1000"] for r in mem]
    other["memory_mib_per_1000_in_flight (median)"] = round(statistics.median(mem_kib) / 1024, 2)

    throughput = {
        name: {
            "rps": summary([r["rps"] for r in rs]),
            "server_us_per_call": summary([r["server_us_per_call"] for r in rs]),
            "server_cpu": summary([r["cpu"]["server"] for r in rs]),
            "client_cpu": summary([r["cpu"]["client"] for r in rs]),
            "p50_ms": summary([r["p50_ms"] for r in rs]),
            "runs": rs,
        }
        for name, rs in runs.items()
    }

    def per_round(a: str, b: str, key: str = "rps", invert: bool = False) -> list[float]:
        pairs = zip(runs[a], runs[b], strict=True)
        return [(y[key] / x[key]) if invert else (x[key] / y[key]) for x, y in pairs]

    def own_us(gw: str, base: str) -> list[float]:
        pairs = zip(runs[gw], runs[base], strict=True)
        return [g["server_us_per_call"] - b["server_us_per_call"] for g, b in pairs]

    def department_call() -> list[float]:
        rounds = zip(runs["b0"], runs["b1_raw"], runs["b1"], strict=True)
        key = "server_us_per_call"
        return [(b1[key] - b0[key]) / (raw[key] - b0[key]) for b0, raw, b1 in rounds]

    ratios = {
        "gw_mem/b0": summary(per_round("gw_mem", "b0")),
        "gw_http/b1": summary(per_round("gw_http", "b1")),
        "gw_mem/b0 (by server CPU)": summary(
            per_round("gw_mem", "b0", "server_us_per_call", invert=True)
        ),
        "gw_http/b1 (by server CPU)": summary(
            per_round("gw_http", "b1", "server_us_per_call", invert=True)
        ),
        "gw_mem/b0 on uvloop (by server CPU)": summary(
            per_round("gw_mem_uvloop", "b0_uvloop", "server_us_per_call", invert=True)
        ),
        "uvloop/asyncio gw_mem (by server CPU)": summary(
            per_round("gw_mem_uvloop", "gw_mem", "server_us_per_call")
        ),
        "department_call/raw_transport": summary(department_call()),
        "gateway_own_us": summary(own_us("gw_mem", "b0")),
        "gateway_own_us on uvloop": summary(own_us("gw_mem_uvloop", "b0_uvloop")),
        "added_p50_ms": summary(
            [g["p50_ms"] - b["p50_ms"] for b, g in zip(lat["b1"], lat["gw_http"], strict=True)]
        ),
        # the HTTP/JSON door's call against the same call over gRPC, same server
        "http/grpc door (by server CPU)": summary(
            per_round("gw_mem_http", "gw_mem", "server_us_per_call")
        ),
        # server CPU per decision of the nurse renewal: below 1 when one call is cheaper
        "item/separate (by server CPU)": summary(
            per_round("gw_item", "gw_item_separate", "server_us_per_call")
        ),
        "verify_claims/record (by server CPU)": summary(
            per_round("gw_claims", "gw_http", "server_us_per_call")
        ),
    }
    if workers is not None:
        ratios["workers_2/1"] = workers["ratio"]
        ratios["workers_2/1 machine bound"] = workers["machine_bound"]
        ratios["workers_2/1 ÷ machine bound"] = workers["of_bound"]
    else:
        notes.append("`proofless serve --workers` is not available: workers ratio skipped")
    for name in FIGURES:
        client = throughput[name]["client_cpu"]["max"]
        if client > 0.9:
            notes.append(
                f"{name}: the client used {client:.2f} of its core: it may be the bottleneck; "
                "compare server µs/call (ratios 'by server CPU')"
            )
    results = {
        "machine": machine(),
        "settings": {
            "rounds": args.rounds,
            "seconds": args.seconds,
            "warmup_s": args.warmup,
            "concurrency": args.concurrency,
            "channels": args.channels,
            "client": "grpc.aio low-level unary_unary, pre-serialized request, mutual TLS",
            "pinning": f"servers on core {SERVER_CORE}; client and department simulators on "
            f"core {CLIENT_CORE}",
            "order": "forward then reverse per round (A B B A)",
            "uvloop_servers": args.uvloop,
            "latency_rate_rps": _latency_rate(runs),
            "held_in_flight": args.held,
            "household_applicants_cycled": args.ids,
        },
        "throughput": throughput,
        "latency": {
            name: {"p50_ms": summary([r["p50_ms"] for r in rs]), "runs": rs}
            for name, rs in lat.items()
        },
        "memory": mem,
        "workers": workers,
        "ratios": ratios,
        "targets": TARGETS,
        "other": other,
        "cel": cel_figures,
        "notes": notes,
    }
    args.output.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    print(table(results))
    print("\n" + cel.table(cel_figures))
    print(f"\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
