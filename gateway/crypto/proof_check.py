"""Offline verification of a proof (what `proofless proof verify` runs). Pure: the caller
reads the token and the JWKS.

Checks the EdDSA signature against a published JWKS, then that the payload's digest is the
SHA-256 of the disclosed data it carries, so neither the signature nor the data can be
swapped on its own. A proof signed by a retired key (its JWK carries `exp`, and maybe `nbf`)
is accepted only when its `iat` lies within that key's validity (gateway.crypto.proofs).
"""

from __future__ import annotations

import json
from typing import Any

from gateway.crypto import jws
from gateway.crypto.proofs import check_issued_within, digest_of, key_validity
from gateway.domain.errors import IntegrityError


def check_proof(token: str, jwks: dict[str, Any]) -> dict[str, Any]:
    keys = jws.keys_from_jwks(jwks)
    header, payload_bytes = jws.verify(token.strip(), keys)
    kid = header.get("kid", next(iter(keys), None))  # no kid: the one key offered
    try:
        payload = json.loads(payload_bytes)
    except ValueError as exc:
        raise IntegrityError("the proof payload is not JSON", reason="PROOF_MALFORMED") from exc
    if not isinstance(payload, dict) or "digest" not in payload or "data" not in payload:
        raise IntegrityError("the proof payload lacks data or digest", reason="PROOF_MALFORMED")
    validity = key_validity(jwks).get(str(kid))
    check_issued_within(validity, payload)
    if digest_of(payload["data"]) != payload["digest"]:
        raise IntegrityError(
            "the disclosed data does not match the signed digest", reason="PROOF_DIGEST_MISMATCH"
        )
    report: dict[str, Any] = {"valid": True, "kid": kid, "payload": payload}
    if validity is not None:
        report["key_retired_at"] = validity.not_after
    return report
