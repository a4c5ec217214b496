"""`ResilienceConfig`: how hard the gateway tries one department, read from its TOML table.

The keys live in the department's own `[departments.<name>]` table, next to the adapter's
keys (`url`, `dsn`, `pool_size`, ...), which this parser leaves alone. Every key is optional:

| key                        | default | meaning |
|----------------------------|--------:|---------|
| `timeout_ms`               | 2000    | one attempt's ceiling; the caller's deadline may cut it |
| `retries`                  | 2       | extra attempts after the first (0 = never retry) |
| `retry_backoff_ms`         | 50      | base of the exponential backoff (full jitter) |
| `retry_backoff_max_ms`     | 1000    | cap of one backoff sleep |
| `retry_min_attempt_ms`     | 10      | a retry starts only if backoff + this much time is left |
| `retry_budget_ratio`       | 0.2     | retries + hedges ≤ this fraction of calls in the window |
| `retry_budget_min`         | 10      | retries allowed per window anyway (a cold start) |
| `retry_budget_window_ms`   | 10000   | the sliding window of the retry budget |
| `breaker_failures`         | 5       | consecutive failures that open the circuit |
| `breaker_reset_ms`         | 5000    | open → half-open after this long |
| `breaker_half_open_probes` | 1       | trial calls in half-open; all must succeed to close |
| `slow_call_ms`             | 200     | a call the department holds this long is slow (below) |
| `slow_call_rate`           | 0       | 0 = off; else open when this share of the window is slow |
| `slow_call_window`         | 10      | the calls the slow-call rate is taken over |
| `max_concurrency`          | 32      | bulkhead: calls in flight to the department at once |
| `max_queue`                | 64      | calls waiting for a bulkhead slot; beyond this, fail fast |
| `hedge_after_ms`           | 0       | 0 = off; else a second attempt starts after this delay |

Slow calls (resilience4j's `slowCallDurationThreshold` and `slowCallRateThreshold`). The time
is the department's: from the moment the call leaves the bulkhead. A call that the caller's
deadline ends after the department has been silent for `slow_call_ms` is a failure, like a
timeout at the department's own ceiling: callers whose deadlines are below `timeout_ms` (an
approval UI's 300 ms to 1 s) otherwise never open the circuit, however long the department
hangs, and each call holds a slot for its whole deadline. A call the caller's deadline ends
sooner says nothing about the department and counts for nothing. A call answered after
`slow_call_ms` is an answer; with `slow_call_rate` set, the circuit opens when at least that
fraction of the last `slow_call_window` calls (answered or failed) were slow, and a slow
half-open probe opens it again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from gateway.domain.errors import ConfigError


@dataclass(frozen=True)
class ResilienceConfig:
    timeout_ms: int = 2000
    retries: int = 2
    retry_backoff_ms: int = 50
    retry_backoff_max_ms: int = 1000
    retry_min_attempt_ms: int = 10
    retry_budget_ratio: float = 0.2
    retry_budget_min: int = 10
    retry_budget_window_ms: int = 10_000
    breaker_failures: int = 5
    breaker_reset_ms: int = 5000
    breaker_half_open_probes: int = 1
    max_concurrency: int = 32
    max_queue: int = 64
    hedge_after_ms: int = 0
    slow_call_ms: int = 200
    slow_call_rate: float = 0.0
    slow_call_window: int = 10

    def __post_init__(self) -> None:
        positive = {
            "timeout_ms", "breaker_failures", "breaker_reset_ms", "breaker_half_open_probes",
            "max_concurrency", "retry_budget_window_ms", "slow_call_ms", "slow_call_window",
        }  # fmt: skip
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in positive and value <= 0:
                raise ConfigError(f"{f.name} must be positive, not {value}")
            if value < 0:
                raise ConfigError(f"{f.name} must not be negative, not {value}")
        if self.retry_backoff_max_ms < self.retry_backoff_ms:
            raise ConfigError("retry_backoff_max_ms must be at least retry_backoff_ms")
        if self.slow_call_rate > 1:
            raise ConfigError(f"slow_call_rate must be at most 1, not {self.slow_call_rate}")

    @classmethod
    def from_table(cls, table: Mapping[str, Any], *, where: str = "department") -> ResilienceConfig:
        """The resilience keys of one `[departments.<name>]` table; other keys are ignored
        (they belong to the adapter). A wrong type or range is a `ConfigError` naming the key."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in table:
                continue
            value = table[f.name]
            wants_float = f.type == "float"
            if isinstance(value, bool) or not isinstance(
                value, (int, float) if wants_float else int
            ):
                kind = "a number" if wants_float else "an integer"
                raise ConfigError(f"{where}.{f.name}: must be {kind}")
            values[f.name] = float(value) if wants_float else value
        try:
            return cls(**values)
        except ConfigError as exc:
            raise ConfigError(f"{where}.{exc.message}") from None

    @property
    def timeout_s(self) -> float:
        return self.timeout_ms / 1000

    @property
    def hedge_after_s(self) -> float:
        return self.hedge_after_ms / 1000

    @property
    def slow_call_s(self) -> float:
        return self.slow_call_ms / 1000
