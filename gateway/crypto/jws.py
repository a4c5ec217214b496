"""Compact JWS (RFC 7515) with EdDSA over Ed25519 (RFC 8037), and Ed25519 JWKs.

Pure functions, no files or sockets: the proofs the gateway signs (电子证明), the consent
tokens it verifies (授权) and the audit tooling all go through here, and any JOSE library in
any language can check what this module produces.

Verification is deliberately narrow: `alg` MUST be `EdDSA` (no `none`, no algorithm
agility, RFC 8725 §3.1), no `crit` extensions are understood so any `crit` is refused
(RFC 7515 §4.1.11), the key is chosen by `kid` from a caller-supplied set (a `jwk`, `jku` or
`x5u` header is never trusted), and base64url parts must be canonical so one signature has
exactly one encoding.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from gateway.domain.errors import ConfigError, IntegrityError

ALG = "EdDSA"
#: A JWK Set as parsed JSON: {"keys": [{...}, ...]} (RFC 7517 §5).
JWKS = Mapping[str, Any]
#: Tokens longer than this are refused before any parsing (they arrive in requests).
MAX_TOKEN_LENGTH = 65536

_B64URL = re.compile(r"^[A-Za-z0-9_-]*$")
_SIGNATURE_LENGTH = 64
_KEY_LENGTH = 32


class ProofInvalid(IntegrityError):
    """A JWS that is malformed, uses a refused algorithm or extension, names an unknown key,
    or whose signature does not verify. `reason` says which."""

    reason = "PROOF_INVALID"


def b64url_encode(data: bytes) -> str:
    """base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Strict base64url without padding: refuses padding, other alphabets, and non-canonical
    trailing bits (which would let one value have several encodings)."""
    if not _B64URL.match(text) or len(text) % 4 == 1:
        raise ProofInvalid("not base64url", reason="JWS_MALFORMED")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ProofInvalid("not base64url", reason="JWS_MALFORMED") from exc
    if b64url_encode(data) != text:
        raise ProofInvalid("non-canonical base64url", reason="JWS_MALFORMED")
    return data


def _compact_json(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sign(payload: bytes, key: Ed25519PrivateKey, header: Mapping[str, Any]) -> str:
    """The JWS compact serialization of `payload` (RFC 7515 §7.1).

    `header` becomes the protected header as given (compact JSON, insertion order), with
    `"alg": "EdDSA"` first when absent. Pass `kid` (see `kid_of`) so verifiers can pick the key.
    """
    if "alg" in header and header["alg"] != ALG:
        raise ValueError(f"this module signs only with alg {ALG}")
    protected = {"alg": ALG, **header}
    signing_input = b64url_encode(_compact_json(protected)) + "." + b64url_encode(payload)
    signature = key.sign(signing_input.encode("ascii"))
    return signing_input + "." + b64url_encode(signature)


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in pairs:
        if name in out:
            # RFC 7515 §5.2 step 4: duplicate header names MUST be rejected (or last-wins);
            # rejecting removes any ambiguity between implementations.
            raise ProofInvalid(f"duplicate header parameter {name!r}", reason="JWS_MALFORMED")
        out[name] = value
    return out


def parse_header(token: str) -> dict[str, Any]:
    """The protected header of a compact JWS, unverified (for routing and diagnostics)."""
    header, _, _ = _split(token)
    return _decode_header(header)


def _split(token: str) -> tuple[str, str, str]:
    if not isinstance(token, str):
        raise ProofInvalid("a JWS must be a string", reason="JWS_MALFORMED")
    if len(token) > MAX_TOKEN_LENGTH:
        raise ProofInvalid(f"JWS longer than {MAX_TOKEN_LENGTH} characters", reason="JWS_MALFORMED")
    parts = token.split(".")
    if len(parts) != 3:
        raise ProofInvalid("a compact JWS has exactly three parts", reason="JWS_MALFORMED")
    return parts[0], parts[1], parts[2]


def _decode_header(part: str) -> dict[str, Any]:
    raw = b64url_decode(part)
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_reject_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ProofInvalid("protected header is not UTF-8 JSON", reason="JWS_MALFORMED") from exc
    if not isinstance(header, dict):
        raise ProofInvalid("protected header is not a JSON object", reason="JWS_MALFORMED")
    return header


def verify(token: str, keys: Mapping[str, Ed25519PublicKey] | JWKS) -> tuple[dict[str, Any], bytes]:
    """Check a compact JWS and return its protected header and payload.

    `keys` maps kid → public key, or is a JWK Set. The header's `kid` selects the key; a token
    without `kid` is accepted only when exactly one key is offered. Raises `ProofInvalid`.
    """
    key_map = keys_from_jwks(keys) if _is_jwks(keys) else keys
    header_part, payload_part, signature_part = _split(token)
    header = _decode_header(header_part)
    if header.get("alg") != ALG:
        raise ProofInvalid(f"alg must be {ALG}", reason="JWS_ALG_NOT_ALLOWED")
    if "crit" in header:
        raise ProofInvalid("crit extensions are not supported", reason="JWS_CRIT_UNSUPPORTED")
    kid = header.get("kid")
    public_key: Any
    if kid is None:
        if len(key_map) != 1:
            raise ProofInvalid("JWS has no kid", reason="JWS_KEY_UNKNOWN")
        public_key = next(iter(key_map.values()))
    elif not isinstance(kid, str) or kid not in key_map:
        raise ProofInvalid("JWS names an unknown kid", reason="JWS_KEY_UNKNOWN")
    else:
        public_key = key_map[kid]
    if not isinstance(public_key, Ed25519PublicKey):
        raise ProofInvalid("key is not Ed25519", reason="JWS_KEY_UNKNOWN")
    payload = b64url_decode(payload_part)
    signature = b64url_decode(signature_part)
    if len(signature) != _SIGNATURE_LENGTH:
        raise ProofInvalid("Ed25519 signatures are 64 bytes", reason="JWS_MALFORMED")
    try:
        public_key.verify(signature, f"{header_part}.{payload_part}".encode("ascii"))
    except InvalidSignature as exc:
        raise ProofInvalid("signature does not verify", reason="JWS_SIGNATURE_INVALID") from exc
    return header, payload


# ---- keys -------------------------------------------------------------------------------


def _raw_public(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def kid_of(public_key: Ed25519PublicKey) -> str:
    """The RFC 7638 JWK thumbprint: SHA-256 over the required members in lexicographic order
    (RFC 8037 §2 names them crv, kty, x for OKP keys)."""
    canonical = _compact_json(
        {"crv": "Ed25519", "kty": "OKP", "x": b64url_encode(_raw_public(public_key))}
    )
    return b64url_encode(hashlib.sha256(canonical).digest())


def jwk_of(public_key: Ed25519PublicKey) -> dict[str, str]:
    """The public JWK (RFC 8037 §2) with its thumbprint as kid."""
    return {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": b64url_encode(_raw_public(public_key)),
        "kid": kid_of(public_key),
        "use": "sig",
        "alg": ALG,
    }


def jwks_of(
    keys: Ed25519PublicKey | Mapping[str, Ed25519PublicKey] | list[Ed25519PublicKey],
) -> dict[str, Any]:
    """A JWK Set publishing `keys` (each under its thumbprint kid)."""
    if isinstance(keys, Ed25519PublicKey):
        seq = [keys]
    elif isinstance(keys, Mapping):
        seq = list(keys.values())
    else:
        seq = list(keys)
    return {"keys": [jwk_of(k) for k in seq]}


def _is_jwks(keys: Mapping[str, Any]) -> bool:
    return isinstance(keys.get("keys"), list)


def keys_from_jwks(jwks: JWKS, *, source: str = "JWKS") -> dict[str, Ed25519PublicKey]:
    """kid → public key for every Ed25519 signing key in a JWK Set.

    Keys of other types or for other uses are skipped (a set may publish several kinds);
    a malformed Ed25519 entry, a private key (`d`) or a repeated kid is a `ConfigError`,
    because the set is configuration the operator must fix.
    """
    entries = jwks.get("keys") if isinstance(jwks, Mapping) else None
    if not isinstance(entries, list):
        raise ConfigError(f"{source}: a JWK Set is an object with a 'keys' array")
    out: dict[str, Ed25519PublicKey] = {}
    for i, jwk in enumerate(entries):
        where = f"{source}: keys[{i}]"
        if not isinstance(jwk, Mapping):
            raise ConfigError(f"{where}: a JWK is an object")
        if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
            continue
        if jwk.get("use", "sig") != "sig" or jwk.get("alg", ALG) != ALG:
            continue
        if "d" in jwk:
            raise ConfigError(f"{where}: holds a private key ('d'); publish public keys only")
        x = jwk.get("x")
        try:
            raw = b64url_decode(x) if isinstance(x, str) else b""
        except ProofInvalid:
            raw = b""
        if len(raw) != _KEY_LENGTH:
            raise ConfigError(f"{where}: 'x' must be a 32-byte base64url Ed25519 public key")
        public_key = Ed25519PublicKey.from_public_bytes(raw)
        kid = jwk.get("kid", kid_of(public_key))
        if not isinstance(kid, str) or not kid:
            raise ConfigError(f"{where}: 'kid' must be a non-empty string")
        if kid in out:
            raise ConfigError(f"{where}: kid {kid!r} appears twice")
        out[kid] = public_key
    return out
