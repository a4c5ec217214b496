"""The security commands of `proofless` as an operator runs them: a real subprocess each time,
in a scratch directory. certs init/issue/revoke/list/crl, policy check/explain, consent issue.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509

from gateway.crypto.consent import ConsentToken, ReplayCache, verify_consent
from gateway.crypto.keys import load_certificate, load_issuer_keys, load_revoked_serials
from gateway.devtools.pki import DevPki
from gateway.domain.errors import PermissionDenied
from gateway.server.identity import caller_from_pem

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "deploy" / "config" / "policy.toml"
#: a valid resident ID (GB 11643 checksum) that is nobody in particular
APPLICANT = "11010519491231002X"


def proofless(*args: str | Path, ok: bool | None = True) -> subprocess.CompletedProcess[str]:
    """Run `proofless ARGS`; `ok` True/False asserts exit 0 / non-zero, None checks nothing."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROOFLESS__")}
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", *map(str, args)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if ok is True:
        assert done.returncode == 0, done.stderr
    elif ok is False:
        assert done.returncode != 0, done.stdout
    return done


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> DevPki:
    pki = DevPki(tmp_path_factory.mktemp("cli") / "certs")
    out = proofless("certs", "init", "--dir", pki.dir).stdout
    assert "dev PKI ready" in out
    assert "quangang-window" in out
    return pki


def test_init_writes_a_complete_pki_with_private_keys_0600(certs: DevPki) -> None:
    for key in [
        certs.ca_key,
        certs.server_key,
        certs.client_key("quangang-window"),
        certs.proof_signing_key,
        certs.audit_note_key,
        certs.audit_pepper,
        certs.consent_issuer_key,
    ]:
        assert mode(key) == 0o600, key
    assert certs.complete.exists()
    assert load_revoked_serials(certs.ca_crl, load_certificate(certs.ca_pem)) == frozenset()
    # idempotent: a second run keeps the CA and every key
    before = certs.ca_pem.read_bytes(), certs.server_key.read_bytes()
    proofless("certs", "init", "--dir", certs.dir)
    assert (certs.ca_pem.read_bytes(), certs.server_key.read_bytes()) == before


def test_issue_list_revoke_and_crl(certs: DevPki) -> None:
    caller = "xiamen-window"
    out = proofless(
        "certs", "issue", "--dir", certs.dir, "--caller", caller, "--role", "approval",
        "--days", "30",
    ).stdout  # fmt: skip
    pem = certs.client_pem(caller).read_bytes()
    cert = x509.load_pem_x509_certificate(pem)
    serial = format(cert.serial_number, "x")
    assert f"serial {serial}" in out
    assert mode(certs.client_key(caller)) == 0o600
    identity = caller_from_pem(pem)
    assert (identity.id, identity.roles) == (caller, frozenset({"approval"}))
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert 30 <= lifetime.days <= 31
    assert cert.issuer == load_certificate(certs.ca_pem).subject

    listed = proofless("certs", "list", "--dir", certs.dir).stdout
    [row] = [line for line in listed.splitlines() if line.startswith(caller)]
    assert serial in row
    assert row.rstrip().endswith("-")  # not revoked

    out = proofless("certs", "revoke", "--dir", certs.dir, "--caller", caller).stdout
    assert f"revoked {caller} serial {serial}" in out
    revoked = load_revoked_serials(certs.ca_crl, load_certificate(certs.ca_pem))
    assert revoked == {cert.serial_number}
    [row] = [
        line
        for line in proofless("certs", "list", "--dir", certs.dir).stdout.splitlines()
        if line.startswith(caller)
    ]
    assert not row.rstrip().endswith("-")

    # revoking again finds nothing left to revoke: a precise error, exit 1
    again = proofless("certs", "revoke", "--dir", certs.dir, "--caller", caller, ok=False)
    assert again.returncode == 1
    assert f"no unrevoked certificate for caller '{caller}'" in again.stderr

    # re-signing keeps the revocation and bumps the CRL number
    number = _crl_number(certs)
    out = proofless("certs", "crl", "--dir", certs.dir, "--days", "7").stdout
    assert f"CRL #{number + 1} written" in out
    assert f"revoked {serial}" in out
    assert load_revoked_serials(certs.ca_crl, load_certificate(certs.ca_pem)) == revoked
    crl = x509.load_pem_x509_crl(certs.ca_crl.read_bytes())
    assert crl.next_update_utc is not None
    assert (crl.next_update_utc - crl.last_update_utc).days == 7


def _crl_number(certs: DevPki) -> int:
    crl = x509.load_pem_x509_crl(certs.ca_crl.read_bytes())
    return int(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--caller", "Not A Caller", "--role", "approval"], 1, "caller id 'Not A Caller'"),
        (["--caller", "ok-caller", "--role", "root"], 2, "invalid choice: 'root'"),
    ],
    ids=["bad-caller-id", "bad-role"],
)
def test_issue_refuses_bad_identities(
    certs: DevPki, args: list[str], code: int, message: str
) -> None:
    done = proofless("certs", "issue", "--dir", certs.dir, *args, ok=False)
    assert done.returncode == code
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_policy_check_valid() -> None:
    out = proofless("policy", "check", POLICY).stdout
    version = hashlib.sha256(POLICY.read_bytes()).hexdigest()
    assert f"valid, version {version}" in out
    assert "subsistence-allowance" in out
    assert "consent" in out


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "consent_required = true ",
            'consent_required = "yes" ',
            "[items.subsistence-allowance] key 'consent_required': must be a boolean",
        ),
        (
            'callers = ["fuzhou-civil-affairs"]',
            'callers = ["fuzhou-civil-affair"]',
            "fuzhou-civil-affair",
        ),
        ('roles = ["auditor"]', 'roles = ["superuser"]', "[callers.auditor] key 'roles'"),
        ("[items.nurse-licence]", "[items.nurse-licence", "not valid TOML"),
    ],
    ids=["wrong-type", "unknown-caller", "unknown-role", "syntax"],
)
def test_policy_check_invalid_names_file_table_and_key(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    text = POLICY.read_text()
    assert old in text
    bad = tmp_path / "bad-policy.toml"
    bad.write_text(text.replace(old, new, 1))
    done = proofless("policy", "check", bad, ok=False)
    assert done.returncode == 1
    assert str(bad) in done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize(
    ("caller", "item", "proof", "allowed", "says"),
    [
        ("quangang-window", "housing-transfer", "property", True, "fields: area_square_meters"),
        ("fuzhou-civil-affairs", "subsistence-allowance", "property.ownership", True, "consent"),
        ("quangang-window", "subsistence-allowance", "household", False, "ITEM_NOT_ALLOWED"),
        ("fuan-hrss", "resident-pension", "property", False, "DENIED"),
        ("fuan-hrss", "resident-pension", "property.ownership", False, "CLAIM_NOT_ALLOWED"),
        ("nobody", "housing-transfer", "household", False, "DENIED"),
        ("quangang-window", "housing-transfer", "wealth", False, "PROOF_UNKNOWN"),
    ],
)
def test_policy_explain(caller: str, item: str, proof: str, allowed: bool, says: str) -> None:
    done = proofless(
        "policy", "explain", "--policy", POLICY, "--caller", caller, "--item", item,
        "--proof", proof, ok=None,
    )  # fmt: skip
    assert done.returncode == (0 if allowed else 1), done.stdout + done.stderr
    assert done.stdout.startswith("ALLOWED" if allowed else "DENIED")
    assert says in done.stdout


def test_consent_issue_produces_a_token_the_gateway_accepts_once(certs: DevPki) -> None:
    token = proofless(
        "consent", "issue", "--key", certs.consent_issuer_key, "--id-number", APPLICANT,
        "--caller", "fuzhou-civil-affairs", "--item", "subsistence-allowance",
        "--case", "FZ-DB-2026-7", "--ttl", "300",
    ).stdout.strip()  # fmt: skip
    assert token.count(".") == 2
    assert "\n" not in token
    keys = load_issuer_keys(certs.consent_issuer_jwks, ["proofless-dev-consent"])
    cache = ReplayCache()

    def verify() -> ConsentToken:
        return verify_consent(
            token,
            issuer_keys=keys,
            applicant_id_number=APPLICANT,
            caller="fuzhou-civil-affairs",
            item="subsistence-allowance",
            case_id="FZ-DB-2026-7",
            now=time.time(),
            replay_cache=cache,
        )

    consent = verify()
    assert consent.expires_at - consent.issued_at == 300
    assert APPLICANT not in token  # the applicant is bound by hash only
    with pytest.raises(PermissionDenied) as info:
        verify()
    assert info.value.reason == "CONSENT_REPLAYED"


def test_consent_issue_with_a_missing_key_fails_cleanly(tmp_path: Path) -> None:
    done = proofless(
        "consent", "issue", "--key", tmp_path / "absent.key", "--id-number", APPLICANT,
        "--caller", "c", "--item", "i", "--case", "k", ok=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert "absent.key" in done.stderr
    assert "Traceback" not in done.stderr


def test_certs_json_index_records_every_issue(certs: DevPki) -> None:
    index = json.loads(certs.index.read_text())
    subjects = [c["subject"] for c in index["certs"] if c["kind"] == "client"]
    assert "quangang-window" in subjects
    assert index["crl_number"] >= 1
