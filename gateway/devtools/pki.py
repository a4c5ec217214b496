"""Certificate and key tooling: the dev CA, server and caller certificates, the CRL, and the
non-TLS secrets the gateway and the simulators read (proof and checkpoint signing keys, the
audit pepper, the household registry's HMAC secret, the consent issuer's key and JWKS).

ECDSA P-256 for everything TLS (grpc's BoringSSL handles it everywhere), Ed25519 for JWS and
signed notes. A caller's identity lives in URI SANs (`urn:proofless:caller:<id>`,
`urn:proofless:role:<role>`), read by `gateway.server.identity`.

Layout of a PKI directory (`certs/dev` for development):
    ca.pem ca.key ca.crl index.json            the CA, its CRL and the register of issued certs
    server.pem server.key                      DNS:localhost, IP:127.0.0.1, IP:::1
    clients/<id>.pem clients/<id>.key          one per caller
    proof-signing.key audit-note.key           Ed25519 PKCS#8 PEM
    audit-pepper.bin household-app.secret      32 random bytes / 64 hex characters (no newline)
    marriage-ws.password market-oauth-client.secret medical-insurance-api.key
                                               the other simulated departments' credentials
    consent-issuer.key consent-issuer.jwks.json
    .complete                                  written last by `init_dev_pki`

Every private file is created 0600 with O_CREAT|O_EXCL and moved into place atomically, so
a crash never leaves a world-readable or half-written key; public files are replaced
atomically too. Nothing here is committed (certs/dev is in .gitignore).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.crypto import jws
from gateway.crypto.keys import (
    load_certificate,
    load_ed25519_private_key,
    load_private_key,
    read_file,
    write_private,
    write_public,
)
from gateway.domain.errors import ConfigError
from gateway.domain.vocabulary import ROLES
from gateway.server.identity import CALLER_URI_PREFIX, ROLE_URI_PREFIX

CA_DAYS = 3650
LEAF_DAYS = 365
#: The dev CRL is valid this long; `proofless certs crl` re-signs it.
CRL_DAYS = 365
#: Tolerated clock skew: certificates start this long before "now".
BACKDATE = dt.timedelta(minutes=5)
_CALLER_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


@dataclass(frozen=True)
class DemoCaller:
    id: str
    role: str
    name: str


DEMO_CALLERS: tuple[DemoCaller, ...] = (
    DemoCaller("quangang-window", "approval", "泉港区行政服务中心综合窗口"),
    DemoCaller("fuan-hrss", "approval", "福安市人力资源和社会保障局审批系统"),
    DemoCaller("fuzhou-civil-affairs", "approval", "福州市民政局社会救助审批系统"),
    DemoCaller("ningde-window", "approval", "宁德市蕉城区行政服务中心综合窗口"),
    DemoCaller("huli-window", "approval", "厦门市湖里区行政服务中心综合窗口"),
    DemoCaller("auditor", "auditor", "省大数据管理局审计"),
    DemoCaller("citizen-portal", "portal", "闽政通 citizen portal"),
    DemoCaller("witness", "witness", "independent checkpoint witness"),
)


@dataclass(frozen=True)
class CertAuthority:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class IndexEntry:
    """One issued certificate in `index.json` (serials as hex: JSON numbers lose precision)."""

    serial: int
    kind: str  # "server" or "client"
    subject: str  # caller id, or the server's common name
    role: str
    not_before: dt.datetime
    not_after: dt.datetime
    path: str
    revoked_at: dt.datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "serial": format(self.serial, "x"),
            "kind": self.kind,
            "subject": self.subject,
            "role": self.role,
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "path": self.path,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> IndexEntry:
        revoked = raw.get("revoked_at")
        return cls(
            serial=int(raw["serial"], 16),
            kind=str(raw["kind"]),
            subject=str(raw["subject"]),
            role=str(raw.get("role", "")),
            not_before=dt.datetime.fromisoformat(raw["not_before"]),
            not_after=dt.datetime.fromisoformat(raw["not_after"]),
            path=str(raw["path"]),
            revoked_at=dt.datetime.fromisoformat(revoked) if revoked else None,
        )


@dataclass(frozen=True)
class DevPki:
    """The paths of a PKI directory."""

    dir: Path

    @property
    def ca_pem(self) -> Path:
        return self.dir / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.dir / "ca.key"

    @property
    def ca_crl(self) -> Path:
        return self.dir / "ca.crl"

    @property
    def index(self) -> Path:
        return self.dir / "index.json"

    @property
    def server_pem(self) -> Path:
        return self.dir / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.dir / "server.key"

    def client_pem(self, caller: str) -> Path:
        return self.dir / "clients" / f"{caller}.pem"

    def client_key(self, caller: str) -> Path:
        return self.dir / "clients" / f"{caller}.key"

    @property
    def proof_signing_key(self) -> Path:
        return self.dir / "proof-signing.key"

    @property
    def audit_note_key(self) -> Path:
        return self.dir / "audit-note.key"

    @property
    def audit_pepper(self) -> Path:
        return self.dir / "audit-pepper.bin"

    @property
    def household_secret(self) -> Path:
        return self.dir / "household-app.secret"

    @property
    def marriage_password(self) -> Path:
        """HTTP Basic password of the marriage registry's WebService."""
        return self.dir / "marriage-ws.password"

    @property
    def market_client_secret(self) -> Path:
        """OAuth 2.0 client secret at the market regulation bureau's token endpoint."""
        return self.dir / "market-oauth-client.secret"

    @property
    def medical_insurance_key(self) -> Path:
        """API key of the medical insurance bureau's query API."""
        return self.dir / "medical-insurance-api.key"

    @property
    def consent_issuer_key(self) -> Path:
        return self.dir / "consent-issuer.key"

    @property
    def consent_issuer_jwks(self) -> Path:
        return self.dir / "consent-issuer.jwks.json"

    @property
    def complete(self) -> Path:
        return self.dir / ".complete"

    def config_overrides(self) -> dict[str, Any]:
        """The gateway configuration keys that point every certificate, key and secret at
        this directory, as deploy/config/gateway.toml does for certs/dev."""
        return {
            "tls": {
                "ca": str(self.ca_pem),
                "cert": str(self.server_pem),
                "key": str(self.server_key),
                "crl": str(self.ca_crl),
            },
            "proofs": {"signing_key": str(self.proof_signing_key)},
            "audit": {
                "note_key": str(self.audit_note_key),
                "pepper_file": str(self.audit_pepper),
            },
            "departments": {
                "household": {"auth": {"secret_file": str(self.household_secret)}},
                "marriage": {"auth": {"password_file": str(self.marriage_password)}},
                "medical_insurance": {"auth": {"key_file": str(self.medical_insurance_key)}},
                "business_licence": {
                    "auth": {"client_secret_file": str(self.market_client_secret)}
                },
            },
            "consent": {"issuers_jwks": str(self.consent_issuer_jwks)},
        }

    def load_ca(self) -> CertAuthority:
        return CertAuthority(load_certificate(self.ca_pem), _load_ec_key(self.ca_key))


# ---- files ------------------------------------------------------------------------------


def _load_ec_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = load_private_key(path)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"{path}: expected an ECDSA private key")
    return key


def _pem_key(key: ec.EllipticCurvePrivateKey | Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


# ---- certificates (pure) ----------------------------------------------------------------


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def create_ca(
    common_name: str = "Proofless Dev CA",
    *,
    days: int = CA_DAYS,
    not_before: dt.datetime | None = None,
) -> CertAuthority:
    """A new self-signed CA (in memory): path length 0, signs leaves and CRLs only."""
    key = ec.generate_private_key(ec.SECP256R1())
    start = not_before or (_now() - BACKDATE)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Proofless"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertAuthority(cert, key)


def _leaf(
    ca: CertAuthority,
    *,
    common_name: str,
    sans: Sequence[x509.GeneralName],
    usage: x509.ObjectIdentifier,
    days: int,
    not_before: dt.datetime | None,
    key: ec.EllipticCurvePrivateKey | None = None,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = key or ec.generate_private_key(ec.SECP256R1())
    start = not_before or (_now() - BACKDATE)
    builder = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Proofless"),
                    x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                ]
            )
        )
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return builder.sign(ca.key, hashes.SHA256()), key


def make_server_cert(
    ca: CertAuthority,
    *,
    dns_names: Sequence[str] = ("localhost",),
    ips: Sequence[str] = ("127.0.0.1", "::1"),
    days: int = LEAF_DAYS,
    not_before: dt.datetime | None = None,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    return _leaf(
        ca,
        common_name=dns_names[0] if dns_names else "proofless",
        sans=sans,
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        days=days,
        not_before=not_before,
    )


def check_caller_id(caller: str) -> str:
    if not _CALLER_ID.match(caller):
        raise ConfigError(
            f"caller id {caller!r}: use 1-63 of a-z 0-9 . _ - starting with a letter or digit"
        )
    return caller


def check_role(role: str) -> str:
    if role not in ROLES:
        raise ConfigError(f"role {role!r}: expected one of {', '.join(sorted(ROLES))}")
    return role


def make_client_cert(
    ca: CertAuthority,
    caller: str,
    role: str,
    *,
    days: int = LEAF_DAYS,
    not_before: dt.datetime | None = None,
    caller_san: bool = True,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A caller certificate; `caller_san=False` leaves out the caller URI (for negative tests)."""
    check_caller_id(caller)
    check_role(role)
    sans: list[x509.GeneralName] = []
    if caller_san:
        sans.append(x509.UniformResourceIdentifier(CALLER_URI_PREFIX + caller))
    sans.append(x509.UniformResourceIdentifier(ROLE_URI_PREFIX + role))
    return _leaf(
        ca,
        common_name=caller,
        sans=sans,
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
        days=days,
        not_before=not_before,
    )


def make_crl(
    ca: CertAuthority,
    revoked: Sequence[tuple[int, dt.datetime]],
    *,
    number: int,
    days: int = CRL_DAYS,
    now: dt.datetime | None = None,
) -> x509.CertificateRevocationList:
    """A CRL (RFC 5280 §5) listing `(serial, revocation time)` pairs, signed by the CA."""
    this_update = now or _now()
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.cert.subject)
        .last_update(this_update)
        .next_update(this_update + dt.timedelta(days=days))
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    )
    for serial, when in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build()
        )
    return builder.sign(ca.key, hashes.SHA256())


# ---- the index --------------------------------------------------------------------------


def _load_index(pki: DevPki) -> tuple[int, list[IndexEntry]]:
    if not pki.index.exists():
        return 0, []
    try:
        raw = json.loads(read_file(pki.index, "certificate index"))
        return int(raw.get("crl_number", 0)), [IndexEntry.from_json(e) for e in raw["certs"]]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{pki.index}: malformed certificate index") from exc


def _save_index(pki: DevPki, crl_number: int, entries: Sequence[IndexEntry]) -> None:
    body = {"version": 1, "crl_number": crl_number, "certs": [e.to_json() for e in entries]}
    write_public(pki.index, (json.dumps(body, indent=2, ensure_ascii=False) + "\n").encode())


def _record(pki: DevPki, entry: IndexEntry) -> None:
    number, entries = _load_index(pki)
    _save_index(pki, number, [*entries, entry])


def list_certs(dir: Path | str) -> list[IndexEntry]:
    """Every certificate issued from this directory, in issue order."""
    return _load_index(DevPki(Path(dir)))[1]


def write_crl(dir: Path | str, *, days: int = CRL_DAYS) -> x509.CertificateRevocationList:
    """Re-sign the CRL from the index with the next CRL number and write `ca.crl`."""
    pki = DevPki(Path(dir))
    ca = pki.load_ca()
    number, entries = _load_index(pki)
    number += 1
    revoked = [(e.serial, e.revoked_at) for e in entries if e.revoked_at is not None]
    crl = make_crl(ca, revoked, number=number, days=days)
    _save_index(pki, number, entries)
    write_public(pki.ca_crl, crl.public_bytes(serialization.Encoding.PEM))
    return crl


# ---- operations on a directory ----------------------------------------------------------


@dataclass(frozen=True)
class IssuedCert:
    cert: x509.Certificate
    cert_path: Path
    key_path: Path


def issue_client(
    dir: Path | str,
    caller: str,
    role: str,
    *,
    days: int = LEAF_DAYS,
    not_before: dt.datetime | None = None,
    ca: CertAuthority | None = None,
    caller_san: bool = True,
    out_dir: Path | str | None = None,
) -> IssuedCert:
    """Issue `clients/<caller>.pem|.key` (replacing an earlier pair) and record it.

    `ca` signs instead of the directory's CA (a certificate from another CA); `out_dir`
    writes the pair elsewhere (so a negative-test certificate does not replace the real one).
    """
    pki = DevPki(Path(dir))
    signer = ca or pki.load_ca()
    cert, key = make_client_cert(
        signer, caller, role, days=days, not_before=not_before, caller_san=caller_san
    )
    target = DevPki(Path(out_dir)) if out_dir is not None else pki
    key_path, cert_path = target.client_key(caller), target.client_pem(caller)
    write_private(key_path, _pem_key(key))
    write_public(cert_path, _pem_cert(cert))
    if ca is None:
        _record(
            pki,
            _entry(cert, kind="client", subject=caller, role=role, path=cert_path, base=pki.dir),
        )
    return IssuedCert(cert, cert_path, key_path)


def _entry(
    cert: x509.Certificate, *, kind: str, subject: str, role: str, path: Path, base: Path
) -> IndexEntry:
    try:
        rel = str(path.relative_to(base))
    except ValueError:
        rel = str(path)
    return IndexEntry(
        serial=cert.serial_number,
        kind=kind,
        subject=subject,
        role=role,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        path=rel,
    )


def revoke(dir: Path | str, caller: str, *, serial: int | None = None) -> list[IndexEntry]:
    """Revoke the caller's unrevoked certificates (or only `serial`), re-sign the CRL.
    Returns the entries revoked; revoking nothing is a `ConfigError`."""
    pki = DevPki(Path(dir))
    number, entries = _load_index(pki)
    now = _now().replace(microsecond=0)
    changed: list[IndexEntry] = []
    updated: list[IndexEntry] = []
    for e in entries:
        if (
            e.kind == "client"
            and e.subject == caller
            and e.revoked_at is None
            and (serial is None or e.serial == serial)
        ):
            revoked = replace(e, revoked_at=now)
            changed.append(revoked)
            updated.append(revoked)
        else:
            updated.append(e)
    if not changed:
        raise ConfigError(f"{pki.index}: no unrevoked certificate for caller {caller!r}")
    _save_index(pki, number, updated)
    write_crl(pki.dir)
    return changed


def _ensure_ed25519(path: Path) -> Ed25519PrivateKey:
    if path.exists():
        return load_ed25519_private_key(path)
    key = Ed25519PrivateKey.generate()
    write_private(path, _pem_key(key))
    return key


def _ensure_secret(path: Path, data: bytes) -> None:
    if not path.exists():
        write_private(path, data)


def _ensure_leaf(
    pki: DevPki,
    *,
    cert_path: Path,
    key_path: Path,
    make: Callable[[], tuple[x509.Certificate, ec.EllipticCurvePrivateKey]],
    kind: str,
    subject: str,
    role: str,
) -> None:
    """Issue a leaf unless its certificate exists (the key is written first, so a missing
    key next to an existing certificate means damage, not an interrupted run)."""
    if cert_path.exists():
        if not key_path.exists():
            raise ConfigError(f"{key_path}: missing while {cert_path.name} exists; remove both")
        return
    cert, key = make()
    write_private(key_path, _pem_key(key))
    write_public(cert_path, _pem_cert(cert))
    _record(pki, _entry(cert, kind=kind, subject=subject, role=role, path=cert_path, base=pki.dir))


def init_dev_pki(dir: Path | str, *, callers: Sequence[DemoCaller] = DEMO_CALLERS) -> DevPki:
    """Create whatever of the dev PKI is missing; never touch what exists. `.complete` last.

    Safe to re-run after an interruption: a CA key without its certificate, or a certificate
    without its key, is reported rather than silently replaced.
    """
    pki = DevPki(Path(dir))
    pki.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if pki.ca_pem.exists() != pki.ca_key.exists():
        raise ConfigError(f"{pki.dir}: ca.pem and ca.key must both exist or both be absent")
    if not pki.ca_pem.exists():
        new = create_ca()
        write_private(pki.ca_key, _pem_key(new.key))
        write_public(pki.ca_pem, _pem_cert(new.cert))
    ca = pki.load_ca()
    _ensure_leaf(
        pki,
        cert_path=pki.server_pem,
        key_path=pki.server_key,
        make=partial(make_server_cert, ca),
        kind="server",
        subject="localhost",
        role="",
    )
    for demo in callers:
        _ensure_leaf(
            pki,
            cert_path=pki.client_pem(demo.id),
            key_path=pki.client_key(demo.id),
            make=partial(make_client_cert, ca, demo.id, demo.role),
            kind="client",
            subject=demo.id,
            role=demo.role,
        )
    if not pki.ca_crl.exists():
        write_crl(pki.dir)
    _ensure_ed25519(pki.proof_signing_key)
    _ensure_ed25519(pki.audit_note_key)
    _ensure_secret(pki.audit_pepper, secrets.token_bytes(32))
    _ensure_secret(pki.household_secret, secrets.token_hex(32).encode("ascii"))
    for path in (pki.marriage_password, pki.market_client_secret, pki.medical_insurance_key):
        _ensure_secret(path, secrets.token_urlsafe(32).encode("ascii"))
    consent = _ensure_ed25519(pki.consent_issuer_key)
    if not pki.consent_issuer_jwks.exists():
        jwks = jws.jwks_of(consent.public_key())
        write_public(pki.consent_issuer_jwks, (json.dumps(jwks, indent=2) + "\n").encode())
    if not pki.complete.exists():
        write_public(pki.complete, b"")
    return pki
