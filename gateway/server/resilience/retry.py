"""When a failed department call may be tried again, how long to wait, and how many retries
the department can take.

Retries multiply load exactly when a department is struggling, so three things hold them
back: only failures that a second try can fix are retried (`is_retryable`), each retry waits
an exponentially growing, fully jittered delay (`backoff`; AWS Architecture Blog, "Exponential
Backoff And Jitter", 2015), and a `RetryBudget` keeps retries to a fraction of calls over a
sliding window (Google SRE book, ch. 22, "Handling Overload": per-client retry budget), so a
department that is down sees at most (1 + ratio) times its normal traffic, not (1 + retries).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from adapters.base import DepartmentMalformed, DepartmentTimeout, DepartmentUnavailable
from gateway.server.resilience.breaker import CircuitOpen
from gateway.server.resilience.bulkhead import DepartmentOverloaded

#: buckets the budget's sliding window is cut into
_BUCKETS = 10


def is_retryable(exc: BaseException) -> bool:
    """A second attempt may fix a department that is down, slow or dropped the connection.
    It cannot fix a garbage answer (the same query gets the same garbage), an open circuit
    or a full bulkhead (retrying would add the load they exist to shed); "no such record"
    is an answer, not a failure."""
    if isinstance(exc, (DepartmentMalformed, CircuitOpen, DepartmentOverloaded)):
        return False
    return isinstance(exc, (DepartmentUnavailable, DepartmentTimeout, OSError))


def backoff(retry: int, base_s: float, cap_s: float, rng: random.Random) -> float:
    """Seconds to sleep before retry number `retry` (0 for the first): full jitter,
    uniform in [0, min(cap, base · 2^retry)]."""
    return rng.uniform(0.0, min(cap_s, base_s * 2 ** min(retry, 32)))


class RetryBudget:
    """Allows a retry while retries ≤ `ratio` × calls + `minimum` over the last `window_s`.

    The window is `_BUCKETS` buckets of `window_s / _BUCKETS`; a bucket older than the window
    is emptied when the clock passes it. O(_BUCKETS) per question, no tasks, no timers.
    """

    def __init__(
        self,
        ratio: float,
        minimum: int,
        window_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ratio = ratio
        self._minimum = minimum
        self._bucket_s = window_s / _BUCKETS
        self._clock = clock
        self._calls = [0] * _BUCKETS
        self._retries = [0] * _BUCKETS
        self._epoch = [0] * _BUCKETS  # which bucket number each slot currently holds

    def record_call(self) -> None:
        self._calls[self._advance()[1]] += 1

    def try_spend(self) -> bool:
        """True (and counted) when one more retry fits in the budget."""
        bucket, slot = self._advance()
        calls = retries = 0
        for i in range(_BUCKETS):
            if bucket - self._epoch[i] < _BUCKETS:  # slots older than the window count for 0
                calls += self._calls[i]
                retries += self._retries[i]
        if retries + 1 > self._ratio * calls + self._minimum:
            return False
        self._retries[slot] += 1
        return True

    def _advance(self) -> tuple[int, int]:
        bucket = int(self._clock() // self._bucket_s)
        slot = bucket % _BUCKETS
        if self._epoch[slot] != bucket:
            self._epoch[slot] = bucket
            self._calls[slot] = 0
            self._retries[slot] = 0
        return bucket, slot
