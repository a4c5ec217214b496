"""A small gRPC client for Proofless over mutual TLS (used by `proofless call` and the demo)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc
from google.rpc import error_details_pb2, status_pb2

from gateway.domain.errors import ConfigError


@dataclass(frozen=True)
class ClientIdentity:
    """The caller's certificate and key, and the CA that signed the gateway's certificate."""

    ca: Path
    cert: Path
    key: Path

    @classmethod
    def dev(cls, certs_dir: Path, caller: str) -> ClientIdentity:
        clients = certs_dir / "clients"
        identity = cls(certs_dir / "ca.pem", clients / f"{caller}.pem", clients / f"{caller}.key")
        for path in (identity.ca, identity.cert, identity.key):
            if not path.exists():
                raise ConfigError(f"{path}: missing (run `make certs`, or pass --cert/--key/--ca)")
        return identity

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca.read_bytes(),
            private_key=self.key.read_bytes(),
            certificate_chain=self.cert.read_bytes(),
        )


def secure_channel(address: str, identity: ClientIdentity) -> grpc.aio.Channel:
    return grpc.aio.secure_channel(address, identity.credentials())


def describe_rpc_error(err: grpc.aio.AioRpcError) -> str:
    """Status code, message, and the google.rpc details the gateway attached."""
    lines = [f"{err.code().name}: {err.details()}"]
    for key, value in err.trailing_metadata() or ():
        if key == "x-request-id":
            lines.append(f"  request id: {value}")
        if key != "grpc-status-details-bin" or not isinstance(value, bytes):
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            for kind in (
                error_details_pb2.BadRequest,
                error_details_pb2.ErrorInfo,
                error_details_pb2.RetryInfo,
            ):
                if detail.Is(kind.DESCRIPTOR):
                    msg = kind()
                    detail.Unpack(msg)
                    if isinstance(msg, error_details_pb2.BadRequest):
                        lines += [f"  {v.field}: {v.description}" for v in msg.field_violations]
                    elif isinstance(msg, error_details_pb2.ErrorInfo):
                        lines.append(f"  reason: {msg.reason} ({msg.domain})")
                    else:
                        lines.append(f"  retry after: {msg.retry_delay.ToTimedelta()}")
    return "\n".join(lines)
