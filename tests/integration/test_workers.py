"""`proofless serve --workers 2` as a real subprocess: the workers share one gRPC port through
SO_REUSEPORT, each writes its own audit shard, the parent restarts a killed worker, SIGTERM
drains them all, and every shard verifies with `proofless audit verify`."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest

from adapters.simulators import run_simulators
from adapters.simulators.from_catalogue import simulator_departments
from gateway.audit import tools
from gateway.config import merge_tables
from gateway.devtools.pki import DevPki
from gateway.devtools.recipe import endpoints as sims_endpoints
from gateway.server.workers import env_overrides
from proofless.v1 import verification_pb2 as pb
from proofless.v1 import verification_pb2_grpc as pb_grpc
from tests.support import rules
from tests.support.stack import DEV_CONFIG, ROOT, stack_config

pytestmark = pytest.mark.slow

PROOFLESS = [sys.executable, "-m", "gateway.cli"]
CALLS_PER_ROUND = 40


def gateway_overrides(raw: dict[str, Any], sims: Any) -> dict[str, Any]:
    """The keys a subprocess gateway needs to use the test's PKI, state and simulators."""
    deps = raw["departments"]
    return {
        "server": raw["server"],
        "tls": raw["tls"],
        "proofs": raw["proofs"],
        "audit": raw["audit"],
        "policy": raw["policy"],
        "consent": raw["consent"],
        "departments": merge_tables(
            {"household": {"auth": deps["household"]["auth"]}}, sims_endpoints(sims)
        ),
    }


def credentials(pki: DevPki, caller: str = "quangang-window") -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=pki.ca_pem.read_bytes(),
        private_key=pki.client_key(caller).read_bytes(),
        certificate_chain=pki.client_pem(caller).read_bytes(),
    )


def household_request(idn: str, case: str) -> pb.RecordRequest:
    req = pb.RecordRequest(
        context=pb.RequestContext(
            service_item="housing-transfer", case_id=case, purpose="transfer registration"
        ),
        applicant=pb.Applicant(id_number=idn),
    )
    req.read_mask.paths.extend(["name", "region_code"])
    return req


async def one_call_per_channel(address: str, pki: DevPki, idn: str, n: int, tag: str) -> None:
    """`n` calls, each on its own channel and so its own TCP connection (a local subchannel
    pool stops grpc from sharing one connection between channels to the same target)."""
    creds = credentials(pki)
    for i in range(n):
        async with grpc.aio.secure_channel(
            address, creds, options=[("grpc.use_local_subchannel_pool", 1)]
        ) as channel:
            stub = pb_grpc.VerificationServiceStub(channel)
            await stub.GetHouseholdRecord(household_request(idn, f"{tag}-{i:04d}"), timeout=10)


def children(pid: int) -> set[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return {int(p) for p in text.split()}


def listening(pid: int, port: int) -> bool:
    """Whether process `pid` has a listening TCP socket on `port` (from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            local_port = int(cols[1].rsplit(":", 1)[1], 16)
            if local_port == port and cols[3] == "0A" and cols[9] in inodes:
                return True
    return False


def shard_sizes(audit_dir: Path) -> list[int]:
    """Accesses per shard (each shard also records the rules its worker started with)."""
    return [
        sum(1 for e in tools.iter_entries(audit_dir / f"worker-{i}") if e["kind"] == "access")
        for i in range(2)
    ]


async def read_banner(proc: asyncio.subprocess.Process) -> str:
    assert proc.stdout is not None
    lines: list[str] = []
    while not any(line.startswith("SIGTERM") for line in lines):
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        if not line:
            raise AssertionError(f"serve --workers exited: {''.join(lines)}")
        lines.append(line.decode())
    return "".join(lines)


def verify_shard(pki: DevPki, shard: Path, origin: str) -> None:
    key = subprocess.run(
        [*PROOFLESS, "audit", "key", "--note-key", str(pki.audit_note_key), "--origin", origin],
        capture_output=True, text=True, check=True, cwd=ROOT,
    ).stdout.strip()  # fmt: skip
    result = subprocess.run(
        [*PROOFLESS, "audit", "verify", str(shard), "--key", key],
        check=False, capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


async def test_workers_share_the_port_shard_the_log_and_survive_a_crash(
    pki: DevPki, tmp_path: Path
) -> None:
    raw = stack_config(pki, tmp_path)
    audit_dir = tmp_path / "audit"
    departments = simulator_departments(rules.catalogue_with(raw["departments"]))
    async with run_simulators(
        raw["simulators"], departments, secret=pki.household_secret.read_text().encode()
    ) as sims:
        idn = sims.population.scenarios["household_head"]
        env = {**os.environ, **env_overrides(gateway_overrides(raw, sims))}
        proc = await asyncio.create_subprocess_exec(
            *PROOFLESS, "serve", "--workers", "2", "--config", str(DEV_CONFIG),
            "--log-level", "WARNING", env=env, cwd=ROOT, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            banner = await read_banner(proc)
            address = re.search(r"gRPC \(mutual TLS\)\s+(\S+)", banner)
            assert address is not None, banner
            pids = {int(p) for p in re.findall(r"worker-\d+\s+pid (\d+)", banner)}
            assert len(pids) == 2
            assert children(proc.pid) == pids

            await one_call_per_channel(address[1], pki, idn, CALLS_PER_ROUND, "A")
            first = shard_sizes(audit_dir)
            # the kernel spread the connections: both workers answered and audited
            assert sum(first) == CALLS_PER_ROUND
            assert min(first) > 0, first

            # a worker dies: the parent starts a new one on the same shard
            victim = max(pids)
            os.kill(victim, signal.SIGKILL)
            port = int(address[1].rsplit(":", 1)[1])
            for _ in range(600):
                now = children(proc.pid)
                new = now - pids
                if len(now) == 2 and new and listening(new.pop(), port):
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError(f"worker {victim} was not restarted")
            await one_call_per_channel(address[1], pki, idn, CALLS_PER_ROUND, "B")
            second = shard_sizes(audit_dir)
            assert sum(second) == 2 * CALLS_PER_ROUND
            assert all(b > a for a, b in zip(first, second, strict=True)), (first, second)
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(proc.wait(), 30)
    assert code == 0
    origin = raw["audit"]["origin"]
    for i in range(2):
        verify_shard(pki, audit_dir / f"worker-{i}", f"{origin}/worker-{i}")
