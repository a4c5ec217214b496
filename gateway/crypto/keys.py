"""Reading the key material production code needs, and writing secret files safely.

Certificates (PEM), Ed25519 signing keys (PKCS#8 PEM: proof signing, checkpoint notes,
consent issuers), JWK Sets and CRLs. Every reader turns an unreadable or malformed file into
one `ConfigError` naming the file and what was expected, never the file's content.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.crypto import jws
from gateway.domain.errors import ConfigError


def write_file(path: Path, data: bytes, mode: int) -> None:
    """Write a fresh file with `mode` (O_EXCL, so never an existing file's mode), fsynced,
    then renamed over `path`: a reader sees the old file or the whole new one."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_private(path: Path, data: bytes) -> None:
    """A secret: 0600 from the moment the file exists."""
    write_file(path, data, 0o600)


def write_public(path: Path, data: bytes) -> None:
    write_file(path, data, 0o644)


def read_file(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {what}: {exc.strerror}") from exc


def load_certificate(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(read_file(path, "certificate"))
    except ValueError as exc:
        raise ConfigError(f"{path}: not a PEM certificate") from exc


def load_private_key(path: Path) -> Any:
    try:
        return serialization.load_pem_private_key(read_file(path, "private key"), password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{path}: not an unencrypted PKCS#8 PEM private key") from exc


def load_ed25519_private_key(path: Path | str) -> Ed25519PrivateKey:
    """An Ed25519 signing key (PKCS#8 PEM): proof signing, checkpoint notes, consent issuer."""
    key = load_private_key(Path(path))
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path}: expected an Ed25519 private key")
    return key


def load_jwks(path: Path | str) -> dict[str, Ed25519PublicKey]:
    """kid → key from a JWK Set file (e.g. consent-issuer.jwks.json)."""
    p = Path(path)
    try:
        data = json.loads(read_file(p, "JWK Set"))
    except ValueError as exc:
        raise ConfigError(f"{p}: not JSON") from exc
    keys = jws.keys_from_jwks(data, source=str(p))
    if not keys:
        raise ConfigError(f"{p}: holds no Ed25519 signing key")
    return keys


def load_revoked_serials(crl_path: Path | str, ca_cert: x509.Certificate) -> frozenset[int]:
    """The serials a CRL revokes, after checking the CRL is signed by `ca_cert`'s key.
    (For the mTLS interceptor: compare against the peer certificate's serial.)"""
    p = Path(crl_path)
    try:
        crl = x509.load_pem_x509_crl(read_file(p, "CRL"))
    except ValueError as exc:
        raise ConfigError(f"{p}: not a PEM CRL") from exc
    public_key = ca_cert.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or not crl.is_signature_valid(
        public_key
    ):
        raise ConfigError(f"{p}: CRL is not signed by the CA")
    if crl.issuer != ca_cert.subject:
        raise ConfigError(f"{p}: CRL issuer is not the CA")
    return frozenset(r.serial_number for r in crl)
