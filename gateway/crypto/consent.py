"""Consent tokens (授权): the applicant's authorisation for one caller to pull their data for
one service item and one case.

A consent token is a compact JWS (EdDSA, `typ: proofless-consent+jws`) from a trusted consent
issuer (e.g. the citizen app), verified against the issuers' JWKS; its `iss` must be a trusted
issuer its key may sign for (gateway.crypto.keys.IssuerKeys: `[consent] issuers`, or the JWK's
`iss` member). Its payload binds:

    applicant  hex HMAC-SHA256(key = salt, the applicant's ID number with an upper-case X)
    salt       16 random bytes, base64url; fresh per token (the citizen tokens' construction,
               gateway.crypto.citizen), so no two tokens about one person carry the same value
               and no table of precomputed IDs reverses one
    caller     the approval system's caller id
    item       the service item code (事项编码)
    case_id    the case number (办件编号)
    iss        the issuer
    iat, exp   seconds since the epoch
    jti        unique id; each token is accepted once

The applicant binding is checked, not read: whoever holds the token and the ID number can
confirm the one against the other (an 18-character ID has little entropy), but a token alone
names nobody and two tokens cannot be linked to one person. Every refusal is PERMISSION_DENIED with
an ErrorInfo reason (CONSENT_MISSING, CONSENT_INVALID, CONSENT_UNTRUSTED_ISSUER, CONSENT_EXPIRED,
CONSENT_WRONG_CALLER, CONSENT_WRONG_ITEM, CONSENT_WRONG_APPLICANT, CONSENT_WRONG_CASE,
CONSENT_REPLAYED). A token is accepted once across every gateway process and replica when
the replay cache is shared (`[consent] replay_backend = "redis"`, `RedisReplayCache`); while
that store does not answer, consent is refused with UNAVAILABLE (CONSENT_UNAVAILABLE).
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import hmac
import json
import logging
import math
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from redis import RedisError
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from gateway.crypto import jws
from gateway.crypto.citizen import (
    SALT_BYTES,
    TokenKind,
    check_lifetime,
    citizen_binding,
    read_token,
)
from gateway.domain.errors import ConfigError, PermissionDenied, ResourceExhausted, Unavailable

log = logging.getLogger("proofless.consent")

TOKEN_TYPE = "proofless-consent+jws"  # noqa: S105 -- a JOSE typ value, not a secret
DEFAULT_TTL = 600
#: Longer-lived tokens are refused: the replay cache must hold every jti until it expires.
MAX_LIFETIME = 86400
#: Tolerated clock difference between the issuer and the gateway, seconds.
LEEWAY = 60
_JTI = re.compile(r"^[A-Za-z0-9_.:-]{8,128}$")
DEFAULT_REPLAY_PREFIX: Final = "proofless:consent:"
DEFAULT_REPLAY_TIMEOUT_MS: Final = 50
REPLAY_BACKENDS: Final = frozenset({"local", "redis"})


@dataclass(frozen=True)
class ConsentToken:
    issuer: str
    applicant: str  # citizen_binding(salt, the ID number)
    salt: bytes
    caller: str
    item: str
    case_id: str
    issued_at: int
    expires_at: int
    jti: str
    kid: str


def replay_key(consent: ConsentToken) -> str:
    """What the replay cache records for a token: its issuer and jti (two issuers may choose
    the same jti), hashed to a fixed length."""
    return hashlib.sha256(f"{consent.issuer}\x00{consent.jti}".encode()).hexdigest()


class ReplayStore(Protocol):
    """Where used consent tokens are recorded until they expire."""

    async def used(self, key: str, expires_at: float, now: float) -> bool:
        """True if `key` was recorded before (a replay); otherwise record it until
        `expires_at` and return False. Raises when it cannot tell (never admits then)."""
        ...

    async def close(self) -> None: ...


class ReplayCache:
    """Which consent tokens have been used, in this process, each kept until it expires.

    Bounded: when full of unexpired entries it refuses new tokens (RESOURCE_EXHAUSTED with a
    retry time) rather than forget one and let it be replayed. Not thread-safe; it lives on
    the event loop, and `seen` never awaits. One cache per process: with several workers or
    replicas a token works once against each, so they share a `RedisReplayCache` instead.
    """

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self._expiry: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._expiry)

    def _purge(self, now: float) -> None:
        while self._heap and self._heap[0][0] <= now:
            expires, jti = heapq.heappop(self._heap)
            if self._expiry.get(jti) == expires:
                del self._expiry[jti]

    def seen(self, jti: str, expires_at: float, now: float) -> bool:
        """True if `jti` was recorded before (a replay); otherwise record it and return False."""
        self._purge(now)
        if jti in self._expiry:
            return True
        if len(self._expiry) >= self.max_entries:
            retry = max(self._heap[0][0] - now, 1.0)
            raise ResourceExhausted(
                "too many consent tokens in flight", retry_after=retry, reason="CONSENT_CACHE_FULL"
            )
        self._expiry[jti] = expires_at
        heapq.heappush(self._heap, (expires_at, jti))
        return False

    async def used(self, key: str, expires_at: float, now: float) -> bool:
        return self.seen(key, expires_at, now)

    async def close(self) -> None:
        self._expiry.clear()
        self._heap.clear()


class RedisReplayCache:
    """Used consent tokens in Redis, shared by every gateway process and replica: one key per
    token (`SET key 1 NX PX ttl`), which Redis drops when the token has expired.

    Fails closed: when Redis errs or is slower than `timeout_ms`, consent is refused with
    UNAVAILABLE (CONSENT_UNAVAILABLE) rather than admitted unrecorded. A SET whose reply timed
    out may still have recorded the token, so its retry is refused as a replay: the
    applicant's app issues a new token, and no token is ever accepted twice.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_REPLAY_PREFIX,
        timeout_ms: int = DEFAULT_REPLAY_TIMEOUT_MS,
    ) -> None:
        if timeout_ms <= 0:
            raise ConfigError("[consent] key 'replay_timeout_ms': must be greater than 0")
        self.prefix = prefix
        self._timeout = timeout_ms / 1000
        try:
            self._client: Redis = Redis.from_url(
                url,
                socket_timeout=self._timeout,
                socket_connect_timeout=self._timeout,
                # one immediate retry gets past a pooled connection Redis has since closed
                retry=Retry(NoBackoff(), 1),
            )
        except ValueError as exc:
            raise ConfigError(f"[consent] key 'redis_url': not a Redis URL: {exc}") from exc
        self._healthy = True
        #: calls for which Redis failed or was too slow (each refused)
        self.failures = 0

    async def used(self, key: str, expires_at: float, now: float) -> bool:
        ttl_ms = max(1, math.ceil((expires_at - now) * 1000))
        try:
            async with asyncio.timeout(self._timeout):
                fresh = await self._client.set(self.prefix + key, b"1", nx=True, px=ttl_ms)
        except (RedisError, OSError, TimeoutError) as exc:
            self.failures += 1
            if self._healthy:  # once per outage, not once per request
                self._healthy = False
                log.warning(
                    "consent replay store unavailable (%s); refusing consent until it is back",
                    type(exc).__name__,
                    extra={"state": "unavailable", "reason": "CONSENT_UNAVAILABLE"},
                )
            raise Unavailable(
                "the consent replay store is unavailable; consent cannot be checked now",
                reason="CONSENT_UNAVAILABLE",
            ) from exc
        if not self._healthy:
            self._healthy = True
            log.info("consent replay store is back", extra={"state": "healthy"})
        return not fresh

    async def close(self) -> None:
        await self._client.aclose()


def build_replay_store(
    backend: str,
    *,
    redis_url: str = "",
    prefix: str = DEFAULT_REPLAY_PREFIX,
    timeout_ms: int = DEFAULT_REPLAY_TIMEOUT_MS,
) -> ReplayStore:
    """The store `[consent] replay_backend` names: "local" (this process) or "redis"."""
    if backend == "local":
        return ReplayCache()
    if backend != "redis":
        raise ConfigError(
            f"[consent] key 'replay_backend': must be local or redis, not {backend!r}"
        )
    if not redis_url:
        raise ConfigError("[consent] key 'redis_url': is required when replay_backend = \"redis\"")
    return RedisReplayCache(redis_url, prefix=prefix, timeout_ms=timeout_ms)


def issue_consent(
    key: Ed25519PrivateKey,
    *,
    applicant_id_number: str,
    caller: str,
    item: str,
    case_id: str,
    now: float | None = None,
    ttl: int = DEFAULT_TTL,
    jti: str | None = None,
    issuer: str = "proofless-dev-consent",
) -> str:
    """A consent token signed by the issuer key (for demos, tests and the dev issuer)."""
    issued = int(time.time() if now is None else now)
    salt = secrets.token_bytes(SALT_BYTES)
    payload = {
        "iss": issuer,
        "applicant": citizen_binding(salt, applicant_id_number),
        "salt": jws.b64url_encode(salt),
        "caller": caller,
        "item": item,
        "case_id": case_id,
        "iat": issued,
        "exp": issued + ttl,
        "jti": jti or secrets.token_urlsafe(16),
    }
    body = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    header = {"alg": jws.ALG, "kid": jws.kid_of(key.public_key()), "typ": TOKEN_TYPE}
    return jws.sign(body.encode("utf-8"), key, header)


CONSENT = TokenKind(
    TOKEN_TYPE,
    "consent token",
    "CONSENT",
    ("iss", "applicant", "salt", "caller", "item", "case_id", "jti"),
    MAX_LIFETIME,
)


def _parse(token: str, issuer_keys: Mapping[str, Any]) -> ConsentToken:
    def jti_shaped(claims: dict[str, Any]) -> None:
        if not _JTI.match(claims["jti"]):
            raise CONSENT.invalid("jti must be 8-128 characters of A-Z a-z 0-9 _ . : -")

    claims, salt, kid = read_token(token, issuer_keys, CONSENT, jti_shaped)
    return ConsentToken(
        issuer=claims["iss"],
        applicant=claims["applicant"],
        salt=salt,
        caller=claims["caller"],
        item=claims["item"],
        case_id=claims["case_id"],
        issued_at=claims["iat"],
        expires_at=claims["exp"],
        jti=claims["jti"],
        kid=kid,
    )


def check_consent(
    token: str | None,
    *,
    issuer_keys: Mapping[str, Any],
    applicant_id_number: str,
    caller: str,
    item: str,
    case_id: str,
    now: float,
    leeway: int = LEEWAY,
) -> ConsentToken:
    """Every check of a consent token but its single use (`accept_consent` adds that).

    `issuer_keys` is an `IssuerKeys` (kid → key, and the issuers each key may sign for), or a
    JWK Set whose keys carry `iss` members.
    """
    if not token:
        raise PermissionDenied(
            "this service item requires the applicant's consent token", reason="CONSENT_MISSING"
        )
    consent = _parse(token, issuer_keys)
    check_lifetime(CONSENT, consent.issued_at, consent.expires_at, now, leeway)
    if consent.caller != caller:
        raise PermissionDenied(
            "consent token was given to another caller", reason="CONSENT_WRONG_CALLER"
        )
    if consent.item != item:
        raise PermissionDenied(
            "consent token is for another service item", reason="CONSENT_WRONG_ITEM"
        )
    expected = citizen_binding(consent.salt, applicant_id_number).encode("ascii")
    if not hmac.compare_digest(consent.applicant.encode("utf-8"), expected):
        raise PermissionDenied(
            "consent token is for another applicant", reason="CONSENT_WRONG_APPLICANT"
        )
    if consent.case_id != case_id:
        raise PermissionDenied("consent token is for another case", reason="CONSENT_WRONG_CASE")
    return consent


def _replayed() -> PermissionDenied:
    return PermissionDenied("consent token was already used", reason="CONSENT_REPLAYED")


async def accept_consent(
    token: str | None,
    *,
    issuer_keys: Mapping[str, Any],
    applicant_id_number: str,
    caller: str,
    item: str,
    case_id: str,
    now: float,
    replays: ReplayStore,
    leeway: int = LEEWAY,
) -> ConsentToken:
    """Accept a consent token for exactly this applicant, caller, item and case, once in
    `replays` (shared by every replica when it is a `RedisReplayCache`). The token is recorded
    only after every other check passed, so a refused token is not burnt."""
    consent = check_consent(
        token,
        issuer_keys=issuer_keys,
        applicant_id_number=applicant_id_number,
        caller=caller,
        item=item,
        case_id=case_id,
        now=now,
        leeway=leeway,
    )
    if await replays.used(replay_key(consent), consent.expires_at + leeway, now):
        raise _replayed()
    return consent


def verify_consent(
    token: str | None,
    *,
    issuer_keys: Mapping[str, Any],
    applicant_id_number: str,
    caller: str,
    item: str,
    case_id: str,
    now: float,
    replay_cache: ReplayCache,
    leeway: int = LEEWAY,
) -> ConsentToken:
    """`accept_consent` for one process, without awaiting: the replay cache is this
    process's own."""
    consent = check_consent(
        token,
        issuer_keys=issuer_keys,
        applicant_id_number=applicant_id_number,
        caller=caller,
        item=item,
        case_id=case_id,
        now=now,
        leeway=leeway,
    )
    if replay_cache.seen(replay_key(consent), consent.expires_at + leeway, now):
        raise _replayed()
    return consent
