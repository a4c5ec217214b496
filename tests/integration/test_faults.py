"""Faulty departments against the real gateway: hangs, deadlines, the circuit breaker,
garbage answers, a front-end database that is gone, and no leaks after many failures.

Every test runs its own stack (real simulators, real mutual TLS) with the fault injected at
the simulator, so what is checked is what an approval system would see. Timings are compared
within one test (faulty run against a healthy run on the same machine, as ratios with a
generous bound), never against absolute numbers alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from google.rpc import error_details_pb2

from adapters.frontdb import SqliteReader
from adapters.simulators.faults import FaultInjector, Faults
from proofless.v1 import verification_pb2 as pb
from tests.support.processes import fast_policy
from tests.support.stack import Stack, rich_details

pytestmark = pytest.mark.asyncio

CASE = "FAULT-2026-000001"


def ctx(item: str = "housing-transfer") -> pb.RequestContext:
    return pb.RequestContext(service_item=item, case_id=CASE, purpose="fault test")


def record(idn: str, item: str = "housing-transfer") -> pb.RecordRequest:
    return pb.RecordRequest(context=ctx(item), applicant=pb.Applicant(id_number=idn))


def reason_of(err: grpc.aio.AioRpcError) -> str:
    return next(
        (d.reason for d in rich_details(err) if isinstance(d, error_details_pb2.ErrorInfo)), ""
    )


async def audit_entries(stack: Stack, start: int = 0) -> list[dict[str, Any]]:
    log = stack.gateway.audit
    return [json.loads(e) for e in await log.entries(start, log.tree_size)]


async def timed(call: Callable[[], Awaitable[Any]], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        await call()
        out.append(time.perf_counter() - t0)
    return out


class _CountingInjector(FaultInjector):
    """Counts the requests that reach a simulator: its middleware reads `faults` exactly once
    for every non-admin request (see adapters/simulators/faults.py)."""

    hits: int

    @property
    def faults(self) -> Faults:
        self.hits += 1
        return self._faults

    @faults.setter
    def faults(self, value: Faults) -> None:
        self._faults = value


def count_hits(injector: FaultInjector) -> _CountingInjector:
    current = injector.__dict__.pop("faults")
    injector.__class__ = _CountingInjector
    counting: _CountingInjector = injector  # type: ignore[assignment]
    counting._faults = current
    counting.hits = 0
    return counting


def breaker_state(stack: Stack, department: str) -> float | None:
    return stack.registry.get_sample_value(
        "proofless_circuit_breaker_state", {"department": department}
    )


# ---- one department hanging ------------------------------------------------------------------


async def test_hanging_household_leaves_other_departments_fast(make_stack: Any) -> None:
    overrides = {"departments": {"household": {"timeout_ms": 300, "retries": 0}}}
    async with make_stack(overrides) as stack:
        s = stack.scenarios
        window = await stack.verification("quangang-window")
        hrss = await stack.verification("fuan-hrss")

        async def social() -> None:
            await hrss.GetSocialSecurityRecord(record(s["long_contributor"], "retirement"))

        async def prop() -> None:
            await window.GetPropertyRecords(record(s["several_properties"]))

        await social()  # warm the pools
        await prop()
        healthy = {"social_security": await timed(social, 15), "property": await timed(prop, 15)}

        stack.sims.household.injector.set(Faults(hang=True))
        stop = asyncio.Event()

        async def stuck_caller() -> None:  # keeps the hung department busy meanwhile
            while not stop.is_set():
                with contextlib.suppress(grpc.aio.AioRpcError):
                    await window.GetHouseholdRecord(record(s["household_head"]), timeout=2)

        stuck = [asyncio.create_task(stuck_caller()) for _ in range(8)]
        await asyncio.sleep(0.1)
        try:
            hanging = {
                "social_security": await timed(social, 15),
                "property": await timed(prop, 15),
            }
            t0 = time.perf_counter()
            resp = await window.VerifyClaims(
                pb.VerifyClaimsRequest(
                    context=ctx(),
                    applicant=pb.Applicant(id_number=s["no_property"]),
                    claims=[
                        pb.Claim(id="house", type="property.ownership", params={"owns": "false"}),
                        pb.Claim(
                            id="home", type="household.residence", params={"region": "350000"}
                        ),
                    ],
                ),
                timeout=5,
            )
            claims_s = time.perf_counter() - t0
        finally:
            stop.set()
            stack.sims.household.injector.clear()
            await asyncio.gather(*stuck)

        verdicts = {r.id: r for r in resp.results}
        assert verdicts["house"].verdict == pb.VERDICT_HOLDS
        assert verdicts["home"].verdict == pb.VERDICT_UNDETERMINED
        assert verdicts["home"].status.code != 0
        assert s["no_property"] not in verdicts["home"].status.message
        # bounded by the household's own 300 ms ceiling, not by the caller's 5 s deadline
        assert claims_s < 2.0
        report = {}
        for dept, healthy_runs in healthy.items():
            before = statistics.median(healthy_runs)
            during = statistics.median(hanging[dept])
            report[dept] = (round(before * 1000, 2), round(during * 1000, 2))
            assert during < 3 * before + 0.050, f"{dept}: {before=:.4f}s {during=:.4f}s"
        print(f"\nmedian ms (healthy, household hanging): {report}; VerifyClaims {claims_s:.3f}s")


async def test_deadline_against_a_hanging_department_is_answered_and_audited(
    make_stack: Any,
) -> None:
    async with make_stack() as stack:
        idn = stack.scenarios["household_head"]
        window = await stack.verification("quangang-window")
        await window.GetHouseholdRecord(record(idn))
        start = stack.gateway.audit.tree_size
        stack.sims.household.injector.set(Faults(hang=True))
        try:
            t0 = time.perf_counter()
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await window.GetHouseholdRecord(record(idn), timeout=0.3)
            elapsed = time.perf_counter() - t0
        finally:
            stack.sims.household.injector.clear()
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert elapsed < 1.0
        # The server writes its entry when its own copy of the deadline passes.
        for _ in range(100):
            logged = await audit_entries(stack, start)
            if logged:
                break
            await asyncio.sleep(0.02)
        assert [e["status"] for e in logged] == ["DEADLINE_EXCEEDED"]
        assert logged[0]["outcome"] == "error"
        assert logged[0]["departments"] == ["household"]
        print(f"\n300 ms deadline answered after {elapsed * 1000:.0f} ms")


# ---- the circuit breaker ----------------------------------------------------------------------


async def test_breaker_opens_fails_fast_and_closes_after_recovery(make_stack: Any) -> None:
    failures, reset_ms = 3, 500
    overrides = {
        "departments": {
            "household": {
                "breaker_failures": failures,
                "breaker_reset_ms": reset_ms,
                "timeout_ms": 300,
                "retries": 0,
            }
        }
    }
    async with make_stack(overrides) as stack:
        idn = stack.scenarios["household_head"]
        window = await stack.verification("quangang-window")
        await window.GetHouseholdRecord(record(idn))
        assert breaker_state(stack, "household") in (None, 0.0)
        sim = count_hits(stack.sims.household.injector)
        sim.set(Faults(error_rate=1.0, error_status=503))

        reasons = []
        t_fail = time.perf_counter()
        for _ in range(failures):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await window.GetHouseholdRecord(record(idn))
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
            reasons.append(reason_of(info.value))
        open_after_s = time.perf_counter() - t_fail
        assert reasons == ["DEPARTMENT_UNAVAILABLE"] * failures
        assert sim.hits == failures
        assert breaker_state(stack, "household") == 2.0  # open

        hits = sim.hits
        fast = []
        for _ in range(10):
            t0 = time.perf_counter()
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await window.GetHouseholdRecord(record(idn))
            fast.append(time.perf_counter() - t0)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
            assert reason_of(info.value) == "CIRCUIT_OPEN"
            assert any(isinstance(d, error_details_pb2.RetryInfo) for d in rich_details(info.value))
        assert sim.hits == hits, "an open circuit must not reach the department"

        sim.clear()
        t_clear = time.perf_counter()
        closed_after_s = None
        while time.perf_counter() - t_clear < 5:
            try:
                await window.GetHouseholdRecord(record(idn))
            except grpc.aio.AioRpcError as err:
                still_open = reason_of(err)
                assert still_open == "CIRCUIT_OPEN"
                await asyncio.sleep(0.02)
                continue
            closed_after_s = time.perf_counter() - t_clear
            break
        assert closed_after_s is not None
        assert breaker_state(stack, "household") == 0.0  # closed
        assert sim.hits == hits + 1  # one half-open probe, and it succeeded
        assert closed_after_s < reset_ms / 1000 + 1.0
        print(
            f"\nbreaker: open after {failures} failures in {open_after_s * 1000:.0f} ms; "
            f"open fails fast in median {statistics.median(fast) * 1000:.2f} ms "
            f"(max {max(fast) * 1000:.2f} ms); closed {closed_after_s * 1000:.0f} ms after "
            f"recovery (reset {reset_ms} ms)"
        )


# ---- garbage from a department ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("department", "faults", "reason"),
    [
        ("household", Faults(malformed=True), "DEPARTMENT_MALFORMED_RESPONSE"),
        ("household", Faults(truncate=True), "DEPARTMENT_UNAVAILABLE"),
        ("household", Faults(reset=True), "DEPARTMENT_UNAVAILABLE"),
        ("household", Faults(error_rate=1.0, error_status=500), "DEPARTMENT_UNAVAILABLE"),
        ("social_security", Faults(malformed=True), "DEPARTMENT_MALFORMED_RESPONSE"),
        ("social_security", Faults(truncate=True), "DEPARTMENT_UNAVAILABLE"),
    ],
    ids=["hh-malformed", "hh-truncate", "hh-reset", "hh-500", "ss-malformed", "ss-truncate"],
)
async def test_bad_department_answers_are_unavailable_with_a_safe_message(
    make_stack: Any, department: str, faults: Faults, reason: str
) -> None:
    async with make_stack({"departments": {department: {"retries": 0}}}) as stack:
        s = stack.scenarios
        if department == "household":
            stub = await stack.verification("quangang-window")
            idn = s["household_head"]
            call = stub.GetHouseholdRecord
            req = record(idn)
        else:
            stub = await stack.verification("fuan-hrss")
            idn = s["long_contributor"]
            call = stub.GetSocialSecurityRecord
            req = record(idn, "retirement")
        getattr(stack.sims, department).injector.set(faults)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call(req, timeout=5)
        err = info.value
        assert err.code() == grpc.StatusCode.UNAVAILABLE
        assert reason_of(err) == reason
        message = err.details() or ""
        assert message.startswith(department)
        for leak in (idn, "Traceback", "http://", "127.0.0.1", 'File "'):
            assert leak not in message
        getattr(stack.sims, department).injector.clear()
        await call(req, timeout=5)  # the gateway is fine afterwards


async def test_property_database_unavailable_or_locked(make_stack: Any) -> None:
    overrides = {"departments": {"property": {"timeout_ms": 300, "retries": 0}}}
    async with make_stack(overrides) as stack:
        idn = stack.scenarios["several_properties"]
        window = await stack.verification("quangang-window")
        await window.GetPropertyRecords(record(idn))
        await stack.sims.property.set_faults(unavailable=True)
        try:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await window.GetPropertyRecords(record(idn), timeout=5)
        finally:
            await stack.sims.property.clear_faults()
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert idn not in (info.value.details() or "")
        await stack.sims.property.set_faults(hang=True)
        try:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await window.GetPropertyRecords(record(idn), timeout=5)
        finally:
            await stack.sims.property.clear_faults()
        assert info.value.code() in (
            grpc.StatusCode.UNAVAILABLE,
            grpc.StatusCode.DEADLINE_EXCEEDED,
        )
        resp = await window.GetPropertyRecords(record(idn), timeout=5)
        assert len(resp.records) >= 2


# ---- no leaks ---------------------------------------------------------------------------------


def resources() -> dict[str, int]:
    """What a failing department call could leak, counted in this process (the gateway and
    the simulators share its event loop)."""
    gc.collect()
    connectors = [o for o in gc.get_objects() if isinstance(o, aiohttp.TCPConnector)]
    readers = [o for o in gc.get_objects() if isinstance(o, SqliteReader)]
    return {
        "tasks": len(asyncio.all_tasks()),
        "fds": len(os.listdir("/proc/self/fd")),
        "http_in_use": sum(len(c._acquired) for c in connectors if not c.closed),
        "http_idle": sum(len(v) for c in connectors if not c.closed for v in c._conns.values()),
        "sqlite": sum(len(r._connections) for r in readers),
    }


async def test_no_leaks_after_a_thousand_failed_calls(make_stack: Any, tmp_path: Path) -> None:
    overrides = {
        "policy": {"file": str(fast_policy(tmp_path / "policy.toml"))},
        "departments": {
            # every call must really go to the failing department: no breaker in the way
            name: {"breaker_failures": 1_000_000, "retries": 1, "timeout_ms": 200}
            for name in ("household", "social_security", "property")
        },
    }
    async with make_stack(overrides, state=tmp_path / "state") as stack:
        s = stack.scenarios
        window = await stack.verification("quangang-window")
        hrss = await stack.verification("fuan-hrss")
        calls: list[Callable[[], Awaitable[Any]]] = [
            lambda: window.GetHouseholdRecord(record(s["household_head"]), timeout=2),
            lambda: hrss.GetSocialSecurityRecord(record(s["long_contributor"], "retirement")),
            lambda: window.GetPropertyRecords(record(s["several_properties"]), timeout=2),
            lambda: window.GetHouseholdRecord(record(s["household_child"]), timeout=0.05),
        ]

        codes: Counter[grpc.StatusCode] = Counter()

        async def round_of(n: int) -> int:
            failed = 0
            sem = asyncio.Semaphore(16)

            async def one(i: int) -> None:
                nonlocal failed
                async with sem:
                    try:
                        await calls[i % len(calls)]()
                    except grpc.aio.AioRpcError as err:
                        codes[err.code()] += 1
                        failed += 1

            await asyncio.gather(*(one(i) for i in range(n)))
            return failed

        async def settle() -> None:
            for _ in range(4):  # healthy calls put the pools back in their usual shape
                for call in calls[:3]:
                    await call()
            await asyncio.sleep(0.3)

        async def fail_everything() -> None:
            stack.sims.household.injector.set(Faults(reset=True))
            stack.sims.social_security.injector.set(Faults(truncate=True))
            await stack.sims.property.set_faults(unavailable=True)

        async def heal() -> None:
            stack.sims.household.injector.clear()
            stack.sims.social_security.injector.clear()
            await stack.sims.property.clear_faults()

        # Warm up every path once (failing and healthy) before the baseline, and fill the
        # pools to their configured size: a pool growing to its bound is not a leak.
        await fail_everything()
        await round_of(40)
        await heal()
        await settle()
        # distinct people, so single-flight does not fold the burst into one fetch
        people = list(stack.sims.population.people)[:32]
        await asyncio.gather(*(window.GetPropertyRecords(record(idn), timeout=5) for idn in people))
        baseline = resources()

        await fail_everything()
        failed = await round_of(500)
        stack.sims.household.injector.set(Faults(hang=True))
        stack.sims.social_security.injector.set(Faults(malformed=True))
        failed += await round_of(500)
        await heal()
        await settle()
        assert failed == 1000
        assert set(codes) <= {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}

        after = resources()
        for _ in range(50):
            if all(after[k] <= baseline[k] for k in baseline):
                break
            await asyncio.sleep(0.1)
            after = resources()
        print(f"\nafter {failed} failed calls: baseline {baseline}, after {after}")
        # The SQLite reader opens one connection per worker thread, lazily, up to its pool
        # size: growth within that bound (and its one descriptor per connection) is the pool
        # filling, not a leak.
        pool_size = stack.gateway.rules.value.catalogue.departments["property"].pool_size
        pool_growth = max(0, after["sqlite"] - baseline["sqlite"])
        assert after["tasks"] <= baseline["tasks"]
        assert after["fds"] <= baseline["fds"] + pool_growth
        assert after["http_in_use"] == 0
        assert after["http_idle"] <= baseline["http_idle"]
        assert after["sqlite"] <= max(baseline["sqlite"], pool_size)
