"""Admission at the gateway's door: at most `max_in_flight` requests inside at once.

Beyond that a request is refused at once with RESOURCE_EXHAUSTED and a RetryInfo delay,
never queued: a queue in front of an overloaded server only adds latency until every
caller's deadline has passed (Google SRE book, ch. 21, "Handling Overload"; tessera's
`ErrPushback` is the same idea for a log).

The retry delay grows with how hard callers are pushing: `pressure` is the number of recent
refusals, decaying with a half-life of `half_life_s`; the delay goes linearly from
`min_retry_after` (no recent refusals) to `max_retry_after` (a whole gateway's worth of
refusals, `max_in_flight`, in about the last half-life). Successive refusals in a burst get
growing delays, which also spreads their retries apart.

Hot path: an admitted request costs a comparison and an increment. No locks (asyncio runs
the handlers on one thread), no tasks, no timers; the clock is read only on a refusal.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType

from gateway.domain.errors import ResourceExhausted


class Admission:
    """Counts requests in and out. Use `async with admission.admit():` (or `with`), or the
    pair `try_enter()` / `leave()`."""

    __slots__ = (
        "_clock", "_half_life_s", "_in_flight", "_last_refusal", "_max", "_pressure",
        "max_retry_after", "min_retry_after", "rejected",
    )  # fmt: skip

    def __init__(
        self,
        max_in_flight: int = 512,
        *,
        min_retry_after: float = 0.05,
        max_retry_after: float = 1.0,
        half_life_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_in_flight <= 0:
            raise ValueError("max_in_flight must be positive")
        if not 0 <= min_retry_after <= max_retry_after:
            raise ValueError("need 0 <= min_retry_after <= max_retry_after")
        self._max = max_in_flight
        self.min_retry_after = min_retry_after
        self.max_retry_after = max_retry_after
        self._half_life_s = half_life_s
        self._clock = clock
        self._in_flight = 0
        self._pressure = 0.0
        self._last_refusal = 0.0
        #: requests refused since start
        self.rejected = 0

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def max_in_flight(self) -> int:
        return self._max

    def try_enter(self) -> bool:
        """Admit one request (True) or count a refusal (False). Every True needs a `leave()`."""
        if self._in_flight < self._max:
            self._in_flight += 1
            return True
        self._refuse()
        return False

    def leave(self) -> None:
        if self._in_flight <= 0:
            raise RuntimeError("Admission.leave() without a matching enter")
        self._in_flight -= 1

    def enter(self) -> None:
        """Admit one request or raise `ResourceExhausted` (reason OVERLOADED, RetryInfo)."""
        if not self.try_enter():
            raise ResourceExhausted(
                "the gateway is at capacity", retry_after=self.retry_after(), reason="OVERLOADED"
            )

    def retry_after(self) -> float:
        """Seconds a refused caller should wait, from the current pressure."""
        load = min(1.0, self._decayed(self._clock()) / self._max)
        return self.min_retry_after + (self.max_retry_after - self.min_retry_after) * load

    def admit(self) -> Admission:
        """A context manager (sync or async) holding one admission; raises on entry when full."""
        return self

    def __enter__(self) -> None:
        self.enter()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.leave()

    async def __aenter__(self) -> None:
        self.enter()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.leave()

    def _refuse(self) -> None:
        now = self._clock()
        self._pressure = self._decayed(now) + 1.0
        self._last_refusal = now
        self.rejected += 1

    def _decayed(self, now: float) -> float:
        if self._pressure == 0.0:
            return 0.0
        elapsed = max(0.0, now - self._last_refusal)
        return float(self._pressure * 0.5 ** (elapsed / self._half_life_s))
