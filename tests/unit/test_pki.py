"""Dev PKI: what `proofless certs init|issue|revoke|list|crl` writes, file modes, idempotence,
certificate contents, CRLs, and real TLS handshakes with the generated material."""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import json
import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import ExtendedKeyUsageOID

from gateway.cli.certs import add_commands
from gateway.crypto import jws, keys
from gateway.devtools import pki
from gateway.domain.errors import ConfigError, ProoflessError, Unauthenticated
from gateway.server.identity import caller_from_pem


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> pki.DevPki:
    return pki.init_dev_pki(tmp_path_factory.mktemp("pki") / "dev")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_writes_everything(dev: pki.DevPki) -> None:
    expected = [
        dev.ca_pem,
        dev.ca_key,
        dev.ca_crl,
        dev.index,
        dev.server_pem,
        dev.server_key,
        dev.proof_signing_key,
        dev.audit_note_key,
        dev.audit_pepper,
        dev.household_secret,
        dev.consent_issuer_key,
        dev.consent_issuer_jwks,
        dev.complete,
    ]
    for demo in pki.DEMO_CALLERS:
        expected += [dev.client_pem(demo.id), dev.client_key(demo.id)]
    missing = [p.name for p in expected if not p.exists()]
    assert missing == []
    assert not list(dev.dir.rglob("*.tmp"))


def test_private_files_are_0600(dev: pki.DevPki) -> None:
    private = [
        dev.ca_key,
        dev.server_key,
        dev.proof_signing_key,
        dev.audit_note_key,
        dev.audit_pepper,
        dev.household_secret,
        dev.consent_issuer_key,
        *(dev.client_key(d.id) for d in pki.DEMO_CALLERS),
    ]
    assert {p.name: _mode(p) for p in private} == {p.name: 0o600 for p in private}
    assert _mode(dev.dir) == 0o700


def test_secrets_have_the_documented_shape(dev: pki.DevPki) -> None:
    assert len(dev.audit_pepper.read_bytes()) == 32
    secret = dev.household_secret.read_text()
    assert len(secret) == 64
    assert bytes.fromhex(secret)
    for path in (dev.proof_signing_key, dev.audit_note_key, dev.consent_issuer_key):
        assert isinstance(keys.load_ed25519_private_key(path), Ed25519PrivateKey)
    issuer = keys.load_ed25519_private_key(dev.consent_issuer_key).public_key()
    published = keys.load_jwks(dev.consent_issuer_jwks)
    assert list(published) == [jws.kid_of(issuer)]
    assert published[jws.kid_of(issuer)].public_bytes_raw() == issuer.public_bytes_raw()
    # the three Ed25519 keys are distinct
    raw = {
        keys.load_ed25519_private_key(p).public_key().public_bytes_raw()
        for p in (dev.proof_signing_key, dev.audit_note_key, dev.consent_issuer_key)
    }
    assert len(raw) == 3


def test_init_is_idempotent(dev: pki.DevPki) -> None:
    before = {p: p.read_bytes() for p in dev.dir.rglob("*") if p.is_file()}
    pki.init_dev_pki(dev.dir)
    after = {p: p.read_bytes() for p in dev.dir.rglob("*") if p.is_file()}
    assert after == before


def test_init_completes_a_partial_directory(tmp_path: Path) -> None:
    dev = pki.init_dev_pki(tmp_path)
    ca = dev.ca_pem.read_bytes()
    for path in (
        dev.complete,
        dev.client_pem("witness"),
        dev.client_key("witness"),
        dev.audit_pepper,
        dev.consent_issuer_jwks,
    ):
        path.unlink()
    pki.init_dev_pki(tmp_path)
    assert dev.complete.exists()
    assert dev.client_pem("witness").exists()
    assert dev.ca_pem.read_bytes() == ca
    witness = x509.load_pem_x509_certificate(dev.client_pem("witness").read_bytes())
    assert witness.issuer == dev.load_ca().cert.subject


def test_init_refuses_inconsistent_material(tmp_path: Path) -> None:
    dev = pki.init_dev_pki(tmp_path)
    dev.client_key("auditor").unlink()
    with pytest.raises(ConfigError, match=r"auditor\.key: missing"):
        pki.init_dev_pki(tmp_path)
    dev.ca_key.unlink()
    with pytest.raises(ConfigError, match=r"ca\.pem and ca\.key"):
        pki.init_dev_pki(tmp_path)


def test_ca_certificate(dev: pki.DevPki) -> None:
    ca = dev.load_ca().cert
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign
    assert usage.crl_sign
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)
    years = (ca.not_valid_after_utc - ca.not_valid_before_utc).days / 365
    assert 9.9 < years < 10.1


def test_server_certificate(dev: pki.DevPki) -> None:
    cert = keys.load_certificate(dev.server_pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    }
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == pki.LEAF_DAYS
    cert.verify_directly_issued_by(dev.load_ca().cert)


@pytest.mark.parametrize("demo", pki.DEMO_CALLERS, ids=lambda d: d.id)
def test_client_certificates_name_caller_and_role(dev: pki.DevPki, demo: pki.DemoCaller) -> None:
    pem = dev.client_pem(demo.id).read_bytes()
    caller = caller_from_pem(pem)
    assert caller.id == demo.id
    assert caller.roles == {demo.role}
    cert = x509.load_pem_x509_certificate(pem)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    cert.verify_directly_issued_by(dev.load_ca().cert)


def test_index_lists_every_issued_certificate(dev: pki.DevPki) -> None:
    entries = pki.list_certs(dev.dir)
    assert [(e.kind, e.subject, e.role) for e in entries] == [
        ("server", "localhost", ""),
        *(("client", d.id, d.role) for d in pki.DEMO_CALLERS),
    ]
    raw = json.loads(dev.index.read_text())
    assert all(isinstance(e["serial"], str) for e in raw["certs"])  # hex: no JSON precision loss
    pem = dev.client_pem("auditor").read_bytes()
    assert caller_from_pem(pem).serial in {e.serial for e in entries}


def test_empty_crl_is_signed_by_the_ca(dev: pki.DevPki) -> None:
    assert keys.load_revoked_serials(dev.ca_crl, dev.load_ca().cert) == frozenset()


# ---- issue, revoke, crl -----------------------------------------------------------------


def test_issue_revoke_and_crl(tmp_path: Path) -> None:
    dev = pki.init_dev_pki(tmp_path)
    ca = dev.load_ca().cert
    old = caller_from_pem(dev.client_pem("fuan-hrss").read_bytes()).serial
    issued = pki.issue_client(tmp_path, "new-system", "approval", days=30)
    assert _mode(issued.key_path) == 0o600
    cert = issued.cert
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == 30
    assert caller_from_pem(issued.cert_path.read_bytes()).id == "new-system"

    revoked = pki.revoke(tmp_path, "fuan-hrss")
    assert [e.serial for e in revoked] == [old]
    assert keys.load_revoked_serials(dev.ca_crl, ca) == {old}
    with pytest.raises(ConfigError, match="no unrevoked certificate"):
        pki.revoke(tmp_path, "fuan-hrss")

    # re-issuing gives a new serial that is not revoked; the old one stays revoked
    again = pki.issue_client(tmp_path, "fuan-hrss", "approval")
    assert _mode(again.key_path) == 0o600
    assert again.cert.serial_number != old
    assert keys.load_revoked_serials(dev.ca_crl, ca) == {old}
    listed = {e.serial: e for e in pki.list_certs(tmp_path)}
    assert listed[old].revoked_at is not None
    assert listed[again.cert.serial_number].revoked_at is None

    first = x509.load_pem_x509_crl(dev.ca_crl.read_bytes())
    pki.write_crl(tmp_path)
    second = x509.load_pem_x509_crl(dev.ca_crl.read_bytes())

    def number(crl: x509.CertificateRevocationList) -> int:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number

    assert number(second) == number(first) + 1
    assert [r.serial_number for r in second] == [old]


def test_revoke_one_serial(tmp_path: Path) -> None:
    pki.init_dev_pki(tmp_path)
    a = pki.issue_client(tmp_path, "twice", "approval").cert.serial_number
    b = pki.issue_client(tmp_path, "twice", "approval").cert.serial_number
    assert [e.serial for e in pki.revoke(tmp_path, "twice", serial=a)] == [a]
    assert [e.serial for e in pki.revoke(tmp_path, "twice")] == [b]


def test_crl_from_another_ca_is_refused(tmp_path: Path) -> None:
    dev = pki.init_dev_pki(tmp_path)
    other = pki.create_ca("Other CA")
    crl = pki.make_crl(other, [], number=1)
    dev.ca_crl.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    with pytest.raises(ConfigError, match="not signed by the CA"):
        keys.load_revoked_serials(dev.ca_crl, dev.load_ca().cert)
    dev.ca_crl.write_text("garbage")
    with pytest.raises(ConfigError, match="not a PEM CRL"):
        keys.load_revoked_serials(dev.ca_crl, dev.load_ca().cert)


def test_negative_test_certificates(tmp_path: Path) -> None:
    dev = pki.init_dev_pki(tmp_path / "dev")
    out = tmp_path / "bad"
    expired = pki.issue_client(
        dev.dir,
        "fuan-hrss",
        "approval",
        days=1,
        not_before=dt.datetime.now(dt.UTC) - dt.timedelta(days=10),
        out_dir=out,
    )
    assert expired.cert.not_valid_after_utc < dt.datetime.now(dt.UTC)
    other = pki.issue_client(
        dev.dir, "fuan-hrss", "approval", ca=pki.create_ca("Rogue"), out_dir=tmp_path / "rogue"
    )
    assert other.cert.issuer != dev.load_ca().cert.subject
    anonymous = pki.issue_client(
        dev.dir, "fuan-hrss", "approval", caller_san=False, out_dir=tmp_path / "anon"
    )
    with pytest.raises(Unauthenticated):
        caller_from_pem(anonymous.cert_path.read_bytes())
    # the real certificate was left alone, and a foreign CA's certificate is not in the index
    assert caller_from_pem(dev.client_pem("fuan-hrss").read_bytes()).id == "fuan-hrss"
    assert other.cert.serial_number not in {e.serial for e in pki.list_certs(dev.dir)}


@pytest.mark.parametrize(
    ("caller", "role"), [("Bad Id", "approval"), ("ok", "admin"), ("", "approval")]
)
def test_bad_caller_or_role(tmp_path: Path, caller: str, role: str) -> None:
    pki.init_dev_pki(tmp_path)
    with pytest.raises(ConfigError):
        pki.issue_client(tmp_path, caller, role)


def test_loading_bad_files(tmp_path: Path) -> None:
    (tmp_path / "k").write_text("not a key")
    with pytest.raises(ConfigError, match="PKCS#8"):
        keys.load_ed25519_private_key(tmp_path / "k")
    with pytest.raises(ConfigError, match="cannot read"):
        keys.load_ed25519_private_key(tmp_path / "missing")
    dev = pki.init_dev_pki(tmp_path / "dev")
    with pytest.raises(ConfigError, match="expected an Ed25519"):
        keys.load_ed25519_private_key(dev.ca_key)
    (tmp_path / "j").write_text("{")
    with pytest.raises(ConfigError, match="not JSON"):
        keys.load_jwks(tmp_path / "j")
    (tmp_path / "j").write_text('{"keys": []}')
    with pytest.raises(ConfigError, match="no Ed25519"):
        keys.load_jwks(tmp_path / "j")


# ---- real TLS ---------------------------------------------------------------------------


def _handshake(dev: pki.DevPki, cert: Path, key: Path) -> dict[str, object] | str:
    """Mutual TLS over a socketpair with the generated material: the server's view of the
    client certificate, or the server's error."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(dev.server_pem, dev.server_key)
    server_ctx.load_verify_locations(dev.ca_pem)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.load_verify_locations(dev.ca_pem)
    client_ctx.load_cert_chain(cert, key)
    a, b = socket.socketpair()
    result: dict[str, object] = {}

    def serve() -> None:
        try:
            with server_ctx.wrap_socket(a, server_side=True) as s:
                result["peer"] = s.getpeercert()
                s.sendall(b"ok")
        except (ssl.SSLError, OSError) as exc:
            result["error"] = str(exc)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with client_ctx.wrap_socket(b, server_hostname="localhost") as c:
            c.recv(2)
    except (ssl.SSLError, OSError):
        pass
    thread.join(timeout=10)
    a.close()
    b.close()
    if "error" in result:
        return str(result["error"])
    peer = result["peer"]
    assert isinstance(peer, dict)
    return peer


def test_mutual_tls_with_dev_material(dev: pki.DevPki) -> None:
    peer = _handshake(dev, dev.client_pem("quangang-window"), dev.client_key("quangang-window"))
    assert isinstance(peer, dict)
    assert ("URI", "urn:proofless:caller:quangang-window") in peer["subjectAltName"]


def test_tls_refuses_expired_and_foreign_certificates(dev: pki.DevPki, tmp_path: Path) -> None:
    expired = pki.issue_client(
        dev.dir,
        "fuan-hrss",
        "approval",
        days=1,
        not_before=dt.datetime.now(dt.UTC) - dt.timedelta(days=3),
        out_dir=tmp_path / "old",
    )
    err = _handshake(dev, expired.cert_path, expired.key_path)
    assert isinstance(err, str)
    assert "expired" in err
    rogue = pki.issue_client(
        dev.dir, "fuan-hrss", "approval", ca=pki.create_ca("Rogue"), out_dir=tmp_path / "rogue"
    )
    err = _handshake(dev, rogue.cert_path, rogue.key_path)
    assert isinstance(err, str)
    assert "certificate" in err


# ---- CLI --------------------------------------------------------------------------------


def _run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="proofless")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_cli_certs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = str(tmp_path / "dev")
    assert _run("certs", "init", "--dir", d) == 0
    assert (tmp_path / "dev" / ".complete").exists()
    assert (
        _run(
            "certs",
            "issue",
            "--dir",
            d,
            "--caller",
            "nan-an-window",
            "--role",
            "approval",
            "--days",
            "7",
        )
        == 0
    )
    assert _run("certs", "revoke", "--dir", d, "--caller", "nan-an-window") == 0
    capsys.readouterr()
    assert _run("certs", "list", "--dir", d) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("nan-an-window")]
    assert len(lines) == 1
    assert not lines[0].endswith(" -")
    assert _run("certs", "crl", "--dir", d) == 0
    assert "revoked" in capsys.readouterr().out
    assert _run("certs", "revoke", "--dir", d, "--caller", "nobody") == 1
    assert "no unrevoked certificate" in capsys.readouterr().err
    assert _run("certs") == 2


# ---- CRLs in force: by issuer, with their numbers -------------------------------------------


def _crl_pem(ca: pki.CertAuthority, revoked: list[int], number: int, **kw: object) -> bytes:
    now = dt.datetime.now(dt.UTC)
    crl = pki.make_crl(ca, [(s, now) for s in revoked], number=number, **kw)  # type: ignore[arg-type]
    return crl.public_bytes(serialization.Encoding.PEM)


def _pem(ca: pki.CertAuthority) -> bytes:
    return ca.cert.public_bytes(serialization.Encoding.PEM)


def test_each_crl_is_checked_against_its_own_ca_in_the_bundle(tmp_path: Path) -> None:
    a, b = pki.create_ca("CA A"), pki.create_ca("CA B")
    (tmp_path / "ca.pem").write_bytes(_pem(a) + _pem(b))
    (tmp_path / "ca.crl").write_bytes(_crl_pem(b, [7], 3) + _crl_pem(a, [5], 9))
    state = keys.load_revocation(tmp_path / "ca.crl", tmp_path / "ca.pem")
    a_key = (a.cert.subject.public_bytes(), keys.key_id_of(a.cert))
    b_key = (b.cert.subject.public_bytes(), keys.key_id_of(b.cert))
    a_crl, b_crl = state.crl_for(a_key), state.crl_for(b_key)
    assert a_crl is not None
    assert b_crl is not None
    assert (a_crl.revoked, a_crl.number, b_crl.revoked, b_crl.number) == ({5}, 9, {7}, 3)
    # a certificate that names its issuer but no key identifier: by name, when unambiguous
    assert state.crl_for((a_key[0], b"")) == a_crl
    # a CA with the same name and another key is another CA
    same_name = pki.create_ca("CA A")
    assert state.crl_for((a_key[0], keys.key_id_of(same_name.cert))) is None


def test_a_crl_no_ca_of_the_bundle_signed_is_refused(tmp_path: Path) -> None:
    a, rogue = pki.create_ca("CA A"), pki.create_ca("CA A")  # the same name, another key
    (tmp_path / "ca.pem").write_bytes(_pem(a))
    (tmp_path / "ca.crl").write_bytes(_crl_pem(a, [], 1) + _crl_pem(rogue, [], 2))
    with pytest.raises(ConfigError, match="CRL 2: not signed by the CA"):
        keys.load_revocation(tmp_path / "ca.crl", tmp_path / "ca.pem")


def test_a_crl_without_a_number_a_delta_or_two_of_one_ca_are_refused(tmp_path: Path) -> None:
    ca = pki.create_ca("CA A")
    (tmp_path / "ca.pem").write_bytes(_pem(ca))
    now = dt.datetime.now(dt.UTC)
    base = x509.CertificateRevocationListBuilder().issuer_name(ca.cert.subject).last_update(now)
    cases = {
        "no CRL number": base.next_update(now + dt.timedelta(days=1)),
        "delta CRL": base.next_update(now + dt.timedelta(days=1))
        .add_extension(x509.CRLNumber(2), critical=False)
        .add_extension(x509.DeltaCRLIndicator(1), critical=True),
    }
    for message, builder in cases.items():
        crl = builder.sign(ca.key, hashes.SHA256())
        (tmp_path / "ca.crl").write_bytes(crl.public_bytes(serialization.Encoding.PEM))
        with pytest.raises(ConfigError, match=message):
            keys.load_revocation(tmp_path / "ca.crl", tmp_path / "ca.pem")
    (tmp_path / "ca.crl").write_bytes(_crl_pem(ca, [], 1) + _crl_pem(ca, [], 2))
    with pytest.raises(ConfigError, match="a second CRL"):
        keys.load_revocation(tmp_path / "ca.crl", tmp_path / "ca.pem")


def test_an_older_crl_number_is_refused_across_reloads(tmp_path: Path) -> None:
    ca = pki.create_ca("CA A")
    (tmp_path / "ca.pem").write_bytes(_pem(ca))
    accepted: dict[keys.IssuerKey, int] = {}

    def load(number: int) -> keys.Revocation:
        (tmp_path / "ca.crl").write_bytes(_crl_pem(ca, [number], number))
        return keys.load_revocation(tmp_path / "ca.crl", tmp_path / "ca.pem", accepted=accepted)

    load(4)
    load(4)  # the same CRL read again
    load(6)
    with pytest.raises(ConfigError, match="number 5, older than number 6"):
        load(5)
    with pytest.raises(ConfigError, match="older than number 6"):
        load(4)  # still: the refused loads did not lower the mark
    assert list(accepted.values()) == [6]


def test_check_revocation_fails_closed() -> None:
    ca = pki.create_ca("CA A")
    key = (ca.cert.subject.public_bytes(), keys.key_id_of(ca.cert))
    now = dt.datetime.now(dt.UTC)

    def state(next_update: dt.datetime) -> keys.Revocation:
        crl = keys.IssuerCrl("CN=CA A", 1, now, next_update, frozenset({5}))
        return keys.Revocation({key: crl})

    fresh = state(now + dt.timedelta(days=1))
    keys.check_revocation(fresh, key, 6, now)
    keys.check_revocation(None, key, 5, now)  # revocation = "off"
    for revocation, issuer, serial, reason in (
        (fresh, key, 5, "CERTIFICATE_REVOKED"),
        (fresh, (key[0], b"other key"), 6, "REVOCATION_UNKNOWN"),
        (state(now - dt.timedelta(seconds=1)), key, 6, "REVOCATION_LIST_STALE"),
    ):
        with pytest.raises(ProoflessError) as refused:
            keys.check_revocation(revocation, issuer, serial, now)
        assert refused.value.reason == reason
