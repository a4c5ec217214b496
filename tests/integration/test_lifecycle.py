"""`proofless serve` as a real process: SIGTERM drains and exits cleanly.

The order under test (gateway/server.py): health NOT_SERVING and /readyz 503 first (load
balancers stop sending) while /healthz stays 200 (the process is alive, do not kill it), the
calls in flight finish within the grace period, the audit log flushes and signs a final
checkpoint that covers every entry, and the process exits 0.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from adapters.simulators.datagen import generate
from gateway.audit.storage import checkpoint_paths
from gateway.devtools.pki import DevPki
from proofless.v1 import verification_pb2 as pb
from proofless.v1 import verification_pb2_grpc as pb_grpc
from tests.support.processes import ProcessStack, process_stack

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def served(pki: DevPki, tmp_path: Path) -> Iterator[ProcessStack]:
    with process_stack(tmp_path, pki=pki, overrides={"server": {"grace_seconds": 3}}) as stack:
        yield stack


def set_faults(stack: ProcessStack, department: str, faults: dict[str, Any] | None) -> None:
    url = stack.raw["departments"][department]["endpoint"] + "/_admin/faults"
    data = None if faults is None else json.dumps(faults).encode()
    method = "DELETE" if faults is None else "POST"
    req = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 200


def entries_on_disk(stack: ProcessStack) -> list[dict[str, Any]]:
    out = []
    for path in sorted((stack.audit_dir / "entries").glob("*.jsonl")):
        out += [json.loads(line) for line in path.read_bytes().splitlines() if line]
    return out


def vkey(stack: ProcessStack) -> str:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "audit",
            "key",
            "--note-key",
            str(stack.pki.audit_note_key),
            "--origin",
            stack.raw["audit"]["origin"],
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def audit_verify(stack: ProcessStack) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "audit",
            "verify",
            str(stack.audit_dir),
            "--key",
            vkey(stack),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def latest_checkpoint_size(stack: ProcessStack) -> int:
    """The tree size of the newest checkpoint (its signature is `audit verify`'s job)."""
    return checkpoint_paths(stack.audit_dir)[-1][0]


class OpsPoller(threading.Thread):
    """Records (/readyz, /healthz) statuses while the gateway drains."""

    def __init__(self, stack: ProcessStack) -> None:
        super().__init__(daemon=True)
        self.stack = stack
        self.seen: list[tuple[int | None, int | None]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.seen.append((self.stack.ops_status("/readyz"), self.stack.ops_status("/healthz")))
            time.sleep(0.02)


def test_sigterm_drains_in_flight_calls_and_signs_a_final_checkpoint(
    served: ProcessStack,
) -> None:
    stack = served
    idn = generate(20261121, 300).scenarios["household_head"]
    set_faults(stack, "household", {"latency_ms": 1200})  # calls that are still running

    async def scenario() -> tuple[list[Any], list[int]]:
        async with stack.channel("quangang-window") as channel:
            stub = pb_grpc.VerificationServiceStub(channel)
            health = health_pb2_grpc.HealthStub(channel)
            statuses: list[int] = []
            watch = health.Watch(
                health_pb2.HealthCheckRequest(service="proofless.v1.VerificationService")
            )

            async def watching() -> None:
                async for answer in watch:
                    statuses.append(answer.status)

            watcher = asyncio.create_task(watching())
            in_flight = [
                asyncio.ensure_future(
                    stub.GetHouseholdRecord(
                        pb.RecordRequest(
                            context=pb.RequestContext(
                                service_item="housing-transfer",
                                case_id=f"DRAIN-{i}",
                                purpose="drain test",
                            ),
                            applicant=pb.Applicant(id_number=idn),
                        ),
                        timeout=10,
                    )
                )
                for i in range(5)
            ]
            await asyncio.sleep(0.4)  # the calls are at the department now
            poller.start()
            assert stack.gateway is not None
            stack.gateway.send_signal(signal.SIGTERM)
            results = await asyncio.gather(*in_flight, return_exceptions=True)
            await asyncio.wait([watcher], timeout=5)
            watcher.cancel()
            return results, statuses

    poller = OpsPoller(stack)
    results, statuses = asyncio.run(scenario())
    assert stack.gateway is not None
    code = stack.gateway.wait(timeout=20)
    poller.stop.set()
    poller.join()
    assert code == 0, stack.log_text()

    assert all(isinstance(r, pb.HouseholdRecordResponse) for r in results), results
    assert statuses[0] == health_pb2.HealthCheckResponse.SERVING
    assert health_pb2.HealthCheckResponse.NOT_SERVING in statuses
    # while draining: not ready, still alive
    assert (503, 200) in poller.seen, poller.seen

    logged = entries_on_disk(stack)
    indexes = {r.attestation.audit_index for r in results}
    assert {e["index"] for e in logged} >= indexes
    assert latest_checkpoint_size(stack) == len(logged)
    verified = audit_verify(stack)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_sigterm_with_a_call_past_the_grace_period_still_exits_cleanly(
    served: ProcessStack,
) -> None:
    stack = served
    idn = generate(20261121, 300).scenarios["household_head"]
    set_faults(stack, "household", {"hang": True})

    async def scenario() -> BaseException | Any:
        async with stack.channel("quangang-window") as channel:
            stub = pb_grpc.VerificationServiceStub(channel)
            call = asyncio.ensure_future(
                stub.GetHouseholdRecord(
                    pb.RecordRequest(
                        context=pb.RequestContext(
                            service_item="housing-transfer", case_id="HUNG-1", purpose="drain"
                        ),
                        applicant=pb.Applicant(id_number=idn),
                    ),
                    timeout=30,
                )
            )
            await asyncio.sleep(0.4)
            assert stack.gateway is not None
            stack.gateway.send_signal(signal.SIGTERM)
            return (await asyncio.gather(call, return_exceptions=True))[0]

    t0 = time.monotonic()
    outcome = asyncio.run(scenario())
    assert stack.gateway is not None
    code = stack.gateway.wait(timeout=20)
    took = time.monotonic() - t0
    assert code == 0, stack.log_text()
    assert isinstance(outcome, grpc.aio.AioRpcError)
    assert outcome.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
    assert took < 15  # the 3 s grace period, not the hung department, bounds the exit
    logged = [e for e in entries_on_disk(stack) if e.get("case_id") == "HUNG-1"]
    # every request leaves exactly one entry, even one cut off by shutdown
    assert len(logged) == 1, logged
    assert latest_checkpoint_size(stack) == len(entries_on_disk(stack))
    verified = audit_verify(stack)
    assert verified.returncode == 0, verified.stdout + verified.stderr
