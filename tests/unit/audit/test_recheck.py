"""`proofless audit recheck`: grants re-evaluated against the policy version in force, on a real
log written by AuditLog across a policy change."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit import tools
from gateway.domain.errors import PermissionDenied
from tests.support.auditlog import access, open_log
from tests.support.auditlog import run_audit_cli as run
from tests.support.rules import policy_from

POLICY_V1 = b"""
[callers.quangang-window]
name = "window"
roles = ["approval"]

[callers.auditor]
name = "auditor"
roles = ["auditor"]

[items.housing-transfer]
name = "housing transfer"
callers = ["quangang-window"]
claims = ["property.ownership", "household.residence"]
[items.housing-transfer.records]
property = ["certificate_number", "location"]
household = ["name"]
"""

#: the review that followed: the window loses household records and the residence claim
POLICY_V2 = POLICY_V1.replace(b'household = ["name"]\n', b"").replace(
    b'"property.ownership", "household.residence"', b'"property.ownership"'
)


def version(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def grant(
    i: int, policy: bytes, record_type: str, claims: list[str] | None = None
) -> dict[str, object]:
    over: dict[str, object] = {
        "caller": "quangang-window",
        "service_item": "housing-transfer",
        "record_type": record_type,
        "outcome": "granted",
        "status": "OK",
        "reason": "",
        "policy": version(policy),
    }
    if claims is not None:
        over["claims"] = claims
    return access(i, **over)


@pytest.fixture
def log_dir(tmp_path: Path, note_key: Ed25519PrivateKey) -> Path:
    async def write() -> None:
        log = await open_log(tmp_path / "log", note_key)
        try:
            await log.append(grant(0, POLICY_V1, "household"))  # legal then, illegal under v2
            await log.append(grant(1, POLICY_V1, "claims", ["household.residence"]))  # likewise
            await log.append(grant(2, POLICY_V2, "property"))  # legal under v2
            await log.append(access(3, outcome="denied", policy=version(POLICY_V2)))  # not a grant
            await log.append(grant(4, POLICY_V2, "household"))  # a grant v2 did not allow
            await log.append(grant(5, POLICY_V2, "claims", ["household.residence"]))  # nor this
            await log.append(grant(6, b"a policy nobody kept", "property"))
            await log.append(
                grant(7, POLICY_V2, "catalogue") | {"service_item": "", "caller": "stranger"}
            )
        finally:
            await log.close()

    asyncio.run(write())
    return tmp_path / "log"


def test_grants_judged_by_the_policy_in_force(log_dir: Path) -> None:
    v1, v2 = policy_from(POLICY_V1, "v1"), policy_from(POLICY_V2, "v2")
    report = tools.recheck(log_dir, [v1, v2])
    assert report.granted == 7
    assert report.allowed == 3  # entries 0 and 1 under v1, entry 2 under v2
    by_index = {f.index: f for f in report.findings}
    assert sorted(by_index) == [4, 5, 6, 7]
    assert "RECORD_NOT_ALLOWED" in by_index[4].why
    assert "CLAIM_NOT_ALLOWED" in by_index[5].why
    assert by_index[6].why == "policy version not among the given files"
    assert "CALLER_UNKNOWN" in by_index[7].why
    assert not report.ok


def test_the_earlier_grant_is_illegal_only_under_the_later_policy(log_dir: Path) -> None:
    # Judged against v2 alone, the v1-era grants have no policy; relabelled as v2 they'd fail.
    v2 = policy_from(POLICY_V2, "v2")
    with pytest.raises(PermissionDenied):
        v2.authorize_record("quangang-window", "housing-transfer", "household", [])
    report = tools.recheck(log_dir, [v2])
    assert {0, 1} <= {f.index for f in report.findings if "not among" in f.why}


def test_cli(log_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    v1, v2 = tmp_path / "policy-v1.toml", tmp_path / "policy-v2.toml"
    v1.write_bytes(POLICY_V1)
    v2.write_bytes(POLICY_V2)
    assert run("recheck", log_dir, "--policy", v1, v2) == 1
    out = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in out[:-1]] == [f"entry {i}" for i in (4, 5, 6, 7)]
    assert out[-1].startswith("Results: 7 granted entries, 3 allowed")
    assert "INVALID" in out[-1]


def test_cli_clean_log(tmp_path: Path, note_key: Ed25519PrivateKey) -> None:
    async def write() -> None:
        log = await open_log(tmp_path / "log", note_key)
        await log.append(grant(0, POLICY_V1, "property"))
        await log.close()

    asyncio.run(write())
    policy = tmp_path / "policy.toml"
    policy.write_bytes(POLICY_V1)
    assert run("recheck", tmp_path / "log", "--policy", policy) == 0
    assert run("recheck", tmp_path / "log", "--policy", tmp_path / "missing.toml") == 2
