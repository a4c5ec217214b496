"""Audit logs for tests: a note key (fixtures `note_key`, `note_key_file`: import them into a
conftest or test module), access entries, and a helper that opens or fills a log; the
`proofless audit` commands run in process."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit.entry import subject_of
from gateway.audit.log import AuditLog
from gateway.cli.audit import add_audit_commands

ORIGIN = "proofless.test/audit/r1"
PEPPER = b"test-pepper-0123456789abcdef"
ID_A = "11010519491231002X"
ID_B = "440524188001010014"


@pytest.fixture(scope="session")
def note_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def note_key_file(tmp_path: Path, note_key: Ed25519PrivateKey) -> Path:
    path = tmp_path / "note-key.pem"
    path.write_bytes(
        note_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def access(i: int, **over: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "kind": "access",
        "time": f"2026-11-21T10:{i // 60 % 60:02d}:{i % 60:02d}.000000Z",
        "request_id": f"req-{i}",
        "caller": ["approval-a", "approval-b"][i % 2],
        "rpc": "GetHouseholdRecord",
        "service_item": ["11000000000000001", "11000000000000002"][i % 2],
        "case_id": f"case-{i}",
        "purpose": "birth registration",
        "record_type": "household",
        "claims": [],
        "departments": ["public-security"],
        "outcome": "granted" if i % 3 else "denied",
        "status": "OK" if i % 3 else "PERMISSION_DENIED",
        "reason": "" if i % 3 else "FIELD_NOT_ALLOWED",
        "latency_us": 1000 + i,
        "proof_id": f"p-{i}",
        "digest": "00" * 32,
        "subject": subject_of(PEPPER, ID_A if i % 2 else ID_B),
        "policy": "ab" * 32,
    }
    entry.update(over)
    return entry


async def open_log(directory: Path, key: Ed25519PrivateKey, **kw: Any) -> AuditLog:
    return await AuditLog.open(directory, origin=ORIGIN, note_key=key, **kw)


async def fill(directory: Path, key: Ed25519PrivateKey, n: int, **kw: Any) -> None:
    log = await open_log(directory, key, **kw)
    try:
        for i in range(n):
            await log.append(access(i))
    finally:
        await log.close()


def run_audit_cli(*argv: str | Path) -> int:
    """`proofless audit ARGV…` through the real argument parser, in this process."""
    parser = argparse.ArgumentParser(prog="proofless")
    add_audit_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["audit", *map(str, argv)])
    return int(args.func(args))
