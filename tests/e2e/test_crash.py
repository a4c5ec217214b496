"""Crash test: SIGKILL the gateway under steady load, 20 times, and lose nothing.

Client tasks keep calling the gateway (a real subprocess) while the test kills it at random
moments and restarts it on the same audit directory. Every answer a client saw OK is a
promise: its entry is durably in the log at `audit_index` with that `proof_id`
(write-ahead: the reply MUST NOT leave before its entry is on disk). Afterwards the log
verifies with the auditor CLI, no proof id appears twice, and every torn tail that recovery
set aside is answered by a recovery entry. Two of the kills also tear the tail by hand
(appending half a line, as a power loss can leave), so the recovery path always runs.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import pytest

from adapters.simulators.datagen import generate
from proofless.v1 import verification_pb2 as pb
from proofless.v1 import verification_pb2_grpc as pb_grpc
from tests.support.processes import POPULATION, ROOT, SEED, ProcessStack, write_config

pytestmark = pytest.mark.slow

KILLS = 20
CLIENTS = 6
TEAR_AT = {6, 14}  # kills after which half a line is appended to the last segment


def entries(stack: ProcessStack) -> list[dict[str, Any]]:
    out = []
    for path in sorted((stack.audit_dir / "entries").glob("*.jsonl")):
        out += [json.loads(line) for line in path.read_bytes().splitlines() if line]
    return out


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


async def load(
    stack: ProcessStack, stop: asyncio.Event, acked: list[tuple[int, str]], errors: list[str]
) -> None:
    ids = sorted(generate(SEED, POPULATION).people)
    rng = random.Random(7)
    async with stack.channel("quangang-window", quick_reconnect=True) as channel:
        stub = pb_grpc.VerificationServiceStub(channel)

        async def client(n: int) -> None:
            i = 0
            while not stop.is_set():
                i += 1
                req = pb.RecordRequest(
                    context=pb.RequestContext(
                        service_item="housing-transfer",
                        case_id=f"CRASH-{n}-{i}",
                        purpose="crash test",
                    ),
                    applicant=pb.Applicant(id_number=rng.choice(ids)),
                )
                call = stub.GetPropertyRecords if i % 2 else stub.GetHouseholdRecord
                try:
                    resp = await call(req, timeout=2, wait_for_ready=True)
                except grpc.aio.AioRpcError as err:
                    if err.code() not in (
                        grpc.StatusCode.NOT_FOUND,
                        grpc.StatusCode.UNAVAILABLE,
                        grpc.StatusCode.DEADLINE_EXCEEDED,
                        grpc.StatusCode.CANCELLED,
                    ):
                        errors.append(f"{err.code().name}: {err.details()}")
                    await asyncio.sleep(0.01)
                    continue
                att = resp.attestation
                acked.append((att.audit_index, att.proof_id))

        await asyncio.gather(*(client(n) for n in range(CLIENTS)))


def test_sigkill_under_load_loses_no_acknowledged_entry(tmp_path: Path) -> None:
    stack = write_config(tmp_path)
    acked: list[tuple[int, str]] = []
    errors: list[str] = []
    torn = 0
    rng = random.Random(20261121)
    t0 = time.monotonic()
    stack.start_simulators()
    try:
        stack.start_gateway()

        async def scenario() -> None:
            nonlocal torn
            stop = asyncio.Event()
            clients = asyncio.create_task(load(stack, stop, acked, errors))
            try:
                for kill in range(1, KILLS + 1):
                    await asyncio.sleep(rng.uniform(0.2, 1.0))
                    assert stack.kill_gateway(signal.SIGKILL) == -signal.SIGKILL
                    if kill in TEAR_AT:
                        segment = sorted((stack.audit_dir / "entries").glob("*.jsonl"))[-1]
                        with segment.open("ab") as f:
                            f.write(b'{"caller":"torn-by-the-test","ind')
                        torn += 1
                    await asyncio.to_thread(stack.start_gateway)
                await asyncio.sleep(0.5)
            finally:
                stop.set()
                await clients

        asyncio.run(scenario())
    finally:
        stack.stop()
    elapsed = time.monotonic() - t0

    assert not errors, errors[:5]
    logged = entries(stack)
    assert [e["index"] for e in logged] == list(range(len(logged)))
    missing = [(i, p) for i, p in acked if i >= len(logged) or logged[i].get("proof_id") != p]
    assert not missing, f"{len(missing)} acknowledged answers lost, e.g. {missing[:3]}"
    proof_ids = [e["proof_id"] for e in logged if e.get("proof_id")]
    assert len(proof_ids) == len(set(proof_ids)), "a proof id appears twice"
    assert len({i for i, _ in acked}) == len(acked), "two answers share an audit index"

    recoveries = [e for e in logged if e.get("kind") == "recovery"]
    broken = sorted(p.name for p in (stack.audit_dir / "entries").glob("*.broken"))
    assert len(recoveries) >= torn
    assert {r["broken_file"] for r in recoveries} == set(broken)
    assert all(b"torn-by-the-test" not in json.dumps(e).encode() for e in logged)

    vkey = cli(
        "audit",
        "key",
        "--note-key",
        str(stack.pki.audit_note_key),
        "--origin",
        stack.raw["audit"]["origin"],
    )
    assert vkey.returncode == 0, vkey.stderr
    verified = cli("audit", "verify", str(stack.audit_dir), "--key", vkey.stdout.strip())
    assert verified.returncode == 0, verified.stdout + verified.stderr
    print(
        f"\ncrash test: {KILLS} kills ({torn} with a torn tail) in {elapsed:.0f} s; "
        f"{len(acked)} acknowledged answers all in the log; {len(logged)} entries, "
        f"{len(recoveries)} recovery entries"
    )
