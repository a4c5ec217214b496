"""End to end through the `proofless` command: a gateway serving over mutual TLS, the CLI
calling it as an approval system, verifying the proof offline and auditing the log."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from gateway.devtools.pki import DevPki
from tests.support.stack import Stack, running_stack

pytestmark = pytest.mark.asyncio(loop_scope="module")
ROOT = Path(__file__).resolve().parents[2]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def stack(pki: DevPki, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    async with running_stack(pki, tmp_path_factory.mktemp("cli")) as s:
        yield s


async def proofless(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a child process without blocking the loop the gateway serves on."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway.cli",
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return subprocess.CompletedProcess(args, proc.returncode, out.decode(), err.decode())


def identity(stack: Stack, caller: str) -> list[str]:
    pki = stack.pki
    return [
        "--address",
        stack.gateway.address,
        "--ca",
        str(pki.ca_pem),
        "--cert",
        str(pki.client_pem(caller)),
        "--key",
        str(pki.client_key(caller)),
    ]


async def test_call_verify_and_audit(stack: Stack, tmp_path: Path) -> None:
    proof = tmp_path / "proof.jws"
    done = await proofless(
        "call",
        "household",
        *identity(stack, "quangang-window"),
        "--item",
        "housing-transfer",
        "--case",
        "QG-2026-000777",
        "--purpose",
        "buyer check",
        "--id-number",
        stack.scenarios["household_head"],
        "--fields",
        "name,region_code",
        "--save-proof",
        str(proof),
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert set(answer["record"]) == {"name", "region_code"}
    jwks = f"http://127.0.0.1:{stack.gateway.ops_port}/.well-known/jwks.json"
    checked = await proofless("proof", "verify", str(proof), "--jwks", jwks)
    assert checked.returncode == 0, checked.stderr
    payload = json.loads(checked.stdout)["payload"]
    assert payload["audit"]["index"] == int(answer["attestation"].get("audit_index", 0))

    # a tampered proof is refused
    header, body, sig = proof.read_text().strip().split(".")
    forged = tmp_path / "forged.jws"
    forged.write_text(f"{header}.{body}.{sig[:-4]}AAAA")
    refused = await proofless("proof", "verify", str(forged), "--jwks", jwks)
    assert refused.returncode == 1

    # the log the gateway wrote verifies offline with the published vkey
    await asyncio.sleep(0.5)  # let a checkpoint cover the entry (checkpoint_every_ms = 200)
    vkey = stack.gateway.audit.vkey
    audited = await proofless("audit", "verify", str(stack.config.audit.dir), "--key", vkey)
    assert audited.returncode == 0, audited.stdout + audited.stderr


async def test_claims_and_errors_through_the_cli(stack: Stack) -> None:
    done = await proofless(
        "call",
        "claims",
        *identity(stack, "quangang-window"),
        "--item",
        "housing-transfer",
        "--case",
        "QG-2026-000778",
        "--purpose",
        "limits",
        "--id-number",
        stack.scenarios["no_property"],
        "--claim",
        "property.ownership:owns=false",
        "--claim",
        "household.residence:region=350000",
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)["results"]
    assert [r["id"] for r in results] == ["c1", "c2"]

    idn = stack.scenarios["household_head"]
    bad = idn[:17] + ("0" if idn[17] != "0" else "1")
    refused = await proofless(
        "call",
        "household",
        *identity(stack, "quangang-window"),
        "--item",
        "housing-transfer",
        "--case",
        "QG-2026-000779",
        "--purpose",
        "x",
        "--id-number",
        bad,
    )
    assert refused.returncode == 1
    assert "INVALID_ARGUMENT" in refused.stderr
    assert "applicant.id_number" in refused.stderr
    assert bad not in refused.stderr

    denied = await proofless("call", "items", *identity(stack, "fuzhou-civil-affairs"))
    assert denied.returncode == 0
    assert "subsistence-allowance" in denied.stdout
