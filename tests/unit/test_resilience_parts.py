"""The resilience pieces alone: the circuit breaker against a reference model (hypothesis),
the retry budget and backoff, the bulkhead's queue, and the configuration parser."""

from __future__ import annotations

import asyncio
import itertools
import random
from dataclasses import dataclass

import pytest
from google.rpc import error_details_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.base import (
    DepartmentMalformed,
    DepartmentTimeout,
    DepartmentUnavailable,
    RecordNotFound,
)
from gateway.domain.errors import ConfigError
from gateway.server.resilience import (
    Bulkhead,
    CircuitBreaker,
    CircuitOpen,
    DepartmentOverloaded,
    ResilienceConfig,
    RetryBudget,
    backoff,
    is_retryable,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# -- circuit breaker --------------------------------------------------------------------


@dataclass
class ReferenceBreaker:
    """The breaker as the design states it, one call at a time."""

    threshold: int
    reset: float
    probes: int
    state: str = "closed"
    failures: int = 0
    opened_at: float = 0.0
    successes: int = 0

    def call(self, now: float, outcome: str) -> bool:
        """Apply one call's outcome; False when the call is refused."""
        if self.state == "open" and now - self.opened_at >= self.reset:
            self.state, self.successes = "half_open", 0
        if self.state == "open":
            return False
        if outcome == "neutral":
            return True
        if self.state == "closed":
            self.failures = 0 if outcome == "success" else self.failures + 1
            if self.failures >= self.threshold:
                self.state, self.opened_at, self.failures = "open", now, 0
        elif outcome == "failure":
            self.state, self.opened_at = "open", now
        else:
            self.successes += 1
            if self.successes >= self.probes:
                self.state, self.failures = "closed", 0
        return True


events = st.lists(
    st.one_of(
        st.sampled_from(["success", "failure", "neutral"]),
        st.floats(min_value=0.0, max_value=3.0).map(lambda dt: ("wait", dt)),
    ),
    max_size=120,
)


@given(
    threshold=st.integers(1, 6),
    reset=st.floats(0.1, 2.0),
    probes=st.integers(1, 3),
    script=events,
)
@settings(max_examples=400, deadline=None)
def test_breaker_matches_reference_model(
    threshold: int, reset: float, probes: int, script: list[object]
) -> None:
    clock = FakeClock()
    seen: list[str] = []
    breaker = CircuitBreaker(
        "property",
        failures=threshold,
        reset_s=reset,
        probes=probes,
        clock=clock,
        on_state_change=lambda _d, s: seen.append(s),
    )
    model = ReferenceBreaker(threshold, reset, probes)
    for event in script:
        if isinstance(event, tuple):
            clock.now += event[1]
            continue
        assert isinstance(event, str)
        allowed = model.call(clock.now, event)
        if allowed:
            permit = breaker.acquire()
            {"success": breaker.success, "failure": breaker.failure, "neutral": breaker.release}[
                event
            ](permit)
        else:
            with pytest.raises(CircuitOpen) as refused:
                breaker.acquire()
            assert refused.value.retry_after >= 0
        assert breaker.state == model.state
    assert breaker.opens == seen.count("open")
    # Every reported transition is a real change of state.
    assert all(a != b for a, b in itertools.pairwise(seen))


def test_half_open_admits_only_its_probes() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("household", failures=1, reset_s=1.0, probes=2, clock=clock)
    breaker.failure(breaker.acquire())
    clock.now = 1.0
    first, second = breaker.acquire(), breaker.acquire()
    assert first.probe
    assert second.probe
    with pytest.raises(CircuitOpen):
        breaker.acquire()
    breaker.release(first)  # a neutral end hands its slot back
    third = breaker.acquire()
    breaker.success(second)
    assert str(breaker.state) == "half_open"
    breaker.success(third)
    assert str(breaker.state) == "closed"


def test_stale_permits_do_not_move_a_later_period() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("household", failures=2, reset_s=1.0, clock=clock)
    slow = breaker.acquire()  # admitted while closed, ends much later
    breaker.failure(breaker.acquire())
    breaker.failure(breaker.acquire())
    assert str(breaker.state) == "open"
    breaker.success(slow)
    assert str(breaker.state) == "open"
    clock.now = 1.0
    probe = breaker.acquire()
    breaker.failure(slow)
    breaker.release(slow)
    assert str(breaker.state) == "half_open"
    with pytest.raises(CircuitOpen):
        breaker.acquire()  # the stale release did not free the probe's slot
    breaker.success(probe)
    assert str(breaker.state) == "closed"


def test_slow_call_rate_opens_once_the_window_is_full() -> None:
    breaker = CircuitBreaker("household", failures=100, slow_rate=0.75, slow_window=4)
    for slow in (True, False, True, False, True):  # never 3 slow among the last 4
        breaker.success(breaker.acquire(), slow=slow)
        assert str(breaker.state) == "closed"
    breaker.failure(breaker.acquire(), slow=True)  # a slow failure is a slow call too
    assert str(breaker.state) == "open"


def test_slow_call_rate_is_exact_and_off_by_default() -> None:
    breaker = CircuitBreaker("household", failures=100, slow_rate=0.7, slow_window=10)
    for slow in [False] * 3 + [True] * 6:
        breaker.success(breaker.acquire(), slow=slow)
    assert str(breaker.state) == "closed"
    breaker.success(breaker.acquire(), slow=True)  # 7 of 10: 0.7 × 10 is 7
    assert str(breaker.state) == "open"
    off = CircuitBreaker("household", failures=100)
    for _ in range(50):
        off.success(off.acquire(), slow=True)
    assert str(off.state) == "closed"


def test_a_slow_probe_opens_the_circuit_again_when_the_rate_is_on() -> None:
    clock = FakeClock()
    for rate, after in ((1.0, "open"), (0.0, "closed")):
        breaker = CircuitBreaker("household", failures=1, reset_s=1.0, slow_rate=rate, clock=clock)
        breaker.failure(breaker.acquire())
        clock.now += 1.0
        breaker.success(breaker.acquire(), slow=True)
        assert str(breaker.state) == after, rate


def test_circuit_open_carries_retry_info() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("household", failures=1, reset_s=5.0, clock=clock)
    breaker.failure(breaker.acquire())
    clock.now = 3.75
    with pytest.raises(CircuitOpen) as caught:
        breaker.acquire()
    err = caught.value
    assert err.reason == "CIRCUIT_OPEN"
    assert err.retry_after == pytest.approx(1.25)
    infos = [d for d in err.details() if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)]
    retry = error_details_pb2.RetryInfo()
    infos[0].Unpack(retry)
    assert (retry.retry_delay.seconds, retry.retry_delay.nanos) == (1, 250_000_000)
    assert err.to_status().code == 14  # UNAVAILABLE


# -- retries ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "retryable"),
    [
        (DepartmentUnavailable("down"), True),
        (DepartmentTimeout("slow"), True),
        (ConnectionResetError(), True),
        (RecordNotFound("no one"), False),
        (DepartmentMalformed("garbage"), False),
        (CircuitOpen("open", retry_after=1.0), False),
        (DepartmentOverloaded("full"), False),
        (ValueError("bug"), False),
    ],
)
def test_what_is_retried(exc: BaseException, retryable: bool) -> None:
    assert is_retryable(exc) is retryable


@given(retry=st.integers(0, 100), seed=st.integers())
def test_backoff_is_jittered_exponential_and_capped(retry: int, seed: int) -> None:
    delay = backoff(retry, 0.05, 1.0, random.Random(seed))
    assert 0.0 <= delay <= min(1.0, 0.05 * 2**retry)


@given(
    ratio=st.floats(0.0, 1.0),
    minimum=st.integers(0, 20),
    script=st.lists(st.sampled_from(["call", "retry"]), max_size=400),
)
def test_budget_never_exceeds_ratio_within_one_window(
    ratio: float, minimum: int, script: list[str]
) -> None:
    budget = RetryBudget(ratio, minimum, 10.0, clock=FakeClock())
    calls = retries = 0
    for step in script:
        if step == "call":
            budget.record_call()
            calls += 1
        elif budget.try_spend():
            retries += 1
        assert retries <= ratio * calls + minimum


def test_budget_window_slides() -> None:
    clock = FakeClock()
    budget = RetryBudget(0.5, 0, 10.0, clock=clock)
    for _ in range(4):
        budget.record_call()
    assert budget.try_spend()
    assert budget.try_spend()
    assert not budget.try_spend()
    clock.now = 5.0  # half a window on: the calls and retries still count
    assert not budget.try_spend()
    clock.now = 10.5  # a whole window later: forgotten
    assert not budget.try_spend()
    budget.record_call()
    budget.record_call()
    assert budget.try_spend()
    assert not budget.try_spend()
    clock.now = 1000.0  # long idle: nothing from before counts
    assert not budget.try_spend()


# -- bulkhead -------------------------------------------------------------------------------


async def test_bulkhead_fifo_queue_and_cancellation() -> None:
    bulkhead = Bulkhead("property", max_concurrency=1, max_queue=2)
    await bulkhead.acquire()
    order: list[str] = []

    async def wait(name: str) -> None:
        await bulkhead.acquire()
        order.append(name)
        bulkhead.release()

    first = asyncio.create_task(wait("first"))
    gone = asyncio.create_task(wait("gone"))
    await asyncio.sleep(0)
    assert bulkhead.waiting == 2
    with pytest.raises(DepartmentOverloaded):
        await bulkhead.acquire()
    gone.cancel()
    await asyncio.gather(gone, return_exceptions=True)
    assert bulkhead.waiting == 1
    third = asyncio.create_task(wait("third"))
    await asyncio.sleep(0)
    bulkhead.release()
    await asyncio.gather(first, third)
    assert order == ["first", "third"]
    assert (bulkhead.active, bulkhead.waiting, bulkhead.rejected) == (0, 0, 1)


async def test_bulkhead_with_no_queue_fails_fast() -> None:
    bulkhead = Bulkhead("property", max_concurrency=1, max_queue=0)
    await bulkhead.acquire()
    with pytest.raises(DepartmentOverloaded):
        await bulkhead.acquire()
    bulkhead.release()
    await bulkhead.acquire()


# -- configuration --------------------------------------------------------------------------


def test_config_defaults() -> None:
    cfg = ResilienceConfig()
    assert (cfg.retries, cfg.retry_budget_ratio, cfg.breaker_failures) == (2, 0.2, 5)
    assert (cfg.breaker_reset_ms, cfg.breaker_half_open_probes) == (5000, 1)
    assert (cfg.max_concurrency, cfg.max_queue, cfg.hedge_after_ms) == (32, 64, 0)
    assert (cfg.slow_call_ms, cfg.slow_call_rate, cfg.slow_call_window) == (200, 0.0, 10)


def test_config_from_department_table_ignores_adapter_keys() -> None:
    table = {
        "url": "http://127.0.0.1:8101",
        "pool_size": 64,
        "timeout_ms": 1500,
        "retries": 0,
        "retry_budget_ratio": 1,
        "hedge_after_ms": 40,
    }
    cfg = ResilienceConfig.from_table(table, where="departments.household")
    assert (cfg.timeout_ms, cfg.retries, cfg.hedge_after_ms) == (1500, 0, 40)
    assert cfg.retry_budget_ratio == 1.0
    assert isinstance(cfg.retry_budget_ratio, float)
    assert cfg.timeout_s == 1.5


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"retries": "2"}, "departments.household.retries: must be an integer"),
        ({"retries": True}, "departments.household.retries: must be an integer"),
        ({"max_queue": 1.5}, "departments.household.max_queue: must be an integer"),
        ({"retry_budget_ratio": "x"}, "retry_budget_ratio: must be a number"),
        ({"timeout_ms": 0}, "departments.household.timeout_ms must be positive"),
        ({"retries": -1}, "retries must not be negative"),
        ({"retry_backoff_ms": 500, "retry_backoff_max_ms": 100}, "retry_backoff_max_ms"),
        ({"slow_call_ms": 0}, "departments.household.slow_call_ms must be positive"),
        ({"slow_call_rate": 1.5}, "departments.household.slow_call_rate must be at most 1"),
        ({"slow_call_rate": -0.1}, "slow_call_rate must not be negative"),
        ({"slow_call_window": 0}, "slow_call_window must be positive"),
    ],
)
def test_config_errors_name_the_key(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ResilienceConfig.from_table(table, where="departments.household")
