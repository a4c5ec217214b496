"""Citizen tokens: the citizen identity provider's word that the person at the portal is the
person whose accesses are listed.

"Who accessed my records" (AuditService.ListAccesses) answers about one citizen. A portal
certificate alone proves only that the caller is the portal, not which citizen logged in to
it, so the portal must also present a citizen token: a compact JWS (EdDSA,
`typ: proofless-citizen+jws`) from a trusted issuer (the same issuer keys as consent tokens:
the citizen app signs both; `iss` must be a trusted issuer its key may sign for), binding

    citizen  hex HMAC-SHA256(key = salt, the ID number with an upper-case X)
    salt     16 random bytes, base64url; fresh per token, so no two tokens about one person
             carry the same value and no table of precomputed IDs applies
    portal   the portal's caller id (a token given to one portal is no use to another)
    scope    "accesses:read"
    iss, iat, exp (at most one hour), jti

A token may be presented for every page of one listing until it expires; it is not single-use.
Every refusal is PERMISSION_DENIED with an ErrorInfo reason (CITIZEN_TOKEN_MISSING,
CITIZEN_TOKEN_INVALID, CITIZEN_TOKEN_UNTRUSTED_ISSUER, CITIZEN_TOKEN_EXPIRED,
CITIZEN_TOKEN_WRONG_PORTAL, CITIZEN_TOKEN_WRONG_CITIZEN); no message quotes the ID number.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.crypto import jws
from gateway.crypto.keys import issuer_of_token
from gateway.domain.errors import PermissionDenied

TOKEN_TYPE = "proofless-citizen+jws"  # noqa: S105 -- a JOSE typ value, not a secret
SCOPE = "accesses:read"
DEFAULT_TTL = 900
MAX_LIFETIME = 3600
LEEWAY = 60


@dataclass(frozen=True)
class CitizenToken:
    issuer: str
    citizen: str
    salt: bytes
    portal: str
    issued_at: int
    expires_at: int
    jti: str


SALT_BYTES = 16


def citizen_binding(salt: bytes, id_number: str) -> str:
    """hex HMAC-SHA256(key = salt, the ID number with an upper-case X): binds a token to a
    person without a guessable or linkable identifier (consent tokens use it too)."""
    return hmac.new(salt, id_number.strip().upper().encode("utf-8"), hashlib.sha256).hexdigest()


def parse_salt(value: str) -> bytes:
    """A token's `salt` claim: base64url of at least 16 bytes. Raises ValueError."""
    try:
        salt = jws.b64url_decode(value)
    except jws.ProofInvalid as exc:
        raise ValueError("salt is not base64url") from exc
    if len(salt) < SALT_BYTES:
        raise ValueError(f"salt is shorter than {SALT_BYTES} bytes")
    return salt


# ---- what consent and citizen tokens share ------------------------------------------------


@dataclass(frozen=True)
class TokenKind:
    """How one kind of issuer token reads: its JOSE typ, its name and reason prefix in every
    refusal ("citizen token", CITIZEN_TOKEN_…), its string claims, its longest lifetime."""

    typ: str
    name: str
    reason: str
    strings: tuple[str, ...]
    max_lifetime: int

    def invalid(self, message: str) -> PermissionDenied:
        return PermissionDenied(f"{self.name} {message}", reason=f"{self.reason}_INVALID")


def read_token(
    token: str,
    issuer_keys: Mapping[str, Any],
    kind: TokenKind,
    check: Callable[[dict[str, Any]], None] = lambda claims: None,
) -> tuple[dict[str, Any], bytes, str]:
    """A token's claims, salt and kid once its signature, typ, claim types (`check` adds the
    kind's own, before the salt and issuer), salt and issuer hold; PermissionDenied else."""
    try:
        header, payload = jws.verify(token, issuer_keys)
    except jws.ProofInvalid as exc:
        raise kind.invalid(f"rejected: {exc.message}") from exc
    if header.get("typ") != kind.typ:
        raise kind.invalid(f"must have typ {kind.typ}")
    try:
        claims = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise kind.invalid("payload is not UTF-8 JSON") from exc
    if not isinstance(claims, dict):
        raise kind.invalid("payload is not a JSON object")
    for name in kind.strings:
        if not isinstance(claims.get(name), str):
            raise kind.invalid(f"lacks the string claim {name}")
    for name in ("iat", "exp"):
        value = claims.get(name)
        if not isinstance(value, int) or isinstance(value, bool):
            raise kind.invalid(f"lacks the integer claim {name}")
    check(claims)
    try:
        salt = parse_salt(claims["salt"])
    except ValueError as exc:
        raise kind.invalid(str(exc)) from exc
    kid = header.get("kid")
    if not isinstance(kid, str) or not issuer_of_token(issuer_keys, kid, claims["iss"]):
        raise PermissionDenied(
            f"{kind.name}'s issuer is not one its key is trusted for",
            reason=f"{kind.reason}_UNTRUSTED_ISSUER",
        )
    return claims, salt, kid


def check_lifetime(
    kind: TokenKind, issued_at: int, expires_at: int, now: float, leeway: int
) -> None:
    """Issued before it expires, for no longer than the kind allows, not in the future, not
    expired (each with `leeway` seconds of clock difference)."""
    if expires_at <= issued_at:
        raise kind.invalid("expires before it is issued")
    if expires_at - issued_at > kind.max_lifetime:
        raise kind.invalid(f"lives longer than {kind.max_lifetime} seconds")
    if issued_at > now + leeway:
        raise kind.invalid("is issued in the future")
    if expires_at + leeway <= now:
        raise PermissionDenied(f"{kind.name} has expired", reason=f"{kind.reason}_EXPIRED")


CITIZEN = TokenKind(
    TOKEN_TYPE,
    "citizen token",
    "CITIZEN_TOKEN",
    ("iss", "citizen", "salt", "portal", "scope", "jti"),
    MAX_LIFETIME,
)


def issue_citizen_token(
    key: Ed25519PrivateKey,
    *,
    id_number: str,
    portal: str,
    now: float | None = None,
    ttl: int = DEFAULT_TTL,
    issuer: str = "proofless-dev-consent",
) -> str:
    """A citizen token signed by the issuer key (for demos, tests and the dev issuer)."""
    issued = int(time.time() if now is None else now)
    salt = secrets.token_bytes(SALT_BYTES)
    payload = {
        "iss": issuer,
        "citizen": citizen_binding(salt, id_number),
        "salt": jws.b64url_encode(salt),
        "portal": portal,
        "scope": SCOPE,
        "iat": issued,
        "exp": issued + ttl,
        "jti": secrets.token_urlsafe(16),
    }
    body = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    header = {"alg": jws.ALG, "kid": jws.kid_of(key.public_key()), "typ": TOKEN_TYPE}
    return jws.sign(body.encode("utf-8"), key, header)


def _parse(token: str, issuer_keys: Mapping[str, Any]) -> CitizenToken:
    def scoped(claims: dict[str, Any]) -> None:
        if claims["scope"] != SCOPE:
            raise CITIZEN.invalid(f"must have scope {SCOPE}")

    claims, salt, _ = read_token(token, issuer_keys, CITIZEN, scoped)
    return CitizenToken(
        issuer=claims["iss"],
        citizen=claims["citizen"],
        salt=salt,
        portal=claims["portal"],
        issued_at=claims["iat"],
        expires_at=claims["exp"],
        jti=claims["jti"],
    )


def verify_citizen_token(
    token: str,
    *,
    issuer_keys: Mapping[str, Any],
    id_number: str,
    portal: str,
    now: float,
    leeway: int = LEEWAY,
) -> CitizenToken:
    """Accept a citizen token for exactly this citizen and this portal, while it is valid."""
    if not token:
        raise PermissionDenied(
            "listing a citizen's accesses requires the citizen's token from the identity provider",
            reason="CITIZEN_TOKEN_MISSING",
        )
    parsed = _parse(token, issuer_keys)
    check_lifetime(CITIZEN, parsed.issued_at, parsed.expires_at, now, leeway)
    if parsed.portal != portal:
        raise PermissionDenied(
            "citizen token was given to another portal", reason="CITIZEN_TOKEN_WRONG_PORTAL"
        )
    expected = citizen_binding(parsed.salt, id_number).encode("ascii")
    if not hmac.compare_digest(parsed.citizen.encode("utf-8"), expected):
        raise PermissionDenied(
            "citizen token is about another citizen", reason="CITIZEN_TOKEN_WRONG_CITIZEN"
        )
    return parsed
