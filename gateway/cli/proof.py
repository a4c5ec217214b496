"""`proofless proof verify`: read a proof and a JWKS (file or URL) and check them offline."""

from __future__ import annotations

import json
import sys
import urllib.request
from pathlib import Path
from typing import Any

from gateway.crypto.proof_check import check_proof
from gateway.domain.errors import ConfigError

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


def check_proof_file(path: Path, jwks_source: str) -> dict[str, Any]:
    token = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="ascii")
    return check_proof(token, load_jwks(jwks_source))
