"""RedisRateLimiter against a real Redis: replicas share one budget, keys expire, and a Redis
that is down or silent fails closed or open as configured. Every test has its own key prefix."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from gateway.domain.errors import ResourceExhausted
from gateway.domain.policy import RateLimit
from gateway.server.ratelimit import FailureMode, RedisRateLimiter

#: nothing listens on port 1: connections are refused at once
CLOSED_PORT_URL = "redis://127.0.0.1:1/0"
#: so slow that no token comes back during a test
NO_REFILL = RateLimit(per_second=0.001, burst=5)

MakeLimiter = Callable[..., RedisRateLimiter]


@pytest.fixture
def prefix() -> str:
    return f"proofless-test:{uuid.uuid4().hex}:"


@pytest_asyncio.fixture
async def raw(redis_url: str, prefix: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    keys = [k async for k in client.scan_iter(match=f"{prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest_asyncio.fixture
async def make_limiter(redis_url: str, prefix: str, raw: Redis) -> AsyncIterator[MakeLimiter]:
    # `raw` deletes this test's keys afterwards: NO_REFILL keys would live for over an hour
    made: list[RedisRateLimiter] = []

    def make(
        url: str = redis_url, failure_mode: FailureMode = "closed", timeout_ms: int = 1000
    ) -> RedisRateLimiter:
        # a generous timeout: these tests are about the maths, not about a loaded CI box
        limiter = RedisRateLimiter(
            url, prefix=prefix, failure_mode=failure_mode, timeout_ms=timeout_ms
        )
        made.append(limiter)
        return limiter

    yield make
    for limiter in made:
        await limiter.close()


async def outcome(limiter: RedisRateLimiter, caller: str, rate: RateLimit) -> str:
    """Returns "admitted" or the refusal's reason."""
    try:
        await limiter.acquire(caller, rate, known=True)
    except ResourceExhausted as refused:
        return refused.reason
    return "admitted"


@pytest.mark.redis
async def test_a_burst_admits_exactly_burst(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter()
    results = [await outcome(limiter, "quangang-window", NO_REFILL) for _ in range(12)]
    assert results == ["admitted"] * 5 + ["RATE_LIMITED"] * 7


@pytest.mark.redis
async def test_two_replicas_share_one_budget(make_limiter: MakeLimiter) -> None:
    replica_a, replica_b = make_limiter(), make_limiter()
    # concurrently, interleaved across both replicas: the script is atomic
    results = await asyncio.gather(
        *(
            outcome(replica_a if i % 2 else replica_b, "quangang-window", NO_REFILL)
            for i in range(40)
        )
    )
    assert results.count("admitted") == NO_REFILL.burst
    assert results.count("RATE_LIMITED") == len(results) - NO_REFILL.burst
    # another caller has its own budget on both
    assert await outcome(replica_a, "licheng-window", NO_REFILL) == "admitted"
    assert await outcome(replica_b, "licheng-window", NO_REFILL) == "admitted"


@pytest.mark.redis
async def test_retry_after_names_the_next_token(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter()
    rate = RateLimit(per_second=0.5, burst=1)
    await limiter.acquire("quangang-window", rate, known=True)
    with pytest.raises(ResourceExhausted) as refused:
        await limiter.acquire("quangang-window", rate, known=True)
    assert refused.value.reason == "RATE_LIMITED"
    # 2 s per token, less the little time since the first call
    assert 1.5 < refused.value.retry_after <= 2.0


@pytest.mark.redis
async def test_tokens_come_back_at_the_rate(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter()
    rate = RateLimit(per_second=50.0, burst=1)
    await limiter.acquire("quangang-window", rate, known=True)
    with pytest.raises(ResourceExhausted) as refused:
        await limiter.acquire("quangang-window", rate, known=True)
    await asyncio.sleep(refused.value.retry_after)
    await limiter.acquire("quangang-window", rate, known=True)


@pytest.mark.redis
async def test_idle_keys_expire(make_limiter: MakeLimiter, raw: Redis, prefix: str) -> None:
    limiter = make_limiter()
    rate = RateLimit(per_second=20.0, burst=2)
    await limiter.acquire("quangang-window", rate, known=True)
    key = f"{prefix}quangang-window"
    # one token short of two at 20/s: full again, and gone, within 50 ms
    assert 0 < await raw.pttl(key) <= 50
    for _ in range(100):
        if not await raw.exists(key):
            break
        await asyncio.sleep(0.02)
    assert not await raw.exists(key)


@pytest.mark.redis
async def test_a_flushed_script_cache_is_reloaded(make_limiter: MakeLimiter, raw: Redis) -> None:
    limiter = make_limiter()
    await limiter.acquire("quangang-window", NO_REFILL, known=True)
    await raw.script_flush()  # as after a Redis restart: EVALSHA answers NOSCRIPT
    await limiter.acquire("quangang-window", NO_REFILL, known=True)
    assert limiter.failures == 0


# ---- Redis down or slow -----------------------------------------------------------------


async def test_unreachable_redis_fails_closed() -> None:
    limiter = RedisRateLimiter(CLOSED_PORT_URL, failure_mode="closed")
    try:
        for known in (True, False):
            with pytest.raises(ResourceExhausted) as refused:
                await limiter.acquire("quangang-window", NO_REFILL, known=known)
            assert refused.value.reason == "RATE_LIMITER_UNAVAILABLE"
            assert refused.value.retry_after == 1
        assert limiter.failures == 2
    finally:
        await limiter.close()


async def test_unreachable_redis_fails_open_for_known_callers_only() -> None:
    limiter = RedisRateLimiter(CLOSED_PORT_URL, failure_mode="open")
    try:
        for _ in range(3):
            await limiter.acquire("quangang-window", NO_REFILL, known=True)
        assert limiter.admitted_unlimited == 3
        with pytest.raises(ResourceExhausted) as refused:
            await limiter.acquire("stranger", NO_REFILL, known=False)
        assert refused.value.reason == "RATE_LIMITER_UNAVAILABLE"
        # `known` defaults to False: the safe side
        with pytest.raises(ResourceExhausted):
            await limiter.acquire("quangang-window", NO_REFILL)
        assert limiter.failures == 5
    finally:
        await limiter.close()


@pytest_asyncio.fixture
async def silent_server() -> AsyncIterator[str]:
    """A TCP server that accepts and never answers: a Redis slower than any timeout."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"redis://127.0.0.1:{port}/0"
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()


@pytest.mark.parametrize("failure_mode", ["closed", "open"])
async def test_slow_redis_counts_as_failed(silent_server: str, failure_mode: FailureMode) -> None:
    limiter = RedisRateLimiter(silent_server, failure_mode=failure_mode, timeout_ms=30)
    try:
        if failure_mode == "open":
            await limiter.acquire("quangang-window", NO_REFILL, known=True)
            assert limiter.admitted_unlimited == 1
        else:
            with pytest.raises(ResourceExhausted) as refused:
                await limiter.acquire("quangang-window", NO_REFILL, known=True)
            assert refused.value.reason == "RATE_LIMITER_UNAVAILABLE"
        assert limiter.failures == 1
    finally:
        await limiter.close()
