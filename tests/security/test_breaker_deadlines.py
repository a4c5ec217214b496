"""Red-team item 14: the breaker was blind to callers with short deadlines.

With the household registry hanging, calls whose deadline (an approval UI's 300 ms) ended
before the department's own 2 s ceiling were neutral for the circuit breaker: it never
opened, and every call held a connection slot for its whole deadline. A call the caller's
deadline ends after the department has been silent past `slow_call_ms` (200 ms by default)
now counts as a failure; a caller with a shorter deadline still says nothing about the
department. With `slow_call_rate` set, calls the department answers slowly open the circuit
too (resilience4j's slow-call rate). Everything here runs against a real gateway with the
fault injected at the household simulator.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2

from adapters.simulators.faults import Faults
from proofless.v1 import verification_pb2 as pb
from tests.support.stack import Stack, poll, rich_details

pytestmark = pytest.mark.asyncio


def household(idn: str) -> pb.RecordRequest:
    context = pb.RequestContext(
        service_item="housing-transfer", case_id="QG-2026-001400", purpose="transfer"
    )
    return pb.RecordRequest(context=context, applicant=pb.Applicant(id_number=idn))


def reason_of(err: grpc.aio.AioRpcError) -> str:
    infos = [d for d in rich_details(err) if isinstance(d, error_details_pb2.ErrorInfo)]
    return infos[0].reason if infos else ""


def breaker(stack: Stack) -> str:
    value = stack.registry.get_sample_value(
        "proofless_circuit_breaker_state", {"department": "household"}
    )
    return {0.0: "closed", 1.0: "half_open", 2.0: "open"}[value or 0.0]


async def failed(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value


async def test_callers_with_300_ms_deadlines_open_the_circuit_of_a_hanging_department(
    make_stack: Callable[..., Any],
) -> None:
    # the default resilience settings (a 2 s ceiling, 5 failures), a shorter reset
    async with make_stack({"departments": {"household": {"breaker_reset_ms": 2000}}}) as stack:
        idn = stack.scenarios["household_head"]
        window = await stack.verification("quangang-window")
        await window.GetHouseholdRecord(household(idn), timeout=5)
        stack.sims.household.injector.set(Faults(hang=True))
        try:
            # 5 calls open it; on a loaded machine a call may reach the department with less
            # than the threshold left, and count for nothing: a few more are allowed
            for _ in range(10):
                err = await failed(window.GetHouseholdRecord(household(idn), timeout=0.3))
                assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
                if breaker(stack) == "open":
                    break
            assert breaker(stack) == "open"
            # the next caller, with a whole second, is refused at once instead of waiting it out
            err = await failed(window.GetHouseholdRecord(household(idn), timeout=1.0))
            assert (err.code(), reason_of(err)) == (grpc.StatusCode.UNAVAILABLE, "CIRCUIT_OPEN")

            # half-open: a short-deadline probe into the still hanging department opens it again
            async def half_open() -> bool:
                return breaker(stack) != "open" or await _probe_admitted(window, idn)

            await poll(half_open, "the circuit going half-open")
            assert breaker(stack) == "open"
        finally:
            stack.sims.household.injector.clear()

        async def closed() -> bool:
            try:
                await window.GetHouseholdRecord(household(idn), timeout=0.3)
            except grpc.aio.AioRpcError:
                return False
            return True

        await poll(closed, "the circuit closing once the department answers")
        assert breaker(stack) == "closed"


async def _probe_admitted(stub: Any, idn: str) -> bool:
    """One short call: True when it was let through (a half-open probe), not CIRCUIT_OPEN."""
    err = await failed(stub.GetHouseholdRecord(household(idn), timeout=0.5))
    if reason_of(err) == "CIRCUIT_OPEN":
        await asyncio.sleep(0.05)
        return False
    assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    return True


async def test_deadlines_shorter_than_the_slow_call_threshold_say_nothing(
    make_stack: Callable[..., Any],
) -> None:
    """A caller's impatience alone must not open the circuit for every other caller."""
    async with make_stack() as stack:
        idn = stack.scenarios["household_head"]
        window = await stack.verification("quangang-window")
        stack.sims.household.injector.set(Faults(hang=True))
        try:
            for _ in range(10):  # twice the failures that would open it
                err = await failed(window.GetHouseholdRecord(household(idn), timeout=0.1))
                assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert breaker(stack) == "closed"
        finally:
            stack.sims.household.injector.clear()
        await window.GetHouseholdRecord(household(idn), timeout=5)


async def test_callers_with_long_deadlines_open_it_at_the_departments_ceiling(
    make_stack: Callable[..., Any],
) -> None:
    overrides = {"departments": {"household": {"timeout_ms": 400, "retries": 0}}}
    async with make_stack(overrides) as stack:
        idn = stack.scenarios["household_head"]
        window = await stack.verification("quangang-window")
        stack.sims.household.injector.set(Faults(hang=True))
        try:
            # a short caller and long ones, in turn: every one of them counts
            for timeout in (5.0, 0.3, 5.0, 0.3, 5.0):
                err = await failed(window.GetHouseholdRecord(household(idn), timeout=timeout))
                assert err.code() in (
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    grpc.StatusCode.UNAVAILABLE,
                )
                assert reason_of(err) != "CIRCUIT_OPEN"
            assert breaker(stack) == "open"
            err = await failed(window.GetHouseholdRecord(household(idn), timeout=5.0))
            assert reason_of(err) == "CIRCUIT_OPEN"
        finally:
            stack.sims.household.injector.clear()


async def test_slow_answers_open_the_circuit_when_the_slow_call_rate_is_set(
    make_stack: Callable[..., Any],
) -> None:
    slow_rate = {"slow_call_ms": 300, "slow_call_rate": 1.0, "slow_call_window": 4}
    for settings, opens in (({}, False), (slow_rate, True)):
        overrides = {"departments": {"household": {"retries": 0, **settings}}}
        async with make_stack(overrides) as stack:
            idn = stack.scenarios["household_head"]
            window = await stack.verification("quangang-window")
            stack.sims.household.injector.set(Faults(latency_ms=500))  # under the 2 s ceiling
            try:
                for _ in range(4):
                    reply = await window.GetHouseholdRecord(household(idn), timeout=5.0)
                    assert reply.attestation.proof  # answered, slowly
                assert breaker(stack) == ("open" if opens else "closed"), settings
                if opens:
                    err = await failed(window.GetHouseholdRecord(household(idn), timeout=5.0))
                    assert reason_of(err) == "CIRCUIT_OPEN"
            finally:
                stack.sims.household.injector.clear()
