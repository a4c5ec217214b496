"""The token bucket maths on an injected clock, the in-process limiter, and `[ratelimit]`."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.domain.errors import ConfigError, ResourceExhausted
from gateway.domain.policy import DEFAULT_RATE, RateLimit
from gateway.server.ratelimit import (
    Bucket,
    LocalRateLimiter,
    RedisRateLimiter,
    available,
    build_rate_limiter,
    caller_rate,
    take,
)
from tests.support.rules import policy_from


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def admitted(bucket: Bucket | None, rate: RateLimit, now: float) -> tuple[Bucket | None, bool]:
    new, wait = take(bucket, rate, now)
    return new, wait == 0.0


# ---- bucket maths -----------------------------------------------------------------------


def test_new_caller_gets_the_whole_burst_then_is_refused() -> None:
    rate = RateLimit(per_second=2.0, burst=3)
    bucket: Bucket | None = None
    for _ in range(3):
        bucket, ok = admitted(bucket, rate, 0.0)
        assert ok
    assert bucket is not None
    same, wait = take(bucket, rate, 0.0)
    assert same == bucket  # a refusal changes nothing
    assert wait == pytest.approx(0.5)


def test_steady_rate_after_the_burst() -> None:
    rate = RateLimit(per_second=10.0, burst=5)
    bucket: Bucket | None = None
    for _ in range(5):
        bucket, _ok = admitted(bucket, rate, 0.0)
    # from then on one request each 0.1 s is admitted and one more in between is not
    for step in range(1, 50):
        now = step * 0.1
        bucket, ok = admitted(bucket, rate, now)
        assert ok, step
        _, wait = take(bucket, rate, now + 0.05)
        assert wait == pytest.approx(0.05, abs=1e-6)


def test_retry_after_is_exact() -> None:
    rate = RateLimit(per_second=3.0, burst=1)
    bucket, _ = take(None, rate, 50.0)
    _, wait = take(bucket, rate, 50.2)
    assert wait == pytest.approx(1 / 3 - 0.2, abs=1e-6)
    # a hair early is refused, on time is admitted
    _, early = take(bucket, rate, 50.2 + wait - 1e-4)
    assert early > 0
    _, on_time = take(bucket, rate, 50.2 + wait)
    assert on_time == 0.0


def test_refill_caps_at_burst() -> None:
    rate = RateLimit(per_second=100.0, burst=4)
    assert available(Bucket(tokens=0.0, updated=0.0), rate, 3600.0) == 4.0
    # a lowered burst (policy reload) caps a fuller bucket at once
    assert available(Bucket(tokens=50.0, updated=0.0), rate, 0.0) == 4.0


def test_a_clock_that_goes_back_refills_nothing() -> None:
    rate = RateLimit(per_second=1.0, burst=2)
    bucket, _ = take(None, rate, 100.0)
    bucket, _ = take(bucket, rate, 100.0)
    _, wait = take(bucket, rate, 90.0)
    assert wait == pytest.approx(1.0)
    # and the earlier time is not stored: going forward again does not count twice
    assert bucket.updated == 100.0


@settings(max_examples=300, deadline=None)
@given(
    per_second=st.floats(min_value=0.05, max_value=200.0),
    burst=st.integers(min_value=1, max_value=30),
    gaps=st.lists(st.floats(min_value=0.0, max_value=2.0), min_size=1, max_size=150),
)
def test_no_window_admits_more_than_burst_plus_rate_times_window(
    per_second: float, burst: int, gaps: list[float]
) -> None:
    rate = RateLimit(per_second=per_second, burst=burst)
    bucket: Bucket | None = None
    now = 0.0
    times: list[float] = []
    for gap in gaps:
        now += gap
        bucket, ok = admitted(bucket, rate, now)
        if ok:
            times.append(now)
    # the densest windows start and end on admitted requests
    for i in range(len(times)):
        for j in range(i, len(times)):
            window = times[j] - times[i]
            assert j - i + 1 <= burst + per_second * window + 1e-6


@settings(max_examples=300, deadline=None)
@given(
    per_second=st.floats(min_value=0.05, max_value=200.0),
    burst=st.integers(min_value=1, max_value=30),
    gaps=st.lists(st.floats(min_value=0.0, max_value=0.5), min_size=1, max_size=100),
)
def test_every_refusal_names_the_moment_a_token_is_there(
    per_second: float, burst: int, gaps: list[float]
) -> None:
    rate = RateLimit(per_second=per_second, burst=burst)
    bucket: Bucket | None = None
    now = 0.0
    for gap in gaps:
        now += gap
        new, wait = take(bucket, rate, now)
        if wait:
            assert bucket is not None
            assert take(bucket, rate, now + wait)[1] == 0.0
            assert take(bucket, rate, now + wait * 0.99 - 1e-6)[1] > 0
        bucket = new


# ---- LocalRateLimiter -------------------------------------------------------------------


async def test_local_limiter_raises_rate_limited_with_retry_info() -> None:
    clock = FakeClock()
    limiter = LocalRateLimiter(clock=clock)
    rate = RateLimit(per_second=4.0, burst=2)
    await limiter.acquire("quangang-window", rate, known=True)
    await limiter.acquire("quangang-window", rate, known=True)
    with pytest.raises(ResourceExhausted) as refused:
        await limiter.acquire("quangang-window", rate, known=True)
    assert refused.value.reason == "RATE_LIMITED"
    assert refused.value.retry_after == pytest.approx(0.25)
    status = refused.value.to_status()
    assert status.code == 8  # RESOURCE_EXHAUSTED
    assert any(d.type_url.endswith("google.rpc.RetryInfo") for d in status.details)
    clock.now += 0.25
    await limiter.acquire("quangang-window", rate, known=True)


async def test_local_limiter_keeps_callers_apart() -> None:
    limiter = LocalRateLimiter(clock=FakeClock())
    rate = RateLimit(per_second=1.0, burst=1)
    await limiter.acquire("a", rate)
    with pytest.raises(ResourceExhausted):
        await limiter.acquire("a", rate)
    await limiter.acquire("b", rate)


async def test_local_limiter_memory_is_bounded_and_drops_the_idlest() -> None:
    clock = FakeClock()
    limiter = LocalRateLimiter(clock=clock, max_callers=3)
    rate = RateLimit(per_second=0.001, burst=1)
    for caller in ("a", "b", "c"):
        await limiter.acquire(caller, rate)
    with pytest.raises(ResourceExhausted):
        await limiter.acquire("a", rate)  # refused: touches nothing
    limiter.check("d", rate)  # evicts "a", the least recently admitted
    assert len(limiter) == 3
    await limiter.acquire("a", rate)  # a fresh bucket again
    for caller in ("c", "d"):
        with pytest.raises(ResourceExhausted):
            await limiter.acquire(caller, rate)
    await limiter.close()
    assert len(limiter) == 0


def test_local_limiter_rejects_a_zero_cap() -> None:
    with pytest.raises(ConfigError):
        LocalRateLimiter(max_callers=0)


def test_caller_rate_from_the_policy() -> None:
    policy = policy_from(
        b"""
[callers.quangang-window]
name = "window"
roles = ["approval"]
rate = { per_second = 7, burst = 9 }
""",
        "test.toml",
    )
    assert caller_rate(policy, "quangang-window") == (RateLimit(7.0, 9), True)
    assert caller_rate(policy, "stranger") == (DEFAULT_RATE, False)


# ---- [ratelimit] ------------------------------------------------------------------------


async def test_build_defaults_to_local() -> None:
    limiter = build_rate_limiter({})
    assert isinstance(limiter, LocalRateLimiter)
    assert isinstance(build_rate_limiter({"backend": "local"}), LocalRateLimiter)
    await limiter.close()


async def test_build_redis_from_the_table() -> None:
    limiter = build_rate_limiter(
        {
            "backend": "redis",
            "redis_url": "redis://127.0.0.1:6379/0",
            "failure_mode": "open",
            "timeout_ms": 20,
            "prefix": "test:",
        }
    )
    assert isinstance(limiter, RedisRateLimiter)
    assert limiter.failure_mode == "open"
    assert limiter.prefix == "test:"
    await limiter.close()


@pytest.mark.parametrize(
    ("table", "names"),
    [
        ({"backend": "memcached"}, "'backend'"),
        ({"backend": "redis"}, "'redis_url'"),
        ({"backend": "redis", "redis_url": "http://x"}, "redis_url"),
        ({"backend": "redis", "redis_url": "redis://h", "failure_mode": "ajar"}, "'failure_mode'"),
        ({"backend": "redis", "redis_url": "redis://h", "timeout_ms": 0}, "'timeout_ms'"),
        ({"backend": "redis", "redis_url": "redis://h", "timeout_ms": True}, "'timeout_ms'"),
        ({"backend": "redis", "redis_url": "redis://h", "timeout_ms": 5.5}, "'timeout_ms'"),
        ({"backend": 1}, "'backend'"),
        ({"backnd": "local"}, "'backnd'"),
    ],
)
def test_build_rejects_a_bad_table_naming_the_key(table: dict[str, object], names: str) -> None:
    with pytest.raises(ConfigError, match=names):
        build_rate_limiter(table)
