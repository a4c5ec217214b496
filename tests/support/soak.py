"""Soak: the gateway under steady load for minutes, as real processes.

    python -m tests.support.soak --minutes 10            # what `make soak` runs
    python -m tests.support.soak --minutes 1 --rate 300  # a fixed rate instead of 70% of capacity

Starts the department simulators and the gateway as subprocesses (a fresh dev PKI and state
directory under a temporary directory), measures capacity with a short closed-loop burst, then
paces requests at ~70% of it, sampling the gateway's RSS. Prints a table and a JSON line:
requests, errors by status, latency percentiles, RSS at the start of the steady phase and at
the end, and the growth in percent (target ≤ 10%).

The processes are run by tests.support.processes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from adapters.simulators.datagen import generate
from proofless.v1 import verification_pb2 as pb
from proofless.v1 import verification_pb2_grpc as pb_grpc
from tests.support.processes import (
    POPULATION,
    SEED,
    ProcessStack,
    process_stack,
    rss_kib,
)

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
    parser = argparse.ArgumentParser(prog="python -m tests.support.soak", description=__doc__)
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
