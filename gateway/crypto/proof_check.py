"""Offline verification of a proof (what `proofless proof verify` runs). Pure: the caller
reads the token and the JWKS.

Checks the EdDSA signature against a published JWKS, then that the payload's digest is the
SHA-256 of the disclosed data it carries, so neither the signature nor the data can be
swapped on its own.
"""

from __future__ import annotations

import json
from typing import Any

from gateway.crypto import jws
from gateway.crypto.proofs import digest_of
from gateway.domain.errors import IntegrityError


def check_proof(token: str, jwks: dict[str, Any]) -> dict[str, Any]:
    header, payload_bytes = jws.verify(token.strip(), jws.keys_from_jwks(jwks))
    try:
        payload = json.loads(payload_bytes)
    except ValueError as exc:
        raise IntegrityError("the proof payload is not JSON", reason="PROOF_MALFORMED") from exc
    if not isinstance(payload, dict) or "digest" not in payload or "data" not in payload:
        raise IntegrityError("the proof payload lacks data or digest", reason="PROOF_MALFORMED")
    if digest_of(payload["data"]) != payload["digest"]:
        raise IntegrityError(
            "the disclosed data does not match the signed digest", reason="PROOF_DIGEST_MISMATCH"
        )
    return {"valid": True, "kid": header.get("kid"), "payload": payload}
