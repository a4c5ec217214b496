"""Protecting the gateway from its departments and from its callers' bursts.

`ResilientAdapter` wraps a department adapter with deadlines, retries within a budget, a
circuit breaker, a bulkhead, single-flight and optional hedging; `ResilienceConfig` reads
its knobs from the department's `[departments.<name>]` table. The pieces live in their own
modules and are usable (and tested) alone:

- `breaker`      `CircuitBreaker`, `CircuitOpen`: closed → open → half-open → closed
- `retry`        `RetryBudget`, `backoff`, `is_retryable`
- `bulkhead`     `Bulkhead`, `DepartmentOverloaded`: bounded concurrency and queue
- `singleflight` `SingleFlight`: concurrent identical fetches share one call
- `adapter`      `ResilientAdapter`, `ResilienceStats`: all of the above around one adapter

Gateway-wide admission (bounded in-flight requests) is `gateway.server.admission`.
"""

from gateway.server.resilience.adapter import ResilienceStats, ResilientAdapter
from gateway.server.resilience.breaker import CircuitBreaker, CircuitOpen, Permit, State
from gateway.server.resilience.bulkhead import Bulkhead, DepartmentOverloaded
from gateway.server.resilience.config import ResilienceConfig
from gateway.server.resilience.retry import RetryBudget, backoff, is_retryable
from gateway.server.resilience.singleflight import Flight, SingleFlight

__all__ = [
    "Bulkhead",
    "CircuitBreaker",
    "CircuitOpen",
    "DepartmentOverloaded",
    "Flight",
    "Permit",
    "ResilienceConfig",
    "ResilienceStats",
    "ResilientAdapter",
    "RetryBudget",
    "SingleFlight",
    "State",
    "backoff",
    "is_retryable",
]
