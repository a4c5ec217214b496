"""A small gRPC client for Proofless over mutual TLS (used by `proofless call` and the demo)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from gateway.errors import ConfigError


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
