"""Reading the key material production code needs, and writing secret files safely.

Certificates (PEM), Ed25519 signing keys (PKCS#8 PEM: proof signing, checkpoint notes,
consent issuers), retired proof-signing keys (JWK files), JWK Sets and CRLs. Every reader turns
an unreadable or malformed file into one `ConfigError` naming the file and what was expected,
never the file's content.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import time
from collections.abc import Collection, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.crypto import jws
from gateway.crypto.proofs import RetiredKey, retired_key_of
from gateway.domain.errors import ConfigError, Unauthenticated, Unavailable

#: where retired proof-signing keys go, beside the signing key, unless `[proofs] retired_keys`
#: says otherwise; one `<kid>.jwk.json` per key
RETIRED_PROOF_KEYS_DIR = "retired-proof-keys"
RETIRED_KEY_SUFFIX = ".jwk.json"
#: how long a retired key still covers new proofs: running gateways pick the new key up within
#: a second (they watch the key files), replicas whose keys arrive by a Kubernetes Secret
#: within about a minute
DEFAULT_ROTATION_GRACE_S = 300

log = logging.getLogger("proofless.crl")


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


# ---- certificate revocation lists ---------------------------------------------------------

_PEM_CRL = re.compile(rb"-----BEGIN X509 CRL-----.+?-----END X509 CRL-----", re.DOTALL)

#: a CA, by its subject name (DER) and its key identifier: a CA rolled over to a new key under
#: the same name is another CA, with a CRL of its own
IssuerKey = tuple[bytes, bytes]


def key_id_of(ca: x509.Certificate) -> bytes:
    """The CA's subject key identifier (RFC 5280 §4.2.1.2; computed when it names none)."""
    try:
        return ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return x509.SubjectKeyIdentifier.from_public_key(ca.public_key()).digest


def issuer_of(cert: x509.Certificate) -> IssuerKey:
    """Which CA issued `cert`: its issuer name (DER) and authority key identifier (b"" when
    the certificate names none)."""
    try:
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        key_id = aki.key_identifier or b""
    except x509.ExtensionNotFound:
        key_id = b""
    return cert.issuer.public_bytes(), key_id


@dataclass(frozen=True)
class IssuerCrl:
    """One CA's CRL, its signature checked against that CA."""

    ca: str  # the CA's subject (RFC 4514), for messages: no personal data in a CA's name
    number: int
    this_update: datetime
    next_update: datetime
    revoked: frozenset[int]

    def stale(self, now: datetime) -> bool:
        """Past its nextUpdate: the CA has published a newer one that this is not."""
        return now >= self.next_update


@dataclass(frozen=True)
class Revocation:
    """The CRLs in force, one per CA of the CA file. A certificate is checked against its own
    issuer's CRL, by (issuer, serial): a serial revoked by one CA says nothing about another's."""

    crls: Mapping[IssuerKey, IssuerCrl]

    def crl_for(self, issuer: IssuerKey) -> IssuerCrl | None:
        """The CRL of the CA that issued a certificate with `issuer` (see `issuer_of`)."""
        crl = self.crls.get(issuer)
        if crl is None and not issuer[1]:  # no key identifier: by name, if only one CA has it
            named = [c for (name, _), c in self.crls.items() if name == issuer[0]]
            crl = named[0] if len(named) == 1 else None
        return crl


def _crl_extension(crl: x509.CertificateRevocationList, kind: type[Any]) -> Any:
    try:
        return crl.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _may_sign_crls(ca: x509.Certificate) -> bool:
    try:
        usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return True
    return bool(usage.crl_sign)


def _signed_by(crl: x509.CertificateRevocationList, ca: x509.Certificate) -> bool:
    try:
        return bool(crl.is_signature_valid(ca.public_key()))  # type: ignore[arg-type]
    except (TypeError, ValueError):  # a key type CRLs cannot be signed with
        return False


def read_crls(crl_path: Path, cas: Sequence[x509.Certificate]) -> dict[IssuerKey, IssuerCrl]:
    """Every CRL in the PEM file `crl_path`, each verified against the CA among `cas` whose
    subject is its issuer and whose key signed it. A CRL no CA signed, a delta CRL, a CRL
    without a number or a nextUpdate, and two CRLs of one CA are `ConfigError`s."""
    blocks = _PEM_CRL.findall(read_file(crl_path, "CRL"))
    if not blocks:
        raise ConfigError(f"{crl_path}: not a PEM CRL")
    out: dict[IssuerKey, IssuerCrl] = {}
    for n, block in enumerate(blocks, 1):
        where = f"{crl_path}: CRL {n}"
        try:
            crl = x509.load_pem_x509_crl(block)
        except ValueError as exc:
            raise ConfigError(f"{where}: not a PEM CRL") from exc
        signer = next(
            (
                ca
                for ca in cas
                if ca.subject == crl.issuer and _may_sign_crls(ca) and _signed_by(crl, ca)
            ),
            None,
        )
        if signer is None:
            raise ConfigError(f"{where}: not signed by the CA (no CA in the CA file signed it)")
        ca = signer.subject.rfc4514_string()
        if _crl_extension(crl, x509.DeltaCRLIndicator) is not None:
            raise ConfigError(f"{where} of {ca}: a delta CRL; give the CA's complete CRL")
        number = _crl_extension(crl, x509.CRLNumber)
        if number is None:
            raise ConfigError(
                f"{where} of {ca}: has no CRL number, so an older CRL could not be told apart"
            )
        if crl.next_update_utc is None:
            raise ConfigError(f"{where} of {ca}: has no nextUpdate")
        key = (signer.subject.public_bytes(), key_id_of(signer))
        if key in out:
            raise ConfigError(f"{where}: a second CRL of {ca}")
        out[key] = IssuerCrl(
            ca=ca,
            number=int(number.crl_number),
            this_update=crl.last_update_utc,
            next_update=crl.next_update_utc,
            revoked=frozenset(r.serial_number for r in crl),
        )
    return out


def load_ca_certificates(path: Path) -> list[x509.Certificate]:
    """Every certificate of a PEM bundle (the client CA file: several during a rollover)."""
    try:
        return x509.load_pem_x509_certificates(read_file(path, "CA certificates"))
    except ValueError as exc:
        raise ConfigError(f"{path}: not PEM certificates") from exc


def load_revocation(
    crl_path: Path, ca_path: Path, *, accepted: MutableMapping[IssuerKey, int] | None = None
) -> Revocation:
    """The CRLs of `crl_path` checked against the CAs of `ca_path`. `accepted` is the highest
    CRL number taken so far for each CA, kept by the caller across reloads: a CRL whose number
    is lower is an old CRL put back (it would un-revoke certificates), refused as a whole;
    once the new CRLs are in force, `accepted` moves up to their numbers."""
    crls = read_crls(crl_path, load_ca_certificates(ca_path))
    highest = accepted if accepted is not None else {}
    for key, crl in crls.items():
        before = highest.get(key)
        if before is not None and crl.number < before:
            raise ConfigError(
                f"{crl_path}: the CRL of {crl.ca} is number {crl.number}, older than number "
                f"{before} already in force: refused (an old CRL un-revokes certificates)"
            )
    for key, crl in crls.items():
        highest[key] = max(highest.get(key, crl.number), crl.number)
    return Revocation(crls)


def load_revoked_serials(crl_path: Path | str, ca_cert: x509.Certificate) -> frozenset[int]:
    """The serials `ca_cert`'s CRL in `crl_path` revokes, its signature checked (a CRL file
    with no CRL of that CA is a `ConfigError`)."""
    p = Path(crl_path)
    crls = read_crls(p, [ca_cert])
    crl = crls.get((ca_cert.subject.public_bytes(), key_id_of(ca_cert)))
    if crl is None:
        raise ConfigError(f"{p}: no CRL of {ca_cert.subject.rfc4514_string()}")
    return crl.revoked


def check_revocation(
    revocation: Revocation | None, issuer: IssuerKey, serial: int, now: datetime
) -> None:
    """Raise unless a fresh CRL of the certificate's own CA is in force and does not list it.
    `revocation` None: revocation is off by configuration, nothing to check.

    No CRL of that CA is UNAUTHENTICATED (REVOCATION_UNKNOWN); a CRL past its nextUpdate is
    UNAVAILABLE (REVOCATION_LIST_STALE, the gateway's fault, logged once per CRL): both fail
    closed, since neither can say the certificate is not revoked."""
    if revocation is None:
        return
    crl = revocation.crl_for(issuer)
    if crl is None:
        raise Unauthenticated(
            "no revocation list of the client certificate's CA is in force",
            reason="REVOCATION_UNKNOWN",
        )
    if crl.stale(now):
        if _STALE_LOGGED.get(crl.ca) != crl.number:
            _STALE_LOGGED[crl.ca] = crl.number
            log.error(
                "the CRL in force is past its nextUpdate: callers of its CA are refused until "
                "a newer CRL is installed (proofless certs crl, or the CA's own)",
                extra={"origin": crl.ca, "version": crl.number},
            )
        raise Unavailable(
            "the gateway's certificate revocation list is out of date",
            reason="REVOCATION_LIST_STALE",
        )
    if serial in crl.revoked:
        raise Unauthenticated("the client certificate is revoked", reason="CERTIFICATE_REVOKED")


#: CA → the stale CRL number already logged (one error line per stale CRL, not per call)
_STALE_LOGGED: dict[str, int] = {}
