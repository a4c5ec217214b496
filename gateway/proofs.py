"""Signed proofs (电子证明): what an approval system files with its case.

A proof is a compact JWS (RFC 7515) signed with Ed25519 (`alg: EdDSA`, RFC 8037) whose
payload says who asked what, for which service item and case, what was disclosed, where it
came from and where the access sits in the audit log. Any JOSE library verifies it offline
with the JWKS published at the ops server's `/.well-known/jwks.json`.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway import jws

PROOF_TYPE = "proofless-proof+jwt"


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no spaces, UTF-8: the one byte form that digests and audit leaves use."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def digest_of(disclosed: Any) -> str:
    """SHA-256 (hex) of the canonical JSON of the disclosed data."""
    return hashlib.sha256(canonical_json(disclosed)).hexdigest()


def applicant_hash(id_number: str) -> str:
    """Binds a proof to its applicant without carrying the ID number in clear."""
    return hashlib.sha256(id_number.encode()).hexdigest()


def new_proof_id() -> str:
    return uuid.uuid4().hex


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class ProofClaims:
    """Everything a proof states; `payload()` is the JWS payload."""

    proof_id: str
    issuer: str
    caller: str
    service_item: str
    case_id: str
    applicant: str  # applicant_hash(id_number)
    kind: str  # "household" | "social_security" | "property" | "claims"
    fields: Sequence[str]
    data: Any  # the disclosed record fields or claim results
    digest: str
    departments: Sequence[str]
    as_of: datetime | None
    issued_at: datetime
    audit_log: str
    audit_index: int

    def payload(self) -> dict[str, Any]:
        return {
            "jti": self.proof_id,
            "iss": self.issuer,
            "iat": int(self.issued_at.timestamp()),
            "issued_at": rfc3339(self.issued_at),
            "caller": self.caller,
            "service_item": self.service_item,
            "case_id": self.case_id,
            "applicant_sha256": self.applicant,
            "kind": self.kind,
            "fields": list(self.fields),
            "data": self.data,
            "digest": self.digest,
            "departments": list(self.departments),
            "as_of": rfc3339(self.as_of) if self.as_of else None,
            "audit": {"log": self.audit_log, "index": self.audit_index},
        }


class ProofSigner:
    """Holds the proof-signing key; one signing call per proof."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.public_key: Ed25519PublicKey = key.public_key()
        self.jwk: dict[str, Any] = jws.jwk_of(self.public_key)
        self.kid: str = self.jwk["kid"]
        self._header = {"alg": "EdDSA", "kid": self.kid, "typ": PROOF_TYPE}

    def sign(self, claims: ProofClaims) -> str:
        return jws.sign(canonical_json(claims.payload()), self._key, self._header)

    def jwks(self) -> Mapping[str, Any]:
        return {"keys": [self.jwk]}
