"""`ResilientAdapter`: one department adapter wrapped in deadlines, retries, a circuit
breaker, a bulkhead, single-flight and (optionally) hedging. It is itself a
`DepartmentAdapter`, so the router cannot tell the difference, except that it fails fast.

One `fetch`, outside in:

    single-flight        concurrent fetches for the same ID number share one call; each
                         caller waits to its own deadline.
      retry loop         attempts while the error is retryable, time is left and the
                         retry budget allows; full-jitter exponential backoff between them
        hedged round     optional: a second attempt after `hedge_after_ms`, first answer wins
          attempt        breaker permit → bulkhead slot → inner.fetch, all under
                         min(shared deadline, now + timeout_ms)

Contract: `fetch` answers, raises a typed department error, or raises `DepartmentTimeout`
when the caller's deadline passes, with the attempt in flight cancelled (asyncio timers,
so the overshoot is one loop iteration plus the inner adapter's cancellation clean-up).
Every task it starts is awaited or cancelled, and `close()` waits for all of them.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Generic, TypeVar

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
from gateway.server.resilience._time import loop_instant
from gateway.server.resilience.breaker import CircuitBreaker, CircuitOpen, State
from gateway.server.resilience.bulkhead import Bulkhead, DepartmentOverloaded
from gateway.server.resilience.config import ResilienceConfig
from gateway.server.resilience.retry import RetryBudget, backoff, is_retryable
from gateway.server.resilience.singleflight import Flight, SingleFlight

R = TypeVar("R")


class _Outcome(Enum):
    SUCCESS = "success"
    FAILURE = "failure"
    NEUTRAL = "neutral"


@dataclass(frozen=True)
class ResilienceStats:
    """Counters since the adapter was built (for tests and metrics)."""

    calls: int  # fetch() calls, coalesced ones included
    attempts: int  # calls made to the inner adapter
    retries: int  # attempts after the first, within one shared call
    hedges: int  # second attempts started by hedging
    coalesced: int  # fetch() calls that joined a call already in flight
    rejected: int  # refused by the bulkhead (queue full)
    short_circuited: int  # refused by the open circuit
    breaker_opens: int  # times the circuit opened
    timeouts: int  # fetch() calls that ended with DepartmentTimeout
    slow_calls: int  # attempts the department held past slow_call_ms (answered or not)
    budget_exhausted: int  # retries or hedges the retry budget refused
    state: State  # the circuit breaker's state now


class ResilientAdapter(Generic[R]):
    """A `DepartmentAdapter` around `inner`. `clock` drives the breaker and the retry budget
    (deadlines are `time.monotonic()` instants by the adapter protocol); `rng` the jitter;
    `on_state_change(department, state)` hears every breaker transition."""

    def __init__(
        self,
        inner: DepartmentAdapter[R],
        config: ResilienceConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        on_state_change: Callable[[str, str], None] | None = None,
    ) -> None:
        cfg = config or ResilienceConfig()
        self.department: DepartmentId = inner.department
        self.config = cfg
        self._inner = inner
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 -- backoff jitter, not a secret
        self.breaker = CircuitBreaker(
            inner.department,
            failures=cfg.breaker_failures,
            reset_s=cfg.breaker_reset_ms / 1000,
            probes=cfg.breaker_half_open_probes,
            slow_rate=cfg.slow_call_rate,
            slow_window=cfg.slow_call_window,
            clock=clock,
            on_state_change=on_state_change,
        )
        self.bulkhead = Bulkhead(inner.department, cfg.max_concurrency, cfg.max_queue)
        self.budget = RetryBudget(
            cfg.retry_budget_ratio,
            cfg.retry_budget_min,
            cfg.retry_budget_window_ms / 1000,
            clock=clock,
        )
        self._flights: SingleFlight[tuple[str, str], Fetched[R]] = SingleFlight()
        self._hedge_tasks: set[asyncio.Task[Fetched[R]]] = set()
        self._closed = False
        self._calls = self._attempts = self._retries = self._hedges = 0
        self._short_circuited = self._timeouts = self._budget_exhausted = 0
        self._slow_calls = 0

    @property
    def state(self) -> State:
        return self.breaker.state

    def stats(self) -> ResilienceStats:
        return ResilienceStats(
            calls=self._calls,
            attempts=self._attempts,
            retries=self._retries,
            hedges=self._hedges,
            coalesced=self._flights.coalesced,
            rejected=self.bulkhead.rejected,
            short_circuited=self._short_circuited,
            breaker_opens=self.breaker.opens,
            timeouts=self._timeouts,
            slow_calls=self._slow_calls,
            budget_exhausted=self._budget_exhausted,
            state=self.breaker.state,
        )

    async def fetch(self, query: RecordQuery, deadline: float) -> Fetched[R]:
        self._calls += 1
        if self._closed:
            raise DepartmentUnavailable(f"{self.department}: adapter is closed")
        if deadline <= time.monotonic():
            self._timeouts += 1
            raise DepartmentTimeout(f"{self.department}: no time left before the deadline")
        try:
            # Identical = the same evidence about the same subject: a department
            # answers with the whole record and the read mask is applied above. The shared
            # call carries the first caller's request id.
            return await self._flights.do(
                query.key, deadline, lambda flight: self._call(query, flight)
            )
        except TimeoutError:
            self._timeouts += 1
            raise DepartmentTimeout(f"{self.department}: no answer before the deadline") from None
        except DepartmentTimeout:
            self._timeouts += 1
            raise
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling() == 0:
                # The shared call was cancelled under us (close()), not this caller.
                raise DepartmentUnavailable(f"{self.department}: adapter is closing") from None
            raise

    async def health(self) -> bool:
        return await self._inner.health()

    async def close(self) -> None:
        """Refuse new calls, cancel and await every call in flight, close the inner adapter."""
        self._closed = True
        await self._flights.cancel_all()
        hedges = list(self._hedge_tasks)
        for task in hedges:
            task.cancel()
        await asyncio.gather(*hedges, return_exceptions=True)
        await self._inner.close()

    # -- the shared call -------------------------------------------------------------------

    async def _call(self, query: RecordQuery, flight: Flight) -> Fetched[R]:
        cfg = self.config
        self.budget.record_call()
        retry = 0
        while True:
            try:
                if cfg.hedge_after_ms > 0:
                    return await self._hedged(query, flight)
                return await self._attempt(query, flight)
            except Exception as exc:
                if not is_retryable(exc) or retry >= cfg.retries:
                    raise
                delay = backoff(
                    retry, cfg.retry_backoff_ms / 1000, cfg.retry_backoff_max_ms / 1000, self._rng
                )
                # Time for the sleep and a useful attempt after it, or do not start.
                if flight.deadline - time.monotonic() < delay + cfg.retry_min_attempt_ms / 1000:
                    raise
                if not self.budget.try_spend():
                    self._budget_exhausted += 1
                    raise
            retry += 1
            self._retries += 1
            await asyncio.sleep(delay)

    async def _attempt(self, query: RecordQuery, flight: Flight) -> Fetched[R]:
        try:
            permit = self.breaker.acquire()
        except CircuitOpen:
            self._short_circuited += 1
            raise
        self._attempts += 1
        start = time.monotonic()
        ceiling = start + self.config.timeout_s
        # A timeout is the department's fault when its own ceiling was the bound, or when it
        # had been silent past the slow-call threshold as the caller's deadline came: a caller
        # with a 10 ms deadline must not open the circuit for everyone else, and callers with
        # 300 ms deadlines must not keep a hanging department's circuit closed.
        bounded_by_department = ceiling <= flight.deadline
        deadline = min(ceiling, flight.deadline)
        outcome = _Outcome.NEUTRAL
        sent_at: float | None = None  # when the call left the bulkhead for the department
        try:
            async with asyncio.timeout_at(loop_instant(deadline)):
                await self.bulkhead.acquire()
                sent_at = self._clock()
                try:
                    result = await self._inner.fetch(query, deadline)
                finally:
                    self.bulkhead.release()
            outcome = _Outcome.SUCCESS
            return result
        except RecordNotFound:
            outcome = _Outcome.SUCCESS  # the department answered
            raise
        except DepartmentOverloaded:
            raise  # our own refusal: says nothing about the department
        except (DepartmentTimeout, TimeoutError) as exc:
            # A wait in the bulkhead queue is not the department's fault either.
            if sent_at is not None and (bounded_by_department or self._slow(sent_at)):
                outcome = _Outcome.FAILURE
            if isinstance(exc, DepartmentTimeout):
                raise
            waited_ms = (deadline - start) * 1000
            raise DepartmentTimeout(
                f"{self.department}: no answer within {waited_ms:.0f} ms"
            ) from None
        except DepartmentUnavailable:  # down, refusing, or malformed
            outcome = _Outcome.FAILURE
            raise
        except OSError:
            outcome = _Outcome.FAILURE
            raise DepartmentUnavailable(f"{self.department}: connection failed") from None
        except Exception:
            outcome = _Outcome.FAILURE  # an adapter bug still means this path is broken
            raise
        finally:
            slow = sent_at is not None and self._slow(sent_at)
            if slow and outcome is not _Outcome.NEUTRAL:
                self._slow_calls += 1
            if outcome is _Outcome.SUCCESS:
                self.breaker.success(permit, slow=slow)
            elif outcome is _Outcome.FAILURE:
                self.breaker.failure(permit, slow=slow)
            else:
                self.breaker.release(permit)

    def _slow(self, sent_at: float) -> bool:
        """The department has held the call for the slow-call threshold."""
        return self._clock() - sent_at >= self.config.slow_call_s

    async def _hedged(self, query: RecordQuery, flight: Flight) -> Fetched[R]:
        """One attempt, plus a second after `hedge_after_ms` if the first has not answered.
        The first answer (a record, not-found or a malformed body) wins and the other attempt
        is cancelled; a failure of one attempt waits for the other."""
        loop = asyncio.get_running_loop()
        tasks = [self._spawn(loop, query, flight)]
        try:
            done, _ = await asyncio.wait(tasks, timeout=self.config.hedge_after_s)
            if not done and self._may_hedge(flight):
                self._hedges += 1
                tasks.append(self._spawn(loop, query, flight))
            pending = set(tasks)
            errors: dict[asyncio.Task[Fetched[R]], BaseException] = {}
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    exc = task.exception()
                    if exc is None:
                        return task.result()
                    if isinstance(exc, (RecordNotFound, DepartmentMalformed)):
                        raise exc
                    errors[task] = exc
            raise next(errors[t] for t in tasks if t in errors)  # the primary's error first
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _may_hedge(self, flight: Flight) -> bool:
        if self.breaker.state != "closed":
            return False  # a struggling department gets no extra load
        if flight.deadline - time.monotonic() < self.config.retry_min_attempt_ms / 1000:
            return False
        if not self.budget.try_spend():
            self._budget_exhausted += 1
            return False
        return True

    def _spawn(
        self, loop: asyncio.AbstractEventLoop, query: RecordQuery, flight: Flight
    ) -> asyncio.Task[Fetched[R]]:
        task = loop.create_task(self._attempt(query, flight))
        self._hedge_tasks.add(task)
        task.add_done_callback(self._hedge_tasks.discard)
        return task
