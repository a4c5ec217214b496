"""Signed proofs (电子证明): what an approval system files with its case.

A proof is a compact JWS (RFC 7515) signed with Ed25519 (`alg: EdDSA`, RFC 8037) whose
payload says who asked what, for which service item and case, what was disclosed, where it
came from and where the access sits in the audit log. Any JOSE library verifies it offline
with the JWKS published at the ops server's `/.well-known/jwks.json`.
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


class ProofSigner:
    """Holds the proof-signing key; one signing call per proof."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.public_key: Ed25519PublicKey = key.public_key()
        self.jwk: dict[str, Any] = jws.jwk_of(self.public_key)
        self.kid: str = self.jwk["kid"]
        self._header = {"alg": "EdDSA", "kid": self.kid, "typ": PROOF_TYPE}
        # The protected header never changes: encode it once (what jws.sign would produce).
        protected = json.dumps(
            {"alg": jws.ALG, **self._header}, separators=(",", ":"), ensure_ascii=False
        )
        self._protected_b64 = jws.b64url_encode(protected.encode())

    def sign(self, claims: ProofClaims) -> str:
        """The compact JWS of the claims: byte for byte `jws.sign(canonical_json(payload))`,
        with the header pre-encoded and exactly one Ed25519 signing call."""
        signing_input = self._protected_b64 + "." + jws.b64url_encode(claims.payload_json())
        signature = self._key.sign(signing_input.encode("ascii"))
        return signing_input + "." + jws.b64url_encode(signature)

    def jwks(self) -> Mapping[str, Any]:
        return {"keys": [self.jwk]}
