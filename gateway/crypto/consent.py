"""Consent tokens (授权): the applicant's authorisation for one caller to pull their data for
one service item and one case.

A consent token is a compact JWS (EdDSA, `typ: proofless-consent+jws`) from a trusted consent
issuer (e.g. the citizen app), verified against the issuers' JWKS; its `iss` must be a trusted
issuer its key may sign for (gateway.crypto.keys.IssuerKeys: `[consent] issuers`, or the JWK's
`iss` member). Its payload binds:

    applicant  hex SHA-256 of the applicant's ID number (upper-case X)
    caller     the approval system's caller id
    item       the service item code (事项编码)
    case_id    the case number (办件编号)
    iss        the issuer
    iat, exp   seconds since the epoch
    jti        unique id; each token is accepted once

The applicant hash is a binding, not a secret: an 18-character ID has little entropy, so the
token is only ever shown to the caller and the gateway. Every refusal is PERMISSION_DENIED with
an ErrorInfo reason (CONSENT_MISSING, CONSENT_INVALID, CONSENT_UNTRUSTED_ISSUER, CONSENT_EXPIRED,
CONSENT_WRONG_CALLER, CONSENT_WRONG_ITEM, CONSENT_WRONG_APPLICANT, CONSENT_WRONG_CASE,
CONSENT_REPLAYED).
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import json
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.crypto import jws
from gateway.crypto.keys import issuer_of_token
from gateway.domain.errors import PermissionDenied, ResourceExhausted

TOKEN_TYPE = "proofless-consent+jws"  # noqa: S105 -- a JOSE typ value, not a secret
DEFAULT_TTL = 600
#: Longer-lived tokens are refused: the replay cache must hold every jti until it expires.
MAX_LIFETIME = 86400
#: Tolerated clock difference between the issuer and the gateway, seconds.
LEEWAY = 60
_JTI = re.compile(r"^[A-Za-z0-9_.:-]{8,128}$")


@dataclass(frozen=True)
class ConsentToken:
    issuer: str
    applicant: str  # hex SHA-256 of the ID number
    caller: str
    item: str
    case_id: str
    issued_at: int
    expires_at: int
    jti: str
    kid: str


def applicant_digest(id_number: str) -> str:
    return hashlib.sha256(id_number.strip().upper().encode("utf-8")).hexdigest()


class ReplayCache:
    """Which consent jtis have been used, each kept until its token expires.

    Bounded: when full of unexpired entries it refuses new tokens (RESOURCE_EXHAUSTED with a
    retry time) rather than forget one and let it be replayed. Not thread-safe; it lives on
    the event loop, and `seen` never awaits. One cache per replica: a token could be replayed
    once against each replica until a shared store (Redis) backs it.
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
    payload = {
        "iss": issuer,
        "applicant": applicant_digest(applicant_id_number),
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


def _invalid(message: str) -> PermissionDenied:
    return PermissionDenied(f"consent token {message}", reason="CONSENT_INVALID")


def _parse(token: str, issuer_keys: Mapping[str, Any]) -> ConsentToken:
    try:
        header, payload = jws.verify(token, issuer_keys)
    except jws.ProofInvalid as exc:
        raise _invalid(f"rejected: {exc.message}") from exc
    if header.get("typ") != TOKEN_TYPE:
        raise _invalid(f"must have typ {TOKEN_TYPE}")
    try:
        claims = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _invalid("payload is not UTF-8 JSON") from exc
    if not isinstance(claims, dict):
        raise _invalid("payload is not a JSON object")
    for name in ("iss", "applicant", "caller", "item", "case_id", "jti"):
        if not isinstance(claims.get(name), str):
            raise _invalid(f"lacks the string claim {name}")
    for name in ("iat", "exp"):
        value = claims.get(name)
        if not isinstance(value, int) or isinstance(value, bool):
            raise _invalid(f"lacks the integer claim {name}")
    if not _JTI.match(claims["jti"]):
        raise _invalid("jti must be 8-128 characters of A-Z a-z 0-9 _ . : -")
    kid = header.get("kid")
    if not isinstance(kid, str) or not issuer_of_token(issuer_keys, kid, claims["iss"]):
        raise PermissionDenied(
            "consent token's issuer is not one its key is trusted for",
            reason="CONSENT_UNTRUSTED_ISSUER",
        )
    return ConsentToken(
        issuer=claims["iss"],
        applicant=claims["applicant"],
        caller=claims["caller"],
        item=claims["item"],
        case_id=claims["case_id"],
        issued_at=claims["iat"],
        expires_at=claims["exp"],
        jti=claims["jti"],
        kid=kid,
    )


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
    """Accept a consent token for exactly this applicant, caller, item and case, once.

    `issuer_keys` is an `IssuerKeys` (kid → key, and the issuers each key may sign for), or a
    JWK Set whose keys carry `iss` members. The jti is recorded only after every other check
    passed, so a refused token is not burnt.
    """
    if not token:
        raise PermissionDenied(
            "this service item requires the applicant's consent token", reason="CONSENT_MISSING"
        )
    consent = _parse(token, issuer_keys)
    if consent.expires_at <= consent.issued_at:
        raise _invalid("expires before it is issued")
    if consent.expires_at - consent.issued_at > MAX_LIFETIME:
        raise _invalid(f"lives longer than {MAX_LIFETIME} seconds")
    if consent.issued_at > now + leeway:
        raise _invalid("is issued in the future")
    if consent.expires_at + leeway <= now:
        raise PermissionDenied("consent token has expired", reason="CONSENT_EXPIRED")
    if consent.caller != caller:
        raise PermissionDenied(
            "consent token was given to another caller", reason="CONSENT_WRONG_CALLER"
        )
    if consent.item != item:
        raise PermissionDenied(
            "consent token is for another service item", reason="CONSENT_WRONG_ITEM"
        )
    expected = applicant_digest(applicant_id_number).encode("ascii")
    if not hmac.compare_digest(consent.applicant.encode("utf-8"), expected):
        raise PermissionDenied(
            "consent token is for another applicant", reason="CONSENT_WRONG_APPLICANT"
        )
    if consent.case_id != case_id:
        raise PermissionDenied("consent token is for another case", reason="CONSENT_WRONG_CASE")
    if replay_cache.seen(consent.jti, consent.expires_at + leeway, now):
        raise PermissionDenied("consent token was already used", reason="CONSENT_REPLAYED")
    return consent
