"""A per-department circuit breaker: closed → open → half-open → closed.

Closed: calls pass; `failures` consecutive failures open the circuit, and so does a window
of slow calls when `slow_rate` is set: once the last `slow_window` calls are in, the circuit
opens when at least that fraction of them were slow (resilience4j's slow-call rate). Open:
calls fail fast with `CircuitOpen` (UNAVAILABLE plus RetryInfo) until `reset_s` has passed,
then the breaker is half-open. Half-open: at most `probes` trial calls pass; when all of them
succeed, none of them slowly, the circuit closes; when one fails, or answers slowly while the
slow-call rate is on, it opens again for another `reset_s`.

What counts: the caller says. A success is any answer, including "no such record"; a failure
is the department being down, slow past its own ceiling, answering garbage, or silent past
the slow-call threshold when the caller's deadline ended the call. Either may be `slow`.
Anything else (a caller whose deadline ended the call sooner, a bulkhead refusal) is
`release`d: neutral, it only returns a probe slot.

Every permit carries the generation it was issued in (the generation moves on each state
change), so a slow call admitted before the circuit opened cannot, when it finally ends,
close a circuit or use up a probe that belongs to a later period.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2

from adapters.base import DepartmentUnavailable

State = Literal["closed", "half_open", "open"]


class CircuitOpen(DepartmentUnavailable):
    """The department's circuit is open: the call was not attempted."""

    reason = "CIRCUIT_OPEN"

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def details(self) -> list[any_pb2.Any]:
        whole = int(self.retry_after)
        retry = error_details_pb2.RetryInfo(
            retry_delay=duration_pb2.Duration(
                seconds=whole, nanos=int((self.retry_after - whole) * 1e9)
            )
        )
        packed = any_pb2.Any()
        packed.Pack(retry)
        return [*super().details(), packed]


@dataclass(frozen=True, slots=True)
class Permit:
    """Leave to make one call; hand it back with `success`, `failure` or `release`."""

    generation: int
    probe: bool


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        *,
        failures: int = 5,
        reset_s: float = 5.0,
        probes: int = 1,
        slow_rate: float = 0.0,
        slow_window: int = 10,
        clock: Callable[[], float] = time.monotonic,
        on_state_change: Callable[[str, str], None] | None = None,
    ) -> None:
        """`slow_rate` 0 turns the slow-call rate off; slow failures still count as failures."""
        self.name = name
        self._threshold = failures
        self._reset_s = reset_s
        self._probes = probes
        self._slow_rate = slow_rate
        #: slow or not, the last `slow_window` calls that ended with an answer or a failure
        self._window: deque[bool] = deque(maxlen=slow_window)
        #: slow calls in a full window that open the circuit (0.7 × 10 is 7, not 7.000…1)
        self._slow_needed = max(1, math.ceil(round(slow_rate * slow_window, 6)))
        self._clock = clock
        self._on_state_change = on_state_change
        self._state: State = "closed"
        self._generation = 0
        self._failures = 0  # consecutive, while closed
        self._opened_at = 0.0
        self._probes_out = 0  # half-open trial calls still running
        self._probes_ok = 0  # half-open trial calls that succeeded
        #: how many times the circuit has opened
        self.opens = 0

    @property
    def state(self) -> State:
        self._poll()
        return self._state

    def acquire(self) -> Permit:
        """A permit for one call, or `CircuitOpen` when the call must not be made."""
        self._poll()
        if self._state == "closed":
            return Permit(self._generation, probe=False)
        if self._state == "half_open":
            if self._probes_out + self._probes_ok < self._probes:
                self._probes_out += 1
                return Permit(self._generation, probe=True)
            # The probes are out; their outcome decides. Ask again about when one would end.
            raise CircuitOpen(f"{self.name}: circuit half-open, probing", retry_after=self._reset_s)
        retry_after = max(0.0, self._opened_at + self._reset_s - self._clock())
        raise CircuitOpen(f"{self.name}: circuit open", retry_after=retry_after)

    def success(self, permit: Permit, *, slow: bool = False) -> None:
        """The department answered; `slow`: only after the slow-call threshold."""
        if permit.generation != self._generation:
            return
        if self._state == "closed":
            self._failures = 0
            self._count_slow(slow)
        elif self._state == "half_open" and permit.probe:
            if slow and self._slow_rate > 0:
                self._transition("open")  # a slow probe says the department is still slow
                return
            self._probes_out -= 1
            self._probes_ok += 1
            if self._probes_ok >= self._probes:
                self._transition("closed")

    def failure(self, permit: Permit, *, slow: bool = False) -> None:
        if permit.generation != self._generation:
            return
        if self._state == "closed":
            self._failures += 1
            if self._failures >= self._threshold:
                self._transition("open")
            else:
                self._count_slow(slow)
        elif self._state == "half_open" and permit.probe:
            self._transition("open")

    def _count_slow(self, slow: bool) -> None:
        if self._slow_rate <= 0:
            return
        window = self._window
        window.append(slow)
        if len(window) == window.maxlen and sum(window) >= self._slow_needed:
            self._transition("open")

    def release(self, permit: Permit) -> None:
        """The call ended without saying anything about the department."""
        if permit.generation == self._generation and permit.probe and self._state == "half_open":
            self._probes_out -= 1

    def _poll(self) -> None:
        # Open → half-open happens by the clock, so it is noticed when someone looks.
        if self._state == "open" and self._clock() - self._opened_at >= self._reset_s:
            self._transition("half_open")

    def _transition(self, state: State) -> None:
        self._state = state
        self._generation += 1
        self._failures = 0
        self._probes_out = 0
        self._probes_ok = 0
        self._window.clear()
        if state == "open":
            self._opened_at = self._clock()
            self.opens += 1
        if self._on_state_change is not None:
            self._on_state_change(self.name, state)
