"""Offline verification of a proof (`proofless proof verify`).

Checks the EdDSA signature against a published JWKS, then that the payload's digest is the
SHA-256 of the disclosed data it carries, so neither the signature nor the data can be
swapped on its own.
"""

from __future__ import annotations

import json
import sys
import urllib.request
from pathlib import Path
from typing import Any

from gateway import jws
from gateway.errors import ConfigError, IntegrityError
from gateway.proofs import digest_of

MAX_JWKS_BYTES = 1 << 20


def load_jwks(source: str) -> dict[str, Any]:
    """A JWKS from a file path or an http(s) URL."""
    try:
        if source.startswith(("http://", "https://")):
            with urllib.request.urlopen(source, timeout=10) as response:  # noqa: S310 (scheme checked)
                raw = response.read(MAX_JWKS_BYTES)
        else:
            raw = Path(source).read_bytes()
        jwks = json.loads(raw)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{source}: cannot load a JWKS ({exc})") from exc
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
        raise ConfigError(f"{source}: not a JWKS (no 'keys' list)")
    return jwks


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


def check_proof_file(path: Path, jwks_source: str) -> dict[str, Any]:
    token = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="ascii")
    return check_proof(token, load_jwks(jwks_source))
