"""Red-team item 15, the smaller items this suite closes:

d. The caller-id pattern used `^...$`, and `$` matches before a final newline: a certificate
   naming `urn:proofless:caller:<id>\\n` was a caller of its own.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
from collections.abc import Callable
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from proofless.v1 import verification_pb2 as pb
from proofless.v1 import verification_pb2_grpc as pb_grpc
from tests.support.auditlog import run_audit_cli
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
