"""Mutual TLS over real sockets: every bad client certificate is refused, revocation takes
effect without a restart, and the server certificate rotates under a running gateway.

The module runs its own gateway on a copy of the session PKI, so issuing, revoking and
rotating here never touches the certificates other modules use.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import shutil
import ssl
import uuid
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.devtools.pki import (
    DevPki,
    create_ca,
    issue_client,
    make_crl,
    make_server_cert,
    revoke,
)
from proofless.v1 import verification_pb2 as pb
from proofless.v1 import verification_pb2_grpc as pb_grpc
from tests.support.stack import Stack, poll, rich_details, running_stack

pytestmark = pytest.mark.asyncio(loop_scope="module")

CALLER = "quangang-window"


@pytest.fixture(scope="module")
def own_pki(pki: DevPki, tmp_path_factory: pytest.TempPathFactory) -> DevPki:
    copy = tmp_path_factory.mktemp("mtls") / "pki"
    shutil.copytree(pki.dir, copy)
    return DevPki(copy)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def mtls_stack(
    own_pki: DevPki, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    async with running_stack(own_pki, tmp_path_factory.mktemp("mtls-state")) as s:
        yield s


def credentials(
    ca: Path, cert: Path | None = None, key: Path | None = None
) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=ca.read_bytes(),
        private_key=key.read_bytes() if key else None,
        certificate_chain=cert.read_bytes() if cert else None,
    )


async def list_items(
    stack: Stack, creds: grpc.ChannelCredentials, request_id: str | None = None
) -> pb.ListServiceItemsResponse:
    async with grpc.aio.secure_channel(stack.gateway.address, creds) as channel:
        stub = pb_grpc.VerificationServiceStub(channel)
        metadata = (("x-request-id", request_id),) if request_id else None
        response: pb.ListServiceItemsResponse = await stub.ListServiceItems(
            pb.ListServiceItemsRequest(), timeout=5, metadata=metadata
        )
        return response


async def refused(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value


async def error_of(call: Awaitable[Any]) -> grpc.aio.AioRpcError | None:
    """The call's error, or None when it succeeded (for polling until a call fails)."""
    try:
        await call
    except grpc.aio.AioRpcError as err:
        return err
    return None


def reason_of(err: grpc.aio.AioRpcError) -> str:
    return next(d.reason for d in rich_details(err) if isinstance(d, error_details_pb2.ErrorInfo))


async def audited(stack: Stack, request_id: str) -> list[dict[str, Any]]:
    log = stack.gateway.audit
    entries = [json.loads(e) for e in await log.entries(0, log.tree_size)]
    return [e for e in entries if e.get("request_id") == request_id]


async def assert_healthy(stack: Stack) -> None:
    """Health answers SERVING and a real caller still gets through."""
    creds = stack.credentials(CALLER)
    async with grpc.aio.secure_channel(stack.gateway.address, creds) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    assert (await list_items(stack, creds)).caller == CALLER


# ---- refused during the handshake ---------------------------------------------------------


async def test_no_client_certificate_fails_the_handshake(mtls_stack: Stack) -> None:
    before = mtls_stack.gateway.audit.tree_size
    err = await refused(list_items(mtls_stack, credentials(mtls_stack.pki.ca_pem)))
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    # nothing reached a handler: no request, no audit entry
    assert mtls_stack.gateway.audit.tree_size == before
    await assert_healthy(mtls_stack)


async def test_certificate_from_another_ca_fails_the_handshake(
    mtls_stack: Stack, tmp_path: Path
) -> None:
    rogue = issue_client(
        mtls_stack.pki.dir, CALLER, "approval", ca=create_ca("Rogue CA"), out_dir=tmp_path
    )
    creds = credentials(mtls_stack.pki.ca_pem, rogue.cert_path, rogue.key_path)
    err = await refused(list_items(mtls_stack, creds))
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    await assert_healthy(mtls_stack)


async def test_expired_certificate_fails_the_handshake(mtls_stack: Stack, tmp_path: Path) -> None:
    # valid for one day, a week ago; signed by the right CA and recorded in the index
    expired = issue_client(
        mtls_stack.pki.dir,
        CALLER,
        "approval",
        days=1,
        not_before=dt.datetime.now(dt.UTC) - dt.timedelta(days=7),
        out_dir=tmp_path,
    )
    creds = credentials(mtls_stack.pki.ca_pem, expired.cert_path, expired.key_path)
    err = await refused(list_items(mtls_stack, creds))
    # BoringSSL checks validity while verifying the chain: the handshake fails before any
    # handler runs (the interceptor's CERTIFICATE_EXPIRED check is the second line)
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    await assert_healthy(mtls_stack)


# ---- refused by the gateway, audited --------------------------------------------------------


async def test_certificate_without_caller_san_is_unauthenticated_and_audited(
    mtls_stack: Stack, tmp_path: Path
) -> None:
    anonymous = issue_client(
        mtls_stack.pki.dir, CALLER, "approval", caller_san=False, out_dir=tmp_path
    )
    creds = credentials(mtls_stack.pki.ca_pem, anonymous.cert_path, anonymous.key_path)
    request_id = f"mtls-{uuid.uuid4().hex}"
    err = await refused(list_items(mtls_stack, creds, request_id))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert reason_of(err) == "NO_CALLER_IDENTITY"
    [entry] = await audited(mtls_stack, request_id)
    assert entry["outcome"] == "denied"
    assert entry["status"] == "UNAUTHENTICATED"
    assert entry["reason"] == "NO_CALLER_IDENTITY"
    assert entry["caller"] == "unauthenticated"
    await assert_healthy(mtls_stack)


async def test_revoked_certificate_is_refused_after_the_crl_reloads(
    mtls_stack: Stack, tmp_path: Path
) -> None:
    fresh = issue_client(mtls_stack.pki.dir, CALLER, "approval", out_dir=tmp_path)
    creds = credentials(mtls_stack.pki.ca_pem, fresh.cert_path, fresh.key_path)
    assert (await list_items(mtls_stack, creds)).caller == CALLER

    revoke(mtls_stack.pki.dir, CALLER, serial=fresh.cert.serial_number)

    async def refused_now() -> bool:
        err = await error_of(list_items(mtls_stack, creds))
        if err is None:
            return False
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED
        return True

    await poll(refused_now, "CRL reload")
    request_id = f"mtls-{uuid.uuid4().hex}"
    err = await refused(list_items(mtls_stack, creds, request_id))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert reason_of(err) == "CERTIFICATE_REVOKED"
    [entry] = await audited(mtls_stack, request_id)
    assert (entry["outcome"], entry["reason"]) == ("denied", "CERTIFICATE_REVOKED")
    # only that serial is revoked: the caller's original certificate still works
    await assert_healthy(mtls_stack)


async def test_revocation_cuts_off_an_open_connection(mtls_stack: Stack, tmp_path: Path) -> None:
    """The CRL is checked per call, not per handshake: a long-lived channel is cut off too."""
    fresh = issue_client(mtls_stack.pki.dir, CALLER, "approval", out_dir=tmp_path)
    creds = credentials(mtls_stack.pki.ca_pem, fresh.cert_path, fresh.key_path)
    async with grpc.aio.secure_channel(mtls_stack.gateway.address, creds) as channel:
        stub = pb_grpc.VerificationServiceStub(channel)
        await stub.ListServiceItems(pb.ListServiceItemsRequest(), timeout=5)
        revoke(mtls_stack.pki.dir, CALLER, serial=fresh.cert.serial_number)

        async def refused_now() -> bool:
            err = await error_of(stub.ListServiceItems(pb.ListServiceItemsRequest(), timeout=5))
            if err is None:
                return False
            assert err.code() == grpc.StatusCode.UNAUTHENTICATED
            assert reason_of(err) == "CERTIFICATE_REVOKED"
            return True

        await poll(refused_now, "CRL reload")


# ---- rotation without restart -------------------------------------------------------------


async def server_serial(stack: Stack, caller: str = CALLER) -> int:
    """The serial of the certificate the gateway presents in a fresh TLS handshake."""
    ctx = ssl.create_default_context(cafile=str(stack.pki.ca_pem))
    ctx.load_cert_chain(stack.pki.client_pem(caller), stack.pki.client_key(caller))
    ctx.set_alpn_protocols(["h2"])
    host, port = stack.gateway.address.rsplit(":", 1)
    _, writer = await asyncio.open_connection(host, int(port), ssl=ctx, server_hostname=host)
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        # no TLS close_notify dance: the server has already sent its HTTP/2 preface
        writer.transport.abort()
    return int(x509.load_der_x509_certificate(der).serial_number)


def write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_bytes(data)
    tmp.chmod(0o600)
    tmp.replace(path)


async def test_server_certificate_rotates_under_a_running_gateway(mtls_stack: Stack) -> None:
    pki = mtls_stack.pki
    old_serial = x509.load_pem_x509_certificate(pki.server_pem.read_bytes()).serial_number
    assert await server_serial(mtls_stack) == old_serial

    creds = mtls_stack.credentials(CALLER)
    async with grpc.aio.secure_channel(mtls_stack.gateway.address, creds) as channel:
        stub = pb_grpc.VerificationServiceStub(channel)
        await stub.ListServiceItems(pb.ListServiceItemsRequest(), timeout=5)

        cert, key = make_server_cert(pki.load_ca())
        # key first, then the certificate: a handshake in between fails and the next one
        # reloads; nothing is handshaking here
        write_atomically(
            pki.server_key,
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
        write_atomically(pki.server_pem, cert.public_bytes(serialization.Encoding.PEM))
        assert cert.serial_number != old_serial

        # new connections see the new certificate at once: grpc asks at every handshake
        assert await server_serial(mtls_stack) == cert.serial_number
        # the connection opened before the rotation keeps serving
        for _ in range(3):
            reply = await stub.ListServiceItems(pb.ListServiceItemsRequest(), timeout=5)
            assert reply.caller == CALLER
    # and so do new gRPC channels, verified against the same CA
    await assert_healthy(mtls_stack)
    assert await server_serial(mtls_stack, "fuan-hrss") == cert.serial_number


async def test_client_ca_rotation_accepts_the_new_ca_at_new_handshakes(
    mtls_stack: Stack, tmp_path: Path
) -> None:
    """CA rollover: the CA file becomes old + new bundle and the CRL file carries each CA's
    CRL; callers from either CA get in. Until the new CA's CRL is there, its callers are
    refused: nothing says their certificates are not revoked."""
    pki = mtls_stack.pki
    new_ca = create_ca("Proofless Dev CA 2")
    rolled = issue_client(pki.dir, CALLER, "approval", ca=new_ca, out_dir=tmp_path)
    creds = credentials(pki.ca_pem, rolled.cert_path, rolled.key_path)
    assert (await refused(list_items(mtls_stack, creds))).code() == grpc.StatusCode.UNAVAILABLE

    bundle = pki.ca_pem.read_bytes() + new_ca.cert.public_bytes(serialization.Encoding.PEM)
    write_atomically(pki.ca_pem, bundle)
    err = await refused(list_items(mtls_stack, creds))
    assert (err.code(), reason_of(err)) == (grpc.StatusCode.UNAUTHENTICATED, "REVOCATION_UNKNOWN")

    new_crl = make_crl(new_ca, [], number=1).public_bytes(serialization.Encoding.PEM)
    write_atomically(pki.ca_crl, pki.ca_crl.read_bytes() + new_crl)

    async def admitted() -> bool:
        return await error_of(list_items(mtls_stack, creds)) is None

    await poll(admitted, "CRL reload")
    assert (await list_items(mtls_stack, creds)).caller == CALLER
    await assert_healthy(mtls_stack)
