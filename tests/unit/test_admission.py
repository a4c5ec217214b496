"""Gateway admission: bounded in-flight requests, refused at once with RetryInfo."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.rpc import error_details_pb2
from hypothesis import given
from hypothesis import strategies as st

from gateway.domain.errors import ResourceExhausted
from gateway.server.admission import Admission


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_try_enter_and_leave() -> None:
    admission = Admission(max_in_flight=2)
    assert admission.try_enter()
    assert admission.try_enter()
    assert not admission.try_enter()
    assert (admission.in_flight, admission.rejected) == (2, 1)
    admission.leave()
    assert admission.try_enter()
    assert admission.in_flight == 2


async def test_admit_refuses_beyond_max_with_retry_info() -> None:
    admission = Admission(max_in_flight=3)
    async with admission.admit(), admission.admit(), admission.admit():
        assert admission.in_flight == 3
        with pytest.raises(ResourceExhausted) as caught:
            async with admission.admit():
                pytest.fail("admitted beyond max_in_flight")
        assert admission.in_flight == 3  # a refusal holds nothing
    assert admission.in_flight == 0
    err = caught.value
    assert err.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert err.reason == "OVERLOADED"
    assert err.message == "the gateway is at capacity"
    assert 0.05 <= err.retry_after <= 1.0
    retry = error_details_pb2.RetryInfo()
    assert any(d.Unpack(retry) for d in err.details())
    assert retry.retry_delay.ToNanoseconds() == pytest.approx(err.retry_after * 1e9, abs=2)


async def test_admission_is_released_when_the_handler_fails() -> None:
    admission = Admission(max_in_flight=1)
    with pytest.raises(RuntimeError, match="handler"):
        async with admission.admit():
            raise RuntimeError("handler failed")
    with admission.admit():
        assert admission.in_flight == 1
    assert admission.in_flight == 0


async def test_no_queueing_and_no_tasks() -> None:
    before = asyncio.all_tasks()
    admission = Admission(max_in_flight=1)
    admission.enter()
    with pytest.raises(ResourceExhausted):
        admission.enter()
    assert asyncio.all_tasks() == before


def test_retry_after_grows_with_pressure_and_decays() -> None:
    clock = FakeClock()
    admission = Admission(max_in_flight=10, clock=clock)
    assert admission.retry_after() == pytest.approx(0.05)
    while admission.in_flight < 10:
        admission.enter()
    delays = []
    for _ in range(30):
        with pytest.raises(ResourceExhausted) as caught:
            admission.enter()
        delays.append(caught.value.retry_after)
    assert delays == sorted(delays)
    assert delays[0] > 0.05
    assert delays[-1] == 1.0  # capped
    clock.now += 10.0  # ten half-lives of calm
    assert admission.retry_after() < 0.06


@given(st.lists(st.booleans(), max_size=300), st.integers(1, 20))
def test_in_flight_never_exceeds_max(script: list[bool], limit: int) -> None:
    admission = Admission(max_in_flight=limit)
    held = 0
    for enter in script:
        if enter:
            held += admission.try_enter()
        elif held:
            admission.leave()
            held -= 1
        assert 0 <= admission.in_flight == held <= limit
        assert 0.05 <= admission.retry_after() <= 1.0


def test_unbalanced_leave_and_bad_limits_are_bugs() -> None:
    with pytest.raises(RuntimeError):
        Admission().leave()
    with pytest.raises(ValueError, match="max_in_flight"):
        Admission(max_in_flight=0)
    assert Admission().max_in_flight == 512
