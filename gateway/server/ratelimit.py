"""Per-caller rate limits: a token bucket per caller, kept in-process or shared through Redis.

Each caller's bucket holds at most `burst` tokens and refills at `per_second` tokens a second
(`RateLimit` from the policy); a request takes one token or is refused with RESOURCE_EXHAUSTED
and a RetryInfo saying exactly when the next token arrives. Over any window of `w` seconds a
caller is admitted at most `burst + per_second · w` times.

- `take` is the bucket maths: pure, on an injected clock, tested directly.
- `LocalRateLimiter` keeps buckets in a dict, for one gateway process.
- `RedisRateLimiter` runs the same maths as one atomic Lua script in Redis on Redis's own
  clock, so every replica draws on one budget per caller whatever its own clock says.

The servicer calls `await limiter.acquire(caller_id, rate, known=...)` once per request, before
any department call. Whether a broken or slow Redis admits or refuses is configured per
deployment (`failure_mode`), and applies to callers the policy knows only; a caller the policy
does not know is always refused while the shared limiter is unavailable (fail closed).

    [ratelimit]
    backend = "redis"                      # "local" (default) | "redis"
    redis_url = "redis://127.0.0.1:6379/0"  # required for "redis"
    failure_mode = "closed"                # "closed" (default) | "open", for known callers
    timeout_ms = 50                        # longer than this and Redis counts as failed
    prefix = "proofless:rl:"               # key prefix; one per environment sharing a Redis
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol

from redis import RedisError
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from gateway.domain.errors import ConfigError, ResourceExhausted
from gateway.domain.policy import DEFAULT_RATE, Policy, RateLimit

log = logging.getLogger("proofless.ratelimit")

#: a bucket this short of a whole token still admits: float rounding, never a real token
EPSILON: Final = 1e-9
#: buckets a LocalRateLimiter keeps before dropping the least recently used one
MAX_CALLERS: Final = 10_000
DEFAULT_PREFIX: Final = "proofless:rl:"
DEFAULT_TIMEOUT_MS: Final = 50

FailureMode = Literal["closed", "open"]
FAILURE_MODES: Final = frozenset({"closed", "open"})


class RateLimiter(Protocol):
    """What the servicer needs: take one token for a caller, or raise ResourceExhausted."""

    async def acquire(self, caller_id: str, rate: RateLimit, *, known: bool = False) -> None:
        """Admit one request from `caller_id` or raise ResourceExhausted (RATE_LIMITED with
        the time until the next token, or RATE_LIMITER_UNAVAILABLE). `known`: the caller is
        in the policy; only known callers may be admitted while a shared limiter is down."""
        ...

    async def close(self) -> None: ...


def caller_rate(policy: Policy, caller_id: str) -> tuple[RateLimit, bool]:
    """The rate for `caller_id` and whether the policy knows the caller.

    An unknown caller gets the built-in default rate so it cannot hammer the policy check
    that will refuse it; it is never admitted on a broken shared limiter (`known=False`).
    """
    caller = policy.caller(caller_id)
    if caller is None:
        return DEFAULT_RATE, False
    return caller.rate, True


# ---- the bucket maths -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Bucket:
    """One caller's bucket: `tokens` left as of `updated` (seconds on the limiter's clock)."""

    tokens: float
    updated: float


def full(rate: RateLimit, now: float) -> Bucket:
    """A caller not seen before (or idle long enough) has its whole burst."""
    return Bucket(tokens=float(rate.burst), updated=now)


def available(bucket: Bucket, rate: RateLimit, now: float) -> float:
    """Tokens in `bucket` at `now`: refilled at `per_second`, capped at `burst` (a lowered
    burst after a policy reload caps at once). A clock that went back refills nothing."""
    elapsed = now - bucket.updated
    if elapsed <= 0:
        return min(bucket.tokens, float(rate.burst))
    return min(bucket.tokens + elapsed * rate.per_second, float(rate.burst))


def retry_after(tokens: float, rate: RateLimit) -> float:
    """Seconds until `tokens` grows to one whole token, rounded up to the microsecond (the
    resolution of Redis TIME), so a caller that waits exactly this long is admitted."""
    return math.ceil((1.0 - tokens) / rate.per_second * 1e6) / 1e6


def take(bucket: Bucket | None, rate: RateLimit, now: float) -> tuple[Bucket, float]:
    """Take one token at `now`: (the new bucket, 0.0) when admitted, else (the bucket
    unchanged, seconds until a token is there, > 0)."""
    if bucket is None:
        bucket = full(rate, now)
    tokens = available(bucket, rate, now)
    if tokens + EPSILON >= 1.0:
        # `max` keeps time monotonic when the clock went back: the refill already counted
        # up to bucket.updated must not be counted again.
        return Bucket(tokens - 1.0, max(now, bucket.updated)), 0.0
    return bucket, retry_after(tokens, rate)


def rate_limited(caller_id: str, rate: RateLimit, wait: float) -> ResourceExhausted:
    return ResourceExhausted(
        f"caller {caller_id} is over its rate limit "
        f"({rate.per_second:g}/s, burst {rate.burst}); retry in {wait:.3f}s",
        retry_after=wait,
    )


# ---- one process ------------------------------------------------------------------------


class LocalRateLimiter:
    """Buckets in this process's memory: right for one replica, or as each replica's own share.

    No lock: asyncio runs one coroutine at a time and `acquire` never awaits between reading
    and writing a bucket. Memory is bounded: beyond `max_callers` buckets the least recently
    used is dropped. Callers come from certificates and are few, so this only bites under a
    flood of distinct identities; a bucket idle for `burst / per_second` seconds is full
    anyway, so dropping it then loses nothing.
    """

    def __init__(
        self, *, clock: Callable[[], float] = time.monotonic, max_callers: int = MAX_CALLERS
    ) -> None:
        if max_callers < 1:
            raise ConfigError("ratelimit: max_callers must be at least 1")
        self._clock = clock
        self._max = max_callers
        self._buckets: OrderedDict[str, Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def check(self, caller_id: str, rate: RateLimit) -> None:
        """The synchronous core of `acquire`: O(1), no awaits."""
        buckets = self._buckets
        bucket, wait = take(buckets.get(caller_id), rate, self._clock())
        if wait:
            raise rate_limited(caller_id, rate, wait)
        if caller_id in buckets:
            buckets.move_to_end(caller_id)
        elif len(buckets) >= self._max:
            buckets.popitem(last=False)
        buckets[caller_id] = bucket

    async def acquire(self, caller_id: str, rate: RateLimit, *, known: bool = False) -> None:
        # `known` does not matter here: a dict in this process cannot be unavailable.
        self.check(caller_id, rate)

    async def close(self) -> None:
        self._buckets.clear()


# ---- shared through Redis ---------------------------------------------------------------

# The same bucket as `take`, atomic in Redis. Time is Redis TIME in integer microseconds
# (exact in a Lua double), so replicas with skewed clocks agree. A refused call writes nothing.
# The key's TTL is the time to refill to `burst`: by then an absent key and the bucket agree.
# Replies {1, 0} when admitted, {0, microseconds until the next token} when not.
_TAKE_SCRIPT: Final = """
if redis.replicate_commands then redis.replicate_commands() end
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tokens = burst
local saved = redis.call('HMGET', KEYS[1], 'tokens', 'updated')
local last = tonumber(saved[2])
if saved[1] and last then
  tokens = math.min(tonumber(saved[1]) or burst, burst)
  if now > last then
    tokens = math.min(burst, tokens + (now - last) * rate / 1000000)
  else
    now = last
  end
end
if tokens + 1e-9 < 1 then
  return {0, math.ceil((1 - tokens) / rate * 1000000)}
end
tokens = tokens - 1
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens),
           'updated', string.format('%d', now))
redis.call('PEXPIRE', KEYS[1], math.max(1, math.ceil((burst - tokens) / rate * 1000)))
return {1, 0}
"""


class RedisRateLimiter:
    """Buckets in Redis, one hash per caller under `prefix`, shared by every gateway replica.

    Each `acquire` is one EVALSHA (loading the script on NOSCRIPT, e.g. after a Redis restart)
    bounded by `timeout_ms`. When Redis errs or is slower than that, `failure_mode` decides for
    callers the policy knows: "closed" refuses with RATE_LIMITER_UNAVAILABLE (retry in 1 s),
    "open" admits and counts the call in `admitted_unlimited`. Callers the policy does not know
    are refused either way. A call that timed out may still have taken its token in Redis;
    that errs on the side of the limit.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        failure_mode: FailureMode = "closed",
        timeout_ms: int = DEFAULT_TIMEOUT_MS,
    ) -> None:
        if failure_mode not in FAILURE_MODES:
            raise ConfigError(
                f"ratelimit: failure_mode must be closed or open, not {failure_mode!r}"
            )
        if timeout_ms <= 0:
            raise ConfigError("ratelimit: timeout_ms must be greater than 0")
        self.prefix = prefix
        self.failure_mode: FailureMode = failure_mode
        self._timeout = timeout_ms / 1000
        try:
            self._client: Redis = Redis.from_url(
                url,
                socket_timeout=self._timeout,
                socket_connect_timeout=self._timeout,
                # one immediate retry gets past a pooled connection Redis has since closed;
                # the whole call stays within `timeout_ms` regardless
                retry=Retry(NoBackoff(), 1),
            )
        except ValueError as exc:
            raise ConfigError(f"ratelimit: redis_url is not a Redis URL: {exc}") from exc
        self._take = self._client.register_script(_TAKE_SCRIPT)
        self._healthy = True
        #: calls for which Redis failed or was too slow
        self.failures = 0
        #: of those, calls admitted without a limit (failure_mode "open", known callers)
        self.admitted_unlimited = 0

    async def acquire(self, caller_id: str, rate: RateLimit, *, known: bool = False) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                reply = await self._take(
                    keys=[self.prefix + caller_id], args=[repr(rate.per_second), rate.burst]
                )
            admitted, wait_us = int(reply[0]), int(reply[1])
        except (RedisError, OSError, TimeoutError, TypeError, ValueError, IndexError) as exc:
            # TypeError..IndexError: a reply not shaped like the script's is a broken limiter
            self._unavailable(caller_id, known, exc)
            return
        if not self._healthy:
            self._healthy = True
            log.info("shared rate limiter is back", extra={"state": "healthy"})
        if not admitted:
            raise rate_limited(caller_id, rate, wait_us / 1e6)

    def _unavailable(self, caller_id: str, known: bool, exc: BaseException) -> None:
        self.failures += 1
        if self._healthy:
            # once per outage, not once per request
            self._healthy = False
            log.warning(
                "shared rate limiter unavailable (%s); failing %s for known callers, "
                "closed for unknown ones",
                type(exc).__name__,
                self.failure_mode,
                extra={"state": "unavailable", "reason": "RATE_LIMITER_UNAVAILABLE"},
            )
        if known and self.failure_mode == "open":
            self.admitted_unlimited += 1
            return
        raise ResourceExhausted(
            f"the rate limiter is unavailable; caller {caller_id} is refused until it is back",
            retry_after=1.0,
            reason="RATE_LIMITER_UNAVAILABLE",
        ) from exc

    async def close(self) -> None:
        await self._client.aclose()


# ---- configuration ----------------------------------------------------------------------

_KEYS: Final = ("backend", "redis_url", "failure_mode", "timeout_ms", "prefix")


def build_rate_limiter(config: Mapping[str, Any]) -> RateLimiter:
    """The limiter the `[ratelimit]` table asks for (see the module docstring); an empty
    table is a LocalRateLimiter. Raises ConfigError naming the bad key."""
    for key in config:
        if key not in _KEYS:
            raise ConfigError(f"[ratelimit] key '{key}': unknown key; expected {', '.join(_KEYS)}")
    backend = _get(config, "backend", str, "local")
    if backend == "local":
        return LocalRateLimiter()
    if backend != "redis":
        raise ConfigError(f"[ratelimit] key 'backend': must be local or redis, not {backend!r}")
    url = _get(config, "redis_url", str, None)
    if url is None:
        raise ConfigError("[ratelimit] key 'redis_url': is required when backend = \"redis\"")
    failure_mode = _get(config, "failure_mode", str, "closed")
    if failure_mode not in FAILURE_MODES:
        raise ConfigError(
            f"[ratelimit] key 'failure_mode': must be closed or open, not {failure_mode!r}"
        )
    timeout_ms = _get(config, "timeout_ms", int, DEFAULT_TIMEOUT_MS)
    if timeout_ms <= 0:
        raise ConfigError("[ratelimit] key 'timeout_ms': must be greater than 0")
    return RedisRateLimiter(
        url,
        prefix=_get(config, "prefix", str, DEFAULT_PREFIX),
        failure_mode="open" if failure_mode == "open" else "closed",
        timeout_ms=timeout_ms,
    )


def _get(config: Mapping[str, Any], key: str, kind: type, default: Any) -> Any:
    if key not in config:
        return default
    value = config[key]
    # bool is an int in Python, never a timeout in TOML
    if not isinstance(value, kind) or isinstance(value, bool):
        shown = "an integer" if kind is int else "a string"
        raise ConfigError(f"[ratelimit] key '{key}': must be {shown}")
    return value
