"""Red-team item 9: revocation gaps.

The CRL was verified against the first certificate of the CA file only (another CA's CRL was
refused, and its certificates never checked); a certificate was refused when its serial was
on the CRL, whoever issued it; nextUpdate and the CRL number were ignored (a CRL past its
validity stayed in force, and an old CRL put back un-revoked certificates); leaving out
`[tls] crl` turned revocation off without a word; and health and reflection skipped the check.
Each is tried here against a real gateway on a copy of the dev PKI.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from gateway.devtools.pki import (
    CertAuthority,
    DevPki,
    IssuedCert,
    create_ca,
    issue_client,
    make_crl,
    revoke,
    write_crl,
)
from gateway.domain.errors import ConfigError
from proofless.v1 import verification_pb2 as pb
from proofless.v1 import verification_pb2_grpc as pb_grpc
from tests.support.stack import Stack, poll, rich_details, running_stack

pytestmark = pytest.mark.asyncio

CALLER = "quangang-window"
PEM = serialization.Encoding.PEM


@pytest.fixture
def own_pki(pki: DevPki, tmp_path: Path) -> DevPki:
    """A copy of the session PKI: these tests revoke, re-sign and replace its files."""
    shutil.copytree(pki.dir, tmp_path / "pki")
    return DevPki(tmp_path / "pki")


@pytest.fixture
async def own_stack(own_pki: DevPki, tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_stack(own_pki, tmp_path / "state") as s:
        yield s


def credentials(stack: Stack, cert: Path, key: Path) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=stack.pki.ca_pem.read_bytes(),
        private_key=key.read_bytes(),
        certificate_chain=cert.read_bytes(),
    )


async def error_of(stack: Stack, creds: grpc.ChannelCredentials) -> grpc.aio.AioRpcError | None:
    """ListServiceItems with `creds`: its error, or None when it was answered."""
    async with grpc.aio.secure_channel(stack.gateway.address, creds) as channel:
        try:
            await pb_grpc.VerificationServiceStub(channel).ListServiceItems(
                pb.ListServiceItemsRequest(), timeout=5
            )
        except grpc.aio.AioRpcError as err:
            return err
    return None


def reason_of(err: grpc.aio.AioRpcError | None) -> str:
    assert err is not None, "the call was answered"
    infos = [d for d in rich_details(err) if isinstance(d, error_details_pb2.ErrorInfo)]
    return infos[0].reason if infos else ""


def write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.new")
    tmp.write_bytes(data)
    tmp.replace(path)


def crl_number(path: Path) -> int:
    crl = x509.load_pem_x509_crl(path.read_bytes())
    number: int = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    return number


def twin(issued: IssuedCert, ca: CertAuthority, serial: int, out: Path) -> Path:
    """`issued`'s certificate, re-issued by `ca` with the serial `serial` (same key)."""
    cert = issued.cert
    builder = (
        x509.CertificateBuilder()
        .subject_name(cert.subject)
        .issuer_name(ca.cert.subject)
        .public_key(cert.public_key())  # type: ignore[arg-type]
        .serial_number(serial)
        .not_valid_before(cert.not_valid_before_utc)
        .not_valid_after(cert.not_valid_after_utc)
    )
    for ext in cert.extensions:
        if isinstance(ext.value, x509.AuthorityKeyIdentifier):
            value: Any = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key())
            builder = builder.add_extension(value, critical=ext.critical)
        else:
            builder = builder.add_extension(ext.value, critical=ext.critical)
    out.write_bytes(builder.sign(ca.key, hashes.SHA256()).public_bytes(PEM))
    return out


async def test_each_ca_of_the_bundle_revokes_by_issuer_and_serial(
    own_pki: DevPki, tmp_path: Path
) -> None:
    now = dt.datetime.now(dt.UTC)
    # CA A (the dev CA) revokes one of its certificates
    a_revoked = issue_client(own_pki.dir, CALLER, "approval", out_dir=tmp_path / "a")
    revoke(own_pki.dir, CALLER, serial=a_revoked.cert.serial_number)
    # CA B, second in the CA file, revokes one of its own
    ca_b = create_ca("Proofless Dev CA B")
    b_revoked = issue_client(own_pki.dir, CALLER, "approval", ca=ca_b, out_dir=tmp_path / "b")
    # and B issued a certificate whose serial is the one A revoked: a different certificate
    b_twin = twin(b_revoked, ca_b, a_revoked.cert.serial_number, tmp_path / "b-twin.pem")
    write_atomically(own_pki.ca_pem, own_pki.ca_pem.read_bytes() + ca_b.cert.public_bytes(PEM))
    b_crl = make_crl(ca_b, [(b_revoked.cert.serial_number, now)], number=1)
    write_atomically(own_pki.ca_crl, own_pki.ca_crl.read_bytes() + b_crl.public_bytes(PEM))

    async with running_stack(own_pki, tmp_path / "state") as stack:
        a_err = await error_of(stack, credentials(stack, a_revoked.cert_path, a_revoked.key_path))
        assert reason_of(a_err) == "CERTIFICATE_REVOKED"
        b_err = await error_of(stack, credentials(stack, b_revoked.cert_path, b_revoked.key_path))
        assert reason_of(b_err) == "CERTIFICATE_REVOKED"  # B's CRL counts, not only A's
        assert await error_of(stack, credentials(stack, b_twin, b_revoked.key_path)) is None
        assert await error_of(stack, stack.credentials(CALLER)) is None


async def test_a_stale_crl_fails_closed(
    own_stack: Stack, own_pki: DevPki, caplog: pytest.LogCaptureFixture
) -> None:
    creds = own_stack.credentials(CALLER)
    assert await error_of(own_stack, creds) is None
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=3)
    stale = make_crl(own_pki.load_ca(), [], number=crl_number(own_pki.ca_crl) + 1, days=1, now=past)
    write_atomically(own_pki.ca_crl, stale.public_bytes(PEM))

    async def refused() -> bool:
        return await error_of(own_stack, creds) is not None

    await poll(refused, "the stale CRL taking effect")
    err = await error_of(own_stack, creds)
    assert err is not None
    assert (err.code(), reason_of(err)) == (grpc.StatusCode.UNAVAILABLE, "REVOCATION_LIST_STALE")
    denials = own_stack.registry.get_sample_value(
        "proofless_denials_total", {"reason": "REVOCATION_LIST_STALE"}
    )
    assert denials is not None
    assert denials >= 2
    [line] = [r for r in caplog.records if "nextUpdate" in r.getMessage()]
    assert line.levelno == logging.ERROR
    log = own_stack.gateway.audit
    entries = [json.loads(e) for e in await log.entries(0, log.tree_size)]
    assert "REVOCATION_LIST_STALE" in {e.get("reason") for e in entries}

    # `proofless certs crl` re-signs it, and callers are back
    write_crl(own_pki.dir)

    async def answered() -> bool:
        return await error_of(own_stack, creds) is None

    await poll(answered, "the fresh CRL taking effect")


async def test_an_older_crl_put_back_is_refused(
    own_stack: Stack, own_pki: DevPki, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fresh = issue_client(own_pki.dir, CALLER, "approval", out_dir=tmp_path)
    creds = credentials(own_stack, fresh.cert_path, fresh.key_path)
    assert await error_of(own_stack, creds) is None
    old = own_pki.ca_crl.read_bytes()
    revoke(own_pki.dir, CALLER, serial=fresh.cert.serial_number)

    async def refused() -> bool:
        return await error_of(own_stack, creds) is not None

    await poll(refused, "the revocation taking effect")
    write_atomically(own_pki.ca_crl, old)  # the CA's own signature, an older number

    async def rollback_refused() -> bool:
        return any("older than number" in r.getMessage() for r in caplog.records)

    await poll(rollback_refused, "the old CRL being refused")
    assert reason_of(await error_of(own_stack, creds)) == "CERTIFICATE_REVOKED"
    assert await error_of(own_stack, own_stack.credentials(CALLER)) is None


async def test_running_without_revocation_is_an_explicit_choice(
    own_pki: DevPki, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match='revocation = "off"'):
        async with running_stack(own_pki, tmp_path / "state", {"tls": {"crl": ""}}):
            pass
    revoke(own_pki.dir, "fuan-hrss")
    off = {"tls": {"crl": "", "revocation": "off"}}
    async with running_stack(own_pki, tmp_path / "state", off) as stack:
        # what "off" means: the CA's signature is all that is checked
        assert await error_of(stack, stack.credentials("fuan-hrss")) is None


async def test_health_and_reflection_check_the_certificate_too(
    own_stack: Stack, own_pki: DevPki, tmp_path: Path
) -> None:
    fresh = issue_client(own_pki.dir, CALLER, "approval", out_dir=tmp_path)
    creds = credentials(own_stack, fresh.cert_path, fresh.key_path)
    revoke(own_pki.dir, CALLER, serial=fresh.cert.serial_number)

    async def refused() -> bool:
        return await error_of(own_stack, creds) is not None

    await poll(refused, "the revocation taking effect")
    async with grpc.aio.secure_channel(own_stack.gateway.address, creds) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert reason_of(info.value) == "CERTIFICATE_REVOKED"
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in health.Watch(health_pb2.HealthCheckRequest(), timeout=5):
                pass
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert reason_of(info.value) == "CERTIFICATE_REVOKED"
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in reflection.ServerReflectionInfo(iter([request]), timeout=5):
                pass
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED

    # a certificate in good standing still gets both
    async with grpc.aio.secure_channel(
        own_stack.gateway.address, own_stack.credentials(CALLER)
    ) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5
        )
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        async for answer in reflection.ServerReflectionInfo(iter([request]), timeout=5):
            names = {s.name for s in answer.list_services_response.service}
            assert "proofless.v1.VerificationService" in names
            break
