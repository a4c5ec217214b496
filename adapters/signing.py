"""AppKey + HMAC-SHA256 request signing, as the household registry's gateway requires.

The string to sign is five lines joined by "\\n":

    METHOD
    path?query            (exactly as sent, query string included)
    timestamp             (Unix seconds, decimal)
    nonce                 (random, used once)
    hex(SHA-256(body))    (of the empty string for a body-less request)

and the signature is hex(HMAC-SHA256(app secret, that string)), sent with the app key,
timestamp and nonce in the headers below. The body hash goes beyond "method, path, timestamp,
nonce": it binds the ID number in a POST body to the signature, so a captured request cannot be
replayed for another citizen. Pure functions: the adapter signs, the simulator verifies.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from pathlib import Path

HEADER_APP_KEY = "X-App-Key"
HEADER_TIMESTAMP = "X-Timestamp"
HEADER_NONCE = "X-Nonce"
HEADER_SIGNATURE = "X-Signature"


def string_to_sign(method: str, path_qs: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    digest = hashlib.sha256(body).hexdigest()
    return "\n".join((method.upper(), path_qs, timestamp, nonce, digest)).encode()


def signature(
    secret: bytes, *, method: str, path_qs: str, timestamp: str, nonce: str, body: bytes
) -> str:
    return hmac.digest(
        secret, string_to_sign(method, path_qs, timestamp, nonce, body), "sha256"
    ).hex()


def signed_headers(
    app_key: str,
    secret: bytes,
    method: str,
    path_qs: str,
    body: bytes = b"",
    *,
    now: float | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    timestamp = str(int(time.time() if now is None else now))
    nonce = nonce or secrets.token_hex(16)
    return {
        HEADER_APP_KEY: app_key,
        HEADER_TIMESTAMP: timestamp,
        HEADER_NONCE: nonce,
        HEADER_SIGNATURE: signature(
            secret, method=method, path_qs=path_qs, timestamp=timestamp, nonce=nonce, body=body
        ),
    }


def verify(
    secret: bytes,
    *,
    method: str,
    path_qs: str,
    timestamp: str,
    nonce: str,
    body: bytes,
    presented: str,
) -> bool:
    expected = signature(
        secret, method=method, path_qs=path_qs, timestamp=timestamp, nonce=nonce, body=body
    )
    return hmac.compare_digest(expected, presented.lower())


def read_secret(path: str | Path) -> bytes:
    """The app secret file holds text (the dev tooling writes 32 random bytes, hex-encoded);
    the HMAC key is that text, stripped, as bytes."""
    return Path(path).read_text(encoding="ascii").strip().encode("ascii")
