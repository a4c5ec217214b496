"""Signed proofs (电子证明): what an approval system files with its case.

A proof is a compact JWS (RFC 7515) signed with Ed25519 (`alg: EdDSA`, RFC 8037) whose
payload says who asked what, for which service item and case, what was disclosed, where it
came from and where the access sits in the audit log. Any JOSE library verifies it offline
with the JWKS published at the ops server's `/.well-known/jwks.json`.

Key rotation. The JWKS holds the current proof-signing key and every retired one
(`proofless certs rotate-proof-key`), so proofs signed before a rotation keep verifying. A
retired key's JWK carries its validity in two members beside the RFC 8037 ones:

    exp  seconds since the epoch: the key signed no proof issued at or after this time
    nbf  optional; the key signed no proof issued before this time

JOSE libraries ignore members they do not know (RFC 7517 §4), so the set stays usable by any
of them (the members follow OpenID Federation's historical keys). A verifier that honours them
(`check_issued_within`, what `proofless proof verify` runs) accepts a proof from a retired key
only when the proof's `iat` lies in that window. The gateway never signs with a retired key.
Retirement is for rotation, not compromise: whoever holds a retired private key can backdate a
proof into the window, so a compromised key is removed from the JWKS altogether.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from _json import encode_basestring, make_encoder
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.crypto import jws
from gateway.domain.errors import ConfigError, IntegrityError
from gateway.domain.times import rfc3339

PROOF_TYPE = "proofless-proof+jwt"


def _not_json(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


#: The C encoder `json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)` builds
#: on every call (as much work as the encoding of a small record), built once. No
#: circular-reference markers: proofs encode what the servicer built from protobuf messages.
_ENCODE = make_encoder(None, _not_json, encode_basestring, None, ":", ",", True, False, True)


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no spaces, UTF-8: the byte form the proof digest is taken over.

    Byte-identical to `json.dumps(value, sort_keys=True, separators=(",", ":"),
    ensure_ascii=False).encode()` (a hypothesis test holds it to that), for any JSON value,
    lists included. Audit leaves have their own encoder (gateway.audit.entry), which refuses
    floats and lone surrogates in entries.
    """
    return "".join(_ENCODE(value, 0)).encode()


def digest_of(disclosed: Any) -> str:
    """SHA-256 (hex) of the canonical JSON of the disclosed data."""
    return hashlib.sha256(canonical_json(disclosed)).hexdigest()


def digest_of_json(disclosed_json: bytes) -> str:
    """`digest_of` for data already in canonical JSON (encode once, digest and sign it)."""
    return hashlib.sha256(disclosed_json).hexdigest()


#: domain separation of the applicant binding's HMAC input
BINDING_LABEL = b"proofless-applicant-v1\x00"


def new_binding_key() -> bytes:
    """A fresh key for one proof's applicant binding: 128 random bits."""
    return os.urandom(16)


def binding(key: bytes, subject: str) -> str:
    """Binds a proof to a person (or organisation) without a guessable identifier.

    An ID number has only ~10^11 values and a plain hash of it is reversed in hours and links
    every proof about the person; an HMAC under a random per-proof key is neither. The key
    travels beside the proof (Attestation.applicant_key), to the approval system that already
    knows the applicant: with the key and the ID a verifier recomputes the binding; with the
    proof alone nobody can.
    """
    return jws.b64url_encode(
        hmac.new(key, BINDING_LABEL + subject.encode(), hashlib.sha256).digest()
    )


def new_proof_id() -> str:
    """128 random bits as 32 hex digits (the shape of uuid4().hex at a quarter of its cost)."""
    return os.urandom(16).hex()


# Stands for `data` while the rest of the payload is encoded; `"data":0` cannot occur inside
# a JSON string (its quotes would be escaped), so the one match is the payload's own key.
_DATA_SLOT = b'"data":0'


@dataclass(frozen=True)
class ProofClaims:
    """Everything a proof states; `payload()` is the JWS payload."""

    proof_id: str
    issuer: str
    caller: str
    service_item: str
    case_id: str
    applicant: str  # binding(key, the applicant's ID number or credit code)
    kind: str  # the evidence type, or "claims"
    fields: Sequence[str]
    data: Any  # the disclosed record fields or claim results
    digest: str
    departments: Sequence[str]
    as_of: datetime | None
    issued_at: datetime
    audit_log: str
    audit_index: int
    #: canonical_json(data) when the caller already has it (it digested it): not re-encoded
    data_json: bytes | None = None

    def payload(self) -> dict[str, Any]:
        return {
            "jti": self.proof_id,
            "iss": self.issuer,
            "iat": int(self.issued_at.timestamp()),
            "issued_at": rfc3339(self.issued_at),
            "caller": self.caller,
            "service_item": self.service_item,
            "case_id": self.case_id,
            "applicant_binding": self.applicant,
            "kind": self.kind,
            "fields": list(self.fields),
            "data": self.data,
            "digest": self.digest,
            "departments": list(self.departments),
            "as_of": rfc3339(self.as_of) if self.as_of else None,
            "audit": {"log": self.audit_log, "index": self.audit_index},
        }

    def payload_json(self) -> bytes:
        """canonical_json(payload()), encoding `data` only if `data_json` is not given."""
        if self.data_json is None:
            return canonical_json(self.payload())
        payload = self.payload()
        payload["data"] = 0
        encoded = canonical_json(payload)
        return encoded.replace(_DATA_SLOT, b'"data":' + self.data_json, 1)


@dataclass(frozen=True)
class RetiredKey:
    """A proof-signing key that signs no more. Its public half stays in the JWKS so the proofs
    it signed keep verifying, within its validity."""

    public_key: Ed25519PublicKey
    #: seconds since the epoch: the key signed no proof issued at or after this time
    retired_at: int
    #: seconds since the epoch, when known: the key signed no proof issued before this time
    since: int | None = None

    @property
    def kid(self) -> str:
        return jws.kid_of(self.public_key)

    def jwk(self) -> dict[str, Any]:
        out: dict[str, Any] = jws.jwk_of(self.public_key)
        if self.since is not None:
            out["nbf"] = self.since
        out["exp"] = self.retired_at
        return out


def _epoch_member(jwk: Mapping[str, Any], name: str, where: str) -> int | None:
    value = jwk.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigError(f"{where}: '{name}' must be seconds since the epoch (an integer)")
    return value


def retired_key_of(jwk: Mapping[str, Any], *, source: str = "retired key") -> RetiredKey:
    """A retired key from its published JWK, which must carry `exp` (see the module docstring)."""
    keys = jws.keys_from_jwks({"keys": [jwk]}, source=source)
    if len(keys) != 1:
        raise ConfigError(f"{source}: not an Ed25519 signing key")
    ((kid, public_key),) = keys.items()
    if kid != jws.kid_of(public_key):
        raise ConfigError(f"{source}: 'kid' is not the key's RFC 7638 thumbprint")
    retired_at = _epoch_member(jwk, "exp", source)
    if retired_at is None:
        raise ConfigError(f"{source}: a retired key needs 'exp', the time it was retired")
    since = _epoch_member(jwk, "nbf", source)
    if since is not None and since >= retired_at:
        raise ConfigError(f"{source}: 'nbf' must come before 'exp'")
    return RetiredKey(public_key, retired_at, since)


@dataclass(frozen=True)
class KeyValidity:
    """When a published key signed proofs: [not_before, not_after), either end open.
    `closed`: the bounds are malformed, so nothing signed with the key is accepted."""

    not_before: int | None = None
    not_after: int | None = None
    closed: bool = False


def _bound(jwk: Mapping[str, Any], name: str) -> tuple[int | None, bool]:
    value = jwk.get(name)
    if value is None:
        return None, True
    if not isinstance(value, int) or isinstance(value, bool):
        return None, False
    return value, True


def key_validity(jwks: Mapping[str, Any]) -> dict[str, KeyValidity]:
    """kid → validity for every key of a JWK Set that carries `nbf` or `exp`; a kid not in
    the result has no bound (the current key)."""
    out: dict[str, KeyValidity] = {}
    entries = jwks.get("keys")
    if not isinstance(entries, list):
        return out
    for jwk in entries:
        if not isinstance(jwk, Mapping):
            continue
        kid = jwk.get("kid")
        if kid is None:  # keyed by its thumbprint, as jws.keys_from_jwks does
            kid = next(iter(jws.keys_from_jwks({"keys": [jwk]})), None)
        if not isinstance(kid, str):
            continue
        (not_before, nbf_ok), (not_after, exp_ok) = _bound(jwk, "nbf"), _bound(jwk, "exp")
        if not (nbf_ok and exp_ok):
            out[kid] = KeyValidity(closed=True)
        elif not_before is not None or not_after is not None:
            out[kid] = KeyValidity(not_before, not_after)
    return out


def check_issued_within(validity: KeyValidity | None, payload: Mapping[str, Any]) -> None:
    """Refuse a proof whose `iat` lies outside its key's validity (PROOF_KEY_NOT_VALID)."""
    if validity is None:
        return
    if validity.closed:
        raise IntegrityError(
            "the signing key's published validity (nbf, exp) is malformed",
            reason="PROOF_KEY_NOT_VALID",
        )
    iat = payload.get("iat")
    if not isinstance(iat, int) or isinstance(iat, bool):
        raise IntegrityError(
            "the proof has no integer iat to check against its key's validity",
            reason="PROOF_KEY_NOT_VALID",
        )
    if validity.not_after is not None and iat >= validity.not_after:
        raise IntegrityError(
            "the proof was issued after its signing key was retired", reason="PROOF_KEY_NOT_VALID"
        )
    if validity.not_before is not None and iat < validity.not_before:
        raise IntegrityError(
            "the proof was issued before its signing key came into service",
            reason="PROOF_KEY_NOT_VALID",
        )


class ProofSigner:
    """Holds the proof-signing key (and the retired keys it publishes); one signing call per
    proof. `use` swaps the keys in place, so a rotation takes effect without a restart."""

    def __init__(self, key: Ed25519PrivateKey, retired: Sequence[RetiredKey] = ()) -> None:
        self.use(key, retired)

    def use(self, key: Ed25519PrivateKey, retired: Sequence[RetiredKey] = ()) -> None:
        """Sign with `key` from now on and publish it with `retired`. Raises ConfigError when
        the key is itself listed as retired (a rotation half done) or a retired kid repeats."""
        public_key = key.public_key()
        jwk: dict[str, Any] = jws.jwk_of(public_key)
        kid: str = jwk["kid"]
        retired_kids = [r.kid for r in retired]
        if kid in retired_kids:
            raise ConfigError(
                f"the proof-signing key {kid} is listed as retired: finish the rotation "
                "(`proofless certs rotate-proof-key`) or remove its retired entry"
            )
        if len(set(retired_kids)) != len(retired_kids):
            raise ConfigError("a retired proof-signing key is listed twice")
        header = {"alg": "EdDSA", "kid": kid, "typ": PROOF_TYPE}
        # The protected header never changes: encode it once (what jws.sign would produce).
        protected = json.dumps(
            {"alg": jws.ALG, **header}, separators=(",", ":"), ensure_ascii=False
        )
        jwks = {"keys": [jwk, *(r.jwk() for r in retired)]}
        # no await between these: a proof is signed wholly with the old key or the new one
        self._key = key
        self.public_key: Ed25519PublicKey = public_key
        self.jwk: dict[str, Any] = jwk
        self.kid: str = kid
        self._header = header
        self._protected_b64 = jws.b64url_encode(protected.encode())
        self._jwks: Mapping[str, Any] = jwks
        self.retired: tuple[RetiredKey, ...] = tuple(retired)

    def sign(self, claims: ProofClaims) -> str:
        """The compact JWS of the claims: byte for byte `jws.sign(canonical_json(payload))`,
        with the header pre-encoded and exactly one Ed25519 signing call."""
        signing_input = self._protected_b64 + "." + jws.b64url_encode(claims.payload_json())
        signature = self._key.sign(signing_input.encode("ascii"))
        return signing_input + "." + jws.b64url_encode(signature)

    def probe(self) -> str:
        """Sign and verify a fixed message with the current key: "" when the key signs (the
        readiness check), else why not."""
        message = b"proofless readiness probe"
        try:
            self.public_key.verify(self._key.sign(message), message)
        except Exception as exc:  # any failure of the key means: cannot sign proofs
            return f"the proof-signing key cannot sign ({type(exc).__name__})"
        return ""

    def jwks(self) -> Mapping[str, Any]:
        """What /.well-known/jwks.json serves: the current key first, then the retired ones
        with their validity (`exp`, `nbf`)."""
        return self._jwks
