"""Reading the key material production code needs, and writing secret files safely.

Certificates (PEM), Ed25519 signing keys (PKCS#8 PEM: proof signing, checkpoint notes,
consent issuers), retired proof-signing keys (JWK files), JWK Sets and CRLs. Every reader turns
an unreadable or malformed file into one `ConfigError` naming the file and what was expected,
never the file's content.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.crypto import jws
from gateway.crypto.proofs import RetiredKey, retired_key_of
from gateway.domain.errors import ConfigError

#: where retired proof-signing keys go, beside the signing key, unless `[proofs] retired_keys`
#: says otherwise; one `<kid>.jwk.json` per key
RETIRED_PROOF_KEYS_DIR = "retired-proof-keys"
RETIRED_KEY_SUFFIX = ".jwk.json"
#: how long a retired key still covers new proofs: running gateways pick the new key up within
#: a second (they watch the key files), replicas whose keys arrive by a Kubernetes Secret
#: within about a minute
DEFAULT_ROTATION_GRACE_S = 300


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


class IssuerKeys(Mapping[str, Ed25519PublicKey]):
    """The keys of trusted token issuers (consent and citizen tokens): kid → Ed25519 public
    key, each with the issuer identities (`iss`) it may sign for.

    A token is accepted only when its `iss` is one of its key's issuers, so one issuer's key
    cannot speak for another, and a key nobody named trusts nothing. Where the identities come
    from (`from_jwks`): a JWK's own `iss` member binds that key to that one issuer (when the
    issuer is trusted); a JWK without one signs for every trusted issuer.
    """

    def __init__(
        self, keys: Mapping[str, Ed25519PublicKey], issuers: Mapping[str, Collection[str]]
    ) -> None:
        self._keys = dict(keys)
        self._issuers = {kid: frozenset(issuers.get(kid, ())) for kid in self._keys}

    @classmethod
    def trusting(cls, keys: Mapping[str, Ed25519PublicKey], issuers: Collection[str]) -> IssuerKeys:
        """Every key in `keys` may sign for each of `issuers`."""
        return cls(keys, {kid: issuers for kid in keys})

    @classmethod
    def from_jwks(
        cls, jwks: jws.JWKS, trusted: Collection[str], *, source: str = "JWKS"
    ) -> IssuerKeys:
        """The Ed25519 signing keys of a JWK Set, bound to the `trusted` issuers (see the class
        docstring). With `trusted` empty, only keys with an `iss` member trust anything."""
        keys = jws.keys_from_jwks(jwks, source=source)
        named: dict[str, str] = {}
        for jwk in jwks.get("keys", []):
            if not isinstance(jwk, Mapping) or "iss" not in jwk:
                continue
            iss = jwk["iss"]
            if not isinstance(iss, str) or not iss:
                raise ConfigError(f"{source}: a JWK's 'iss' must be a non-empty string")
            for kid in jws.keys_from_jwks({"keys": [jwk]}, source=source):
                named[kid] = iss
        issuers: dict[str, frozenset[str]] = {}
        for kid in keys:
            if kid in named:
                trusts = not trusted or named[kid] in trusted
                issuers[kid] = frozenset({named[kid]} if trusts else ())
            else:
                issuers[kid] = frozenset(trusted)
        return cls(keys, issuers)

    def __getitem__(self, kid: str) -> Ed25519PublicKey:
        return self._keys[kid]

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def issuers_of(self, kid: str) -> frozenset[str]:
        return self._issuers.get(kid, frozenset())

    def may_sign(self, kid: str, issuer: str) -> bool:
        return issuer in self.issuers_of(kid)


def issuer_of_token(keys: Mapping[str, Any], kid: str, issuer: Any) -> bool:
    """Whether the key `kid` of `keys` may sign tokens claiming `iss` = `issuer`. `keys` is an
    `IssuerKeys`, or a JWK Set whose keys carry `iss` members; a bare kid → key mapping names
    no issuer, so it trusts none."""
    if not isinstance(issuer, str) or not issuer:
        return False
    if not isinstance(keys, IssuerKeys):
        if not isinstance(keys.get("keys"), list):
            return False
        keys = IssuerKeys.from_jwks(keys, ())
    return keys.may_sign(kid, issuer)


def load_issuer_keys(path: Path | str, trusted: Collection[str]) -> IssuerKeys:
    """A token issuers' JWK Set file (e.g. consent-issuer.jwks.json) with the issuer identities
    its keys may sign for (`[consent] issuers`, and `iss` members). A set that trusts no issuer
    at all is a configuration error: every token would be refused."""
    p = Path(path)
    try:
        data = json.loads(read_file(p, "JWK Set"))
    except ValueError as exc:
        raise ConfigError(f"{p}: not JSON") from exc
    keys = IssuerKeys.from_jwks(data, trusted, source=str(p))
    if not any(keys.issuers_of(kid) for kid in keys):
        raise ConfigError(
            f"{p}: no key may sign for a trusted issuer: name the issuers in [consent] issuers "
            "(or give each JWK an 'iss' member)"
        )
    return keys


def retired_key_files(paths: Sequence[Path]) -> list[Path]:
    """The retired-key files `paths` name: a file as given, a directory's `*.jwk.json` in name
    order. A directory that does not exist holds none (no rotation yet); a missing `*.json`
    file is an error when it is read."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.name.endswith(RETIRED_KEY_SUFFIX))
        elif path.exists() or path.suffix == ".json":
            files.append(path)
    return files


def watched_proof_key_paths(signing_key: Path, retired: Sequence[Path]) -> list[Path]:
    """What a running gateway watches to pick a rotation up: the key, the retired-key
    directories (a file added changes them) and files."""
    return [signing_key, *retired, *retired_key_files(retired)]


def load_retired_proof_keys(paths: Sequence[Path]) -> list[RetiredKey]:
    """Every retired proof-signing key `paths` name: each file holds one JWK, or a JWK Set of
    them, each with `exp` (gateway.crypto.proofs)."""
    out: list[RetiredKey] = []
    for path in retired_key_files(paths):
        try:
            data = json.loads(read_file(path, "retired proof-signing key"))
        except ValueError as exc:
            raise ConfigError(f"{path}: not JSON") from exc
        entries = data.get("keys") if isinstance(data, dict) and "keys" in data else [data]
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise ConfigError(f"{path}: expected a JWK or a JWK Set")
        out += [retired_key_of(e, source=f"{path}") for e in entries]
    return out


def load_proof_keys(
    signing_key: Path, retired: Sequence[Path]
) -> tuple[Ed25519PrivateKey, list[RetiredKey]]:
    """The current proof-signing key and the retired ones the gateway publishes beside it."""
    return load_ed25519_private_key(signing_key), load_retired_proof_keys(retired)


def _pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def rotate_proof_key(
    signing_key: Path,
    retired_dir: Path,
    *,
    grace_s: int = DEFAULT_ROTATION_GRACE_S,
    now: float | None = None,
) -> tuple[RetiredKey, str]:
    """Retire the current proof-signing key and make a new one: (the retired key, new kid).

    The retired key's public JWK goes to `retired_dir/<kid>.jwk.json` with `exp` = now +
    `grace_s` (running gateways may still sign with it until they pick the new key up), and
    only then is the key file replaced by a fresh Ed25519 key (0600): at no moment does the
    published set lack a key that signed a proof. The old private key is not kept.
    """
    if grace_s < 0:
        raise ConfigError("the grace period cannot be negative")
    current = load_ed25519_private_key(signing_key)
    retired_at = int(time.time() if now is None else now) + grace_s
    retired = RetiredKey(current.public_key(), retired_at)
    jwk = (json.dumps(retired.jwk(), indent=2) + "\n").encode()
    write_public(retired_dir / f"{retired.kid}{RETIRED_KEY_SUFFIX}", jwk)
    new = Ed25519PrivateKey.generate()
    write_private(signing_key, _pem(new))
    return retired, jws.kid_of(new.public_key())


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
