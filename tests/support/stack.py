"""A real stack for integration and end-to-end tests: a fresh dev PKI, the department
simulators on port 0, and the gateway on port 0 with real mutual TLS. Clients are real
grpc.aio channels."""

from __future__ import annotations

import asyncio
import tomllib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from prometheus_client import CollectorRegistry

from gateway.config import Config, merge_tables
from gateway.crypto.citizen import issue_citizen_token
from gateway.crypto.keys import load_ed25519_private_key
from gateway.devtools.pki import DevPki
from gateway.devtools.recipe import gateway_with_simulators
from gateway.server.app import RunningGateway
from proofless.v1 import audit_pb2_grpc, verification_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]
DEV_CONFIG = ROOT / "deploy" / "config" / "gateway.toml"


def stack_config(
    pki: DevPki, state: Path, overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The dev configuration, pointed at `pki` and `state`, every port 0."""
    raw = merge_tables(tomllib.loads(DEV_CONFIG.read_text()), pki.config_overrides())
    raw = merge_tables(
        raw,
        {
            "server": {
                "listen": "127.0.0.1:0",
                "ops_listen": "127.0.0.1:0",
                "http_listen": "127.0.0.1:0",
                "grace_seconds": 1,
            },
            "audit": {"dir": str(state / "audit"), "checkpoint_every_ms": 200},
            "policy": {"file": str(ROOT / "deploy" / "config" / "policy.toml")},
            "catalogue": {"dir": str(ROOT / "deploy" / "catalogue")},
            "departments": {
                "property": {"endpoint": f"sqlite:///{state / 'frontdb' / 'property.sqlite3'}"},
                "disability": {"endpoint": f"sqlite:///{state / 'frontdb' / 'disability.sqlite3'}"},
            },
            "simulators": {
                "household_listen": "127.0.0.1:0",
                "social_security_listen": "127.0.0.1:0",
            },
        },
    )
    return merge_tables(raw, overrides or {})


@dataclass
class Stack:
    pki: DevPki
    config: Config
    gateway: RunningGateway
    sims: Any
    registry: CollectorRegistry
    _exit: AsyncExitStack = field(default_factory=AsyncExitStack)

    @property
    def scenarios(self) -> dict[str, str]:
        return dict(self.sims.population.scenarios)

    def credentials(self, caller: str) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.pki.ca_pem.read_bytes(),
            private_key=self.pki.client_key(caller).read_bytes(),
            certificate_chain=self.pki.client_pem(caller).read_bytes(),
        )

    async def channel(self, caller: str) -> grpc.aio.Channel:
        channel = grpc.aio.secure_channel(self.gateway.address, self.credentials(caller))
        await self._exit.enter_async_context(channel)
        return channel

    async def verification(self, caller: str) -> verification_pb2_grpc.VerificationServiceStub:
        return verification_pb2_grpc.VerificationServiceStub(await self.channel(caller))

    async def audit(self, caller: str) -> audit_pb2_grpc.AuditServiceStub:
        return audit_pb2_grpc.AuditServiceStub(await self.channel(caller))

    def citizen_token(self, id_number: str, portal: str = "citizen-portal") -> str:
        """The dev identity provider's token for the citizen logged in at `portal`."""
        key = load_ed25519_private_key(self.pki.consent_issuer_key)
        return issue_citizen_token(key, id_number=id_number, portal=portal)


@asynccontextmanager
async def running_stack(
    pki: DevPki, state: Path, overrides: dict[str, Any] | None = None
) -> AsyncIterator[Stack]:
    raw = stack_config(pki, state, overrides)
    registry = CollectorRegistry()
    async with gateway_with_simulators(raw, source="test", registry=registry) as run:
        s = Stack(pki=pki, config=run.config, gateway=run.gateway, sims=run.sims, registry=registry)
        try:
            yield s
        finally:
            await s._exit.aclose()


#: how long a file watcher (policy, CRL) may take to apply a change
RELOAD_WAIT_S = 15.0


async def poll(check: Callable[[], Awaitable[bool]], what: str, *, every: float = 0.1) -> None:
    """Await `check()` every `every` seconds until it holds; fail after RELOAD_WAIT_S."""
    loop = asyncio.get_running_loop()
    until = loop.time() + RELOAD_WAIT_S
    while not await check():
        if loop.time() > until:
            pytest.fail(f"{what} did not happen within {RELOAD_WAIT_S} s")
        await asyncio.sleep(every)


def rich_details(err: grpc.aio.AioRpcError) -> list[Any]:
    """The google.rpc detail messages attached to a failed call, unpacked."""
    out: list[Any] = []
    for key, value in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            for detail in status_pb2.Status.FromString(value).details:
                for kind in (
                    error_details_pb2.BadRequest,
                    error_details_pb2.ErrorInfo,
                    error_details_pb2.RetryInfo,
                ):
                    if detail.Is(kind.DESCRIPTOR):
                        msg = kind()
                        detail.Unpack(msg)
                        out.append(msg)
    return out
