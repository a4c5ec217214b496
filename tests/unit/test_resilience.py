"""ResilientAdapter end to end against fake departments built here (no mocks of internals):
retries, the retry budget, deadlines, the breaker, the bulkhead, single-flight, hedging and
task hygiene. No timed assertions: deadlines are checked by what was cancelled and raised."""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

import pytest

from adapters.base import (
    DepartmentAdapter,
    DepartmentId,
    DepartmentMalformed,
    DepartmentTimeout,
    DepartmentUnavailable,
    Fetched,
    RecordNotFound,
    RecordQuery,
)
from gateway.server.resilience import (
    CircuitOpen,
    DepartmentOverloaded,
    ResilienceConfig,
    ResilientAdapter,
)

AS_OF = datetime(2026, 1, 1, tzinfo=UTC)
ID_A = "35010019900307123X"
ID_B = "350583198801011234"


class FakeDepartment:
    """A department whose every call follows the next step of a script (the last step
    repeats). Steps: "ok", "not_found", "malformed", "unavailable", "timeout", "reset"
    (a raw ConnectionResetError), "hang" (until cancelled), "gate" (until `gate` opens)."""

    department: DepartmentId = "household"

    def __init__(self, script: Iterable[str] = ("ok",)) -> None:
        self.script = deque(script)
        self.calls = 0
        self.cancelled = 0
        self.deadlines: list[float] = []
        self.called_at: list[float] = []
        self.gate = asyncio.Event()
        self.closed = False
        self.healthy = True

    async def fetch(self, query: RecordQuery, deadline: float) -> Fetched[str]:
        self.calls += 1
        self.deadlines.append(deadline)
        self.called_at.append(time.monotonic())
        step = self.script.popleft() if len(self.script) > 1 else self.script[0]
        try:
            if step == "hang":
                await asyncio.Event().wait()
            if step == "gate":
                await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        if step == "not_found":
            raise RecordNotFound("household: no such person")
        if step == "malformed":
            raise DepartmentMalformed("household: answer is not JSON")
        if step == "unavailable":
            raise DepartmentUnavailable("household: answered HTTP 503")
        if step == "timeout":
            raise DepartmentTimeout("household: no answer")
        if step == "reset":
            raise ConnectionResetError("connection reset by peer")
        return Fetched(self.department, f"record of {query.id_number}", AS_OF)

    async def health(self) -> bool:
        return self.healthy

    async def close(self) -> None:
        self.closed = True


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class MaxJitter(random.Random):
    """Backoff always draws the longest delay allowed."""

    def uniform(self, a: float, b: float) -> float:
        return b


FAST = {"retry_backoff_ms": 0, "retry_backoff_max_ms": 0}


def wrap(
    fake: FakeDepartment,
    clock: FakeClock | None = None,
    transitions: list[tuple[str, str]] | None = None,
    rng: random.Random | None = None,
    **cfg: int | float,
) -> ResilientAdapter[str]:
    return ResilientAdapter(
        fake,
        ResilienceConfig(**{**FAST, **cfg}),  # type: ignore[arg-type]
        clock=clock or FakeClock(),
        rng=rng,
        on_state_change=None if transitions is None else lambda d, s: transitions.append((d, s)),
    )


def soon(seconds: float = 10.0) -> float:
    return time.monotonic() + seconds


async def until(condition: Callable[[], bool]) -> None:
    """Poll (briefly sleeping) until `condition` holds; fail after a generous bound."""
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.001)
    pytest.fail("condition never held")


async def settle() -> None:
    """Let cancelled tasks unwind (loop iterations, not wall-clock time)."""
    for _ in range(20):
        await asyncio.sleep(0)


async def test_retries_succeed_after_transient_failures() -> None:
    fake = FakeDepartment(["unavailable", "timeout", "ok"])
    adapter = wrap(fake, retries=2)
    result = await adapter.fetch(RecordQuery(ID_A), soon())
    assert result.record == f"record of {ID_A}"
    assert fake.calls == 3
    stats = adapter.stats()
    assert (stats.calls, stats.attempts, stats.retries) == (1, 3, 2)
    assert str(adapter.state) == "closed"


async def test_connection_errors_are_retried_and_become_typed() -> None:
    fake = FakeDepartment(["reset"])
    adapter = wrap(fake, retries=2)
    with pytest.raises(DepartmentUnavailable) as caught:
        await adapter.fetch(RecordQuery(ID_A), soon())
    assert not isinstance(caught.value, OSError)
    assert fake.calls == 3


@pytest.mark.parametrize(
    ("step", "error", "state"),
    [("not_found", RecordNotFound, "closed"), ("malformed", DepartmentMalformed, "open")],
)
async def test_no_retry_on_answers(step: str, error: type[Exception], state: str) -> None:
    # not-found is an answer (a success for the breaker); malformed is a breaker failure.
    fake = FakeDepartment([step])
    adapter = wrap(fake, retries=3, breaker_failures=1)
    with pytest.raises(error):
        await adapter.fetch(RecordQuery(ID_A), soon())
    assert fake.calls == 1
    assert adapter.stats().retries == 0
    assert adapter.state == state


async def test_retries_give_up_after_configured_attempts() -> None:
    fake = FakeDepartment(["unavailable"])
    adapter = wrap(fake, retries=2, breaker_failures=100)
    with pytest.raises(DepartmentUnavailable):
        await adapter.fetch(RecordQuery(ID_A), soon())
    assert fake.calls == 3


async def test_retry_budget_caps_retries_under_sustained_failure() -> None:
    fake = FakeDepartment(["unavailable"])
    adapter = wrap(
        fake, retries=2, breaker_failures=1_000_000, retry_budget_ratio=0.2, retry_budget_min=10
    )
    for _ in range(1000):
        with pytest.raises(DepartmentUnavailable):
            await adapter.fetch(RecordQuery(ID_A), soon())
    stats = adapter.stats()
    assert 0 < stats.retries <= 0.2 * 1000 + 10
    assert fake.calls == 1000 + stats.retries
    assert stats.budget_exhausted > 0


async def test_retry_budget_lets_a_cold_start_retry() -> None:
    fake = FakeDepartment(["unavailable", "ok"])
    adapter = wrap(fake, retries=1, retry_budget_ratio=0.0, retry_budget_min=1)
    assert (await adapter.fetch(RecordQuery(ID_A), soon())).record
    assert adapter.stats().retries == 1


async def test_hanging_department_times_out_at_the_callers_deadline() -> None:
    fake = FakeDepartment(["hang"])
    adapter = wrap(fake, retries=2)
    deadline = soon(0.05)
    with pytest.raises(DepartmentTimeout):
        await adapter.fetch(RecordQuery(ID_A), deadline)
    await settle()
    assert fake.cancelled == 1  # the attempt in flight was cancelled, not left running
    assert fake.calls == 1  # no time left for a retry
    assert fake.deadlines[0] <= deadline
    stats = adapter.stats()
    assert stats.timeouts == 1
    # The caller's deadline, not the department's ceiling, ran out: not a breaker failure.
    assert str(adapter.state) == "closed"


async def test_attempt_is_bounded_by_the_department_ceiling_then_retried() -> None:
    fake = FakeDepartment(["hang", "ok"])
    adapter = wrap(fake, retries=1, timeout_ms=20)
    result = await adapter.fetch(RecordQuery(ID_A), soon(30))
    assert result.record
    assert fake.cancelled == 1
    assert fake.deadlines[0] <= fake.called_at[0] + 0.020  # the ceiling, not the caller's 30 s
    assert fake.calls == 2


async def test_department_ceiling_timeout_counts_for_the_breaker() -> None:
    fake = FakeDepartment(["hang"])
    adapter = wrap(fake, retries=0, timeout_ms=10, breaker_failures=1)
    with pytest.raises(DepartmentTimeout):
        await adapter.fetch(RecordQuery(ID_A), soon(30))
    assert str(adapter.state) == "open"


async def test_a_callers_deadline_after_the_slow_call_threshold_counts_as_a_failure() -> None:
    clock = FakeClock()
    fake = FakeDepartment(["hang"])
    adapter = wrap(fake, clock, retries=0, breaker_failures=1, slow_call_ms=200)
    call = asyncio.create_task(adapter.fetch(RecordQuery(ID_A), soon(0.05)))
    await until(lambda: fake.calls == 1)
    clock.now += 0.2  # the department has been silent for the threshold
    with pytest.raises(DepartmentTimeout):
        await call
    assert str(adapter.state) == "open"
    assert adapter.stats().slow_calls == 1


async def answer_slowly(
    adapter: ResilientAdapter[str], fake: FakeDepartment, clock: FakeClock
) -> None:
    """One call the department answers after 250 ms of the adapter's clock."""
    fake.gate = asyncio.Event()
    calls = fake.calls
    call = asyncio.create_task(adapter.fetch(RecordQuery(ID_A), soon()))
    await until(lambda: fake.calls == calls + 1)
    clock.now += 0.25
    fake.gate.set()
    assert (await call).record


async def test_slow_answers_open_the_circuit_only_with_the_slow_call_rate() -> None:
    for rate, after in ((0.0, "closed"), (1.0, "open")):
        clock = FakeClock()
        fake = FakeDepartment(["gate"])
        adapter = wrap(fake, clock, slow_call_ms=200, slow_call_rate=rate, slow_call_window=2)
        await answer_slowly(adapter, fake, clock)
        await answer_slowly(adapter, fake, clock)
        assert str(adapter.state) == after, rate
        assert adapter.stats().slow_calls == 2


async def test_no_retry_when_backoff_does_not_fit_before_the_deadline() -> None:
    fake = FakeDepartment(["unavailable", "ok"])
    adapter = wrap(
        fake, rng=MaxJitter(), retries=3, retry_backoff_ms=1000, retry_backoff_max_ms=1000
    )
    with pytest.raises(DepartmentUnavailable):
        await adapter.fetch(RecordQuery(ID_A), soon(0.2))
    assert fake.calls == 1


async def test_expired_deadline_fails_without_calling() -> None:
    fake = FakeDepartment()
    adapter = wrap(fake)
    with pytest.raises(DepartmentTimeout):
        await adapter.fetch(RecordQuery(ID_A), time.monotonic() - 1)
    assert fake.calls == 0


async def test_breaker_lifecycle() -> None:
    clock = FakeClock()
    transitions: list[tuple[str, str]] = []
    fake = FakeDepartment(["unavailable"])
    adapter = wrap(fake, clock, transitions, retries=0, breaker_failures=3, breaker_reset_ms=5000)
    for _ in range(3):
        with pytest.raises(DepartmentUnavailable):
            await adapter.fetch(RecordQuery(ID_A), soon())
    assert str(adapter.state) == "open"

    # Open: fail fast, the department sees nothing.
    with pytest.raises(CircuitOpen) as caught:
        await adapter.fetch(RecordQuery(ID_A), soon())
    assert caught.value.reason == "CIRCUIT_OPEN"
    assert caught.value.retry_after == pytest.approx(5.0)
    assert isinstance(caught.value, DepartmentUnavailable)
    assert fake.calls == 3

    # Half-open after the reset; a failing probe reopens.
    clock.now += 5.0
    assert str(adapter.state) == "half_open"
    with pytest.raises(DepartmentUnavailable):
        await adapter.fetch(RecordQuery(ID_A), soon())
    assert fake.calls == 4
    assert str(adapter.state) == "open"

    # Half-open again; a successful probe closes.
    clock.now += 5.0
    fake.script = deque(["ok"])
    assert (await adapter.fetch(RecordQuery(ID_A), soon())).record
    assert str(adapter.state) == "closed"
    assert transitions == [
        ("household", "open"),
        ("household", "half_open"),
        ("household", "open"),
        ("household", "half_open"),
        ("household", "closed"),
    ]
    stats = adapter.stats()
    assert (stats.breaker_opens, stats.short_circuited) == (2, 1)


async def test_open_circuit_is_not_retried() -> None:
    fake = FakeDepartment(["unavailable"])
    adapter = wrap(fake, retries=5, breaker_failures=2)
    with pytest.raises(CircuitOpen):
        await adapter.fetch(RecordQuery(ID_A), soon())
    assert fake.calls == 2  # the second failure opened it; the third attempt was refused


async def test_bulkhead_rejects_beyond_its_queue() -> None:
    fake = FakeDepartment(["gate"])
    adapter = wrap(fake, max_concurrency=2, max_queue=3, breaker_failures=1)
    ids = [f"35010019900307{i:03d}X" for i in range(5)]
    calls = [asyncio.create_task(adapter.fetch(RecordQuery(i), soon())) for i in ids]
    await settle()
    assert (adapter.bulkhead.active, adapter.bulkhead.waiting) == (2, 3)
    with pytest.raises(DepartmentOverloaded) as caught:
        await adapter.fetch(RecordQuery("350100199003071999"), soon())
    assert caught.value.reason == "DEPARTMENT_OVERLOADED"
    assert fake.calls == 2
    fake.gate.set()
    results = await asyncio.gather(*calls)
    assert [r.record for r in results] == [f"record of {i}" for i in ids]
    assert adapter.stats().rejected == 1
    assert str(adapter.state) == "closed"  # our own refusal is not the department's failure


async def test_bulkhead_queue_wait_is_bounded_by_the_deadline() -> None:
    fake = FakeDepartment(["gate"])
    adapter = wrap(fake, max_concurrency=1, max_queue=1, breaker_failures=1)
    holder = asyncio.create_task(adapter.fetch(RecordQuery(ID_A), soon()))
    await settle()
    with pytest.raises(DepartmentTimeout):
        await adapter.fetch(RecordQuery(ID_B), soon(0.03))
    await settle()  # the abandoned shared call unwinds right after its caller has left
    assert adapter.bulkhead.waiting == 0
    fake.gate.set()
    await holder
    assert str(adapter.state) == "closed"


async def test_single_flight_coalesces_identical_fetches() -> None:
    fake = FakeDepartment(["gate"])
    adapter = wrap(fake)
    calls = [
        asyncio.create_task(adapter.fetch(RecordQuery(ID_A, request_id=str(i)), soon()))
        for i in range(100)
    ]
    await settle()
    fake.gate.set()
    results = await asyncio.gather(*calls)
    assert fake.calls == 1
    assert {r.record for r in results} == {f"record of {ID_A}"}
    assert adapter.stats().coalesced == 99
    # Not a cache: the next fetch after completion goes to the department again.
    await adapter.fetch(RecordQuery(ID_A), soon())
    assert fake.calls == 2


async def test_single_flight_does_not_coalesce_distinct_ids() -> None:
    fake = FakeDepartment(["gate"])
    adapter = wrap(fake, max_concurrency=100)
    ids = [f"3501001990030{i:04d}X" for i in range(100)]
    calls = [asyncio.create_task(adapter.fetch(RecordQuery(i), soon())) for i in ids]
    await settle()
    fake.gate.set()
    await asyncio.gather(*calls)
    assert fake.calls == 100
    assert adapter.stats().coalesced == 0


async def test_single_flight_errors_reach_every_waiter() -> None:
    fake = FakeDepartment(["not_found"])
    adapter = wrap(fake)
    results = await asyncio.gather(
        *(adapter.fetch(RecordQuery(ID_A), soon()) for _ in range(10)), return_exceptions=True
    )
    assert all(isinstance(r, RecordNotFound) for r in results)
    assert fake.calls == 1


async def test_short_waiter_leaves_without_cutting_the_shared_call() -> None:
    fake = FakeDepartment(["gate"])
    adapter = wrap(fake)
    patient = asyncio.create_task(adapter.fetch(RecordQuery(ID_A), soon(30)))
    await settle()
    with pytest.raises(DepartmentTimeout):
        await adapter.fetch(RecordQuery(ID_A), soon(0.03))
    assert fake.cancelled == 0
    fake.gate.set()
    assert (await patient).record
    assert fake.calls == 1


async def test_late_joiner_extends_the_shared_call_from_its_next_attempt() -> None:
    # The first caller's deadline bounds the first attempt; the second caller can wait
    # longer, so the shared call retries under the later deadline and answers it.
    fake = FakeDepartment(["hang", "ok"])
    adapter = wrap(fake, retries=1, breaker_failures=1)
    hasty = asyncio.create_task(adapter.fetch(RecordQuery(ID_A), soon(0.05)))
    await settle()
    patient = asyncio.create_task(adapter.fetch(RecordQuery(ID_A), soon(30)))
    with pytest.raises(DepartmentTimeout):
        await hasty
    assert (await patient).record
    assert fake.calls == 2
    assert fake.cancelled == 1
    assert str(adapter.state) == "closed"  # the first attempt hit a caller's deadline


async def test_last_waiter_leaving_cancels_the_shared_call() -> None:
    fake = FakeDepartment(["hang"])
    adapter = wrap(fake)
    waiters = [asyncio.create_task(adapter.fetch(RecordQuery(ID_A), soon())) for _ in range(3)]
    await settle()
    for w in waiters:
        w.cancel()
    await asyncio.gather(*waiters, return_exceptions=True)
    await settle()
    assert fake.cancelled == 1
    assert len(adapter._flights) == 0


async def test_hedging_starts_a_second_attempt_and_cancels_the_loser() -> None:
    fake = FakeDepartment(["hang", "ok"])
    adapter = wrap(fake, hedge_after_ms=10)
    result = await adapter.fetch(RecordQuery(ID_A), soon())
    assert result.record
    await settle()
    assert fake.calls == 2
    assert fake.cancelled == 1  # the hanging first attempt lost and was cancelled
    assert adapter.stats().hedges == 1
    assert str(adapter.state) == "closed"


async def test_hedging_waits_for_the_other_attempt_after_a_failure() -> None:
    fake = FakeDepartment(["gate", "unavailable"])
    adapter = wrap(fake, hedge_after_ms=5, retries=0, breaker_failures=10)
    call = asyncio.create_task(adapter.fetch(RecordQuery(ID_A), soon()))
    await until(lambda: fake.calls == 2)
    await settle()  # the hedge has failed; the first attempt is still out
    fake.gate.set()
    assert (await call).record


async def test_hedging_is_off_by_default() -> None:
    fake = FakeDepartment(["gate"])
    adapter = wrap(fake)
    call = asyncio.create_task(adapter.fetch(RecordQuery(ID_A), soon()))
    await asyncio.sleep(0.02)
    fake.gate.set()
    await call
    assert fake.calls == 1
    assert adapter.stats().hedges == 0


async def test_no_task_leaks_after_a_thousand_failed_calls() -> None:
    before = asyncio.all_tasks()
    script = ["unavailable", "malformed", "hang", "timeout", "reset", "not_found"] * 200
    fake = FakeDepartment(script)
    adapter = wrap(
        fake, retries=1, breaker_failures=50, breaker_reset_ms=1, hedge_after_ms=1, max_queue=2000
    )
    failures = 0
    for batch in range(10):
        ids = [f"3501001990{batch:02d}{i:04d}X" for i in range(100)]
        results = await asyncio.gather(
            *(adapter.fetch(RecordQuery(i), soon(0.02)) for i in ids), return_exceptions=True
        )
        failures += sum(isinstance(r, Exception) for r in results)
    assert failures == 1000
    await settle()
    assert asyncio.all_tasks() == before
    assert len(adapter._flights) == 0
    assert adapter.bulkhead.active == 0


async def test_close_cancels_calls_in_flight_and_delegates() -> None:
    before = asyncio.all_tasks()
    fake = FakeDepartment(["hang"])
    adapter = wrap(fake, hedge_after_ms=1)
    call = asyncio.create_task(adapter.fetch(RecordQuery(ID_A), soon()))
    await until(lambda: fake.calls == 2)  # the first attempt and its hedge both hang
    await adapter.close()
    with pytest.raises(DepartmentUnavailable):
        await call  # the caller sees a typed error, not a stray CancelledError
    assert fake.closed
    assert fake.cancelled == fake.calls == 2
    with pytest.raises(DepartmentUnavailable):
        await adapter.fetch(RecordQuery(ID_A), soon())
    await settle()
    assert asyncio.all_tasks() == before


async def test_health_delegates() -> None:
    fake = FakeDepartment()
    adapter: DepartmentAdapter[str] = wrap(fake)  # it is itself a department adapter
    assert await adapter.health()
    fake.healthy = False
    assert not await adapter.health()
    assert adapter.department == "household"
