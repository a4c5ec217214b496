"""Failover through nginx: `python -m gateway.devtools.cluster` (what `make cluster` runs) with
three replicas behind nginx (TCP passthrough, least_conn). Several clients drive load, each opening
a new channel every few calls so connections spread; one replica is SIGKILLed mid-load;
clients retry an UNAVAILABLE call once on a new channel. Then the replicas' logs are verified
and merged, and every answer a client saw as OK is found in them by its proof id.

What it measured is printed and kept in tests/artifacts/cluster_failover.json."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from adapters.simulators.datagen import generate
from gateway.audit.log import AuditLog
from gateway.config import load_config
from gateway.crypto.keys import load_ed25519_private_key
from gateway.devtools.pki import DevPki, init_dev_pki
from proofless.v1 import verification_pb2 as pb
from proofless.v1 import verification_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parents[2]
DEV_CONFIG = ROOT / "deploy" / "config" / "gateway.toml"
ARTIFACT = ROOT / "tests" / "artifacts" / "cluster_failover.json"
PROOFLESS = [sys.executable, "-m", "gateway.cli"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists(),
        reason="needs nginx with the stream module (Debian nginx + libnginx-mod-stream; "
        "`make system-deps`)",
    ),
]

REPLICAS = 3
CLIENTS = 6
CALLS_PER_CHANNEL = 5
OK_BEFORE_KILL = 150
OK_AFTER_KILL = 150
#: per client between calls: keeps the load under the policy's per-replica rate limit
PACE_S = 0.01


@dataclass
class Call:
    client: int
    started: float
    ended: float
    code: str
    retried: bool = False
    proof_id: str = ""
    origin: str = ""
    index: int = -1


@dataclass
class Load:
    calls: list[Call] = field(default_factory=list)
    kill_time: float | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    def ok(self, after_kill: bool) -> int:
        k = self.kill_time
        return sum(
            c.code == "OK" and (k is not None and c.started > k) == after_kill for c in self.calls
        )


def proof_audit(proof: str) -> tuple[str, int]:
    payload = proof.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return str(claims["audit"]["log"]), int(claims["audit"]["index"])


def request(idn: str, client: int, n: int) -> pb.RecordRequest:
    req = pb.RecordRequest(
        context=pb.RequestContext(
            service_item="housing-transfer",
            case_id=f"QG-2026-{client:02d}{n:05d}",
            purpose="transfer registration",
        ),
        applicant=pb.Applicant(id_number=idn),
    )
    req.read_mask.paths.extend(["name", "region_code"])
    return req


async def client_loop(
    k: int, address: str, creds: grpc.ChannelCredentials, ids: list[str], load: Load
) -> None:
    """Calls until told to stop; a new channel (a new TCP connection through nginx, so maybe
    another replica) every CALLS_PER_CHANNEL calls, and after any UNAVAILABLE."""

    def new_channel() -> grpc.aio.Channel:
        return grpc.aio.secure_channel(
            address, creds, options=[("grpc.use_local_subchannel_pool", 1)]
        )

    channel, used, n = new_channel(), 0, 0
    try:
        while not load.stop.is_set():
            if used == CALLS_PER_CHANNEL:
                await channel.close()
                channel, used = new_channel(), 0
            n += 1
            for attempt in range(2):  # one retry, on a new channel, for UNAVAILABLE
                call = Call(k, time.monotonic(), 0.0, "", retried=attempt == 1)
                try:
                    resp = await pb_grpc.VerificationServiceStub(channel).GetHouseholdRecord(
                        # many citizens: a caller's daily budget per citizen stops probing
                        request(ids[(k * 7919 + n) % len(ids)], k, n),
                        timeout=5,
                    )
                    call.code = "OK"
                    call.proof_id = resp.attestation.proof_id
                    call.origin, call.index = proof_audit(resp.attestation.proof)
                except grpc.aio.AioRpcError as err:
                    call.code = err.code().name
                call.ended = time.monotonic()
                load.calls.append(call)
                used += 1
                if call.code != "UNAVAILABLE":
                    break
                await channel.close()
                channel, used = new_channel(), 0
            await asyncio.sleep(PACE_S)
    finally:
        await channel.close()


async def wait_for(predicate: Any, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def run_ok(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, check=False, capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result


async def test_traffic_survives_a_replica_kill_and_every_ok_answer_is_audited(
    tmp_path: Path,
) -> None:
    pki: DevPki = init_dev_pki(tmp_path / "pki")
    state = tmp_path / "cluster"
    config = load_config(DEV_CONFIG)
    sims = config.simulators
    ids = sorted(generate(int(sims["seed"]), int(sims["population"])).people)

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.devtools.cluster", "--config", str(DEV_CONFIG),
        "--replicas", str(REPLICAS), "--free-ports", "--state", str(state),
        "--certs", str(pki.dir), cwd=ROOT, stdout=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    info_file = state / "cluster.json"
    load = Load()
    try:
        await wait_for(lambda: info_file.exists() or proc.returncode is not None, 90, "cluster")
        assert proc.returncode is None, "the cluster did not start"
        info = json.loads(info_file.read_text())
        creds = grpc.ssl_channel_credentials(
            root_certificates=pki.ca_pem.read_bytes(),
            private_key=pki.client_key("quangang-window").read_bytes(),
            certificate_chain=pki.client_pem("quangang-window").read_bytes(),
        )
        clients = [
            asyncio.create_task(client_loop(k, info["address"], creds, ids, load))
            for k in range(CLIENTS)
        ]
        try:
            await wait_for(lambda: load.ok(after_kill=False) >= OK_BEFORE_KILL, 120, "load")
            served = Counter(c.origin for c in load.calls if c.code == "OK")
            # the busiest replica dies: it surely had connections open
            victim = next(r for r in info["replicas"] if r["origin"] == served.most_common()[0][0])
            os.kill(victim["pid"], signal.SIGKILL)
            load.kill_time = time.monotonic()
            await wait_for(lambda: load.ok(after_kill=True) >= OK_AFTER_KILL, 120, "recovery")
        finally:
            load.stop.set()
            await asyncio.gather(*clients)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 60)
    assert code == 0

    kill = load.kill_time
    assert kill is not None
    after = [c for c in load.calls if c.started > kill]
    failed_then = [c for c in load.calls if c.code != "OK"]
    # every logical request got an OK answer, at the latest on its one retry
    retries = [c for c in load.calls if c.retried]
    assert all(c.code == "OK" for c in retries), Counter(c.code for c in retries)
    assert {c.code for c in failed_then} <= {"UNAVAILABLE"}, Counter(c.code for c in failed_then)
    # nothing after the kill was answered by the dead replica; the others carried it all
    ok_after = [c for c in after if c.code == "OK"]
    assert victim["origin"] not in {c.origin for c in ok_after}
    assert len({c.origin for c in ok_after}) == REPLICAS - 1

    # The killed replica's log, as its restart would find it: opening recovers a torn tail
    # and signs a checkpoint over every acknowledged entry.
    log = await AuditLog.open(
        Path(victim["audit_dir"]),
        origin=victim["origin"],
        note_key=load_ed25519_private_key(pki.audit_note_key),
    )
    await log.close()
    for r in info["replicas"]:
        run_ok(*PROOFLESS, "audit", "verify", r["audit_dir"], "--key", r["vkey"])
    keys = [a for r in info["replicas"] for a in ("--key", r["vkey"])]
    merged = run_ok(
        *PROOFLESS, "audit", "merge", *(r["audit_dir"] for r in info["replicas"]), *keys
    ).stdout
    entries = {e["proof_id"]: e for e in map(json.loads, merged.splitlines()) if e.get("proof_id")}
    answered = [c for c in load.calls if c.code == "OK"]
    missing = [c.proof_id for c in answered if c.proof_id not in entries]
    assert not missing, f"{len(missing)} OK answers are not in the merged log"
    for c in answered:
        e = entries[c.proof_id]
        assert (e["origin"], e["index"]) == (c.origin, c.index)

    # time to recover: from the kill to each affected client's next OK answer
    affected = {c.client for c in failed_then}
    recover = [min(c.ended for c in ok_after if c.client == k) - kill for k in affected]
    report = {
        "replicas": REPLICAS,
        "clients": CLIENTS,
        "killed": victim["name"],
        "ok_before_kill": load.ok(after_kill=False),
        "ok_after_kill": len(ok_after),
        "ok_by_replica_before": dict(Counter(c.origin for c in answered if c.started <= kill)),
        "ok_by_replica_after": dict(Counter(c.origin for c in ok_after)),
        "errors_seen": dict(Counter(c.code for c in failed_then)),
        "retries": sum(c.retried for c in load.calls),
        "retries_ok": sum(c.retried and c.code == "OK" for c in load.calls),
        "clients_hit": len(affected),
        "time_to_recover_ms_max": round(1000 * max(recover), 1) if recover else 0.0,
        "merged_entries": len(merged.splitlines()),
        "ok_answers_found_in_merged_log": len(answered),
    }
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    ARTIFACT.write_text(json.dumps(report, indent=2) + "\n")
    print("\ncluster failover:", json.dumps(report, indent=2))
