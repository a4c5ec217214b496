"""Policy reload under load: the policy file is rewritten (and broken) while eight callers keep
calling; no request fails because of a reload, each change takes effect, a bad file is refused
with the old policy kept, and every audit entry names the policy version it was decided under.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2

from gateway.server import app as server
from proofless.v1 import verification_pb2 as pb
from proofless.v1 import verification_pb2_grpc as pb_grpc
from tests.support.stack import ROOT, Stack, poll, rich_details

pytestmark = pytest.mark.slow

POLICY = ROOT / "deploy" / "config" / "policy.toml"
CALLER = "quangang-window"
ITEM = "housing-transfer"
WORKERS = 8
#: the load runs at least this long, and on until every policy change was seen
MIN_LOAD_S = 3.0

BASE_FIELDS = 'household = ["name", "region_code", "status"]'
WITH_ADDRESS = 'household = ["name", "region_code", "status", "address"]'
# The load must never be rate limited: that would hide a reload failure among refusals.
DEMO_RATE = "rate = { per_second = 100, burst = 200 }"
LOAD_RATE = "rate = { per_second = 100000, burst = 100000 }"


def policy_text(*, address: bool) -> str:
    text = POLICY.read_text()
    # the housing-transfer item's own records table, wherever other items repeat its lines
    head, sep, tail = text.partition(f"[items.{ITEM}.records]")
    body, nxt, rest = tail.partition("\n[")
    assert sep, "the demo policy has no housing-transfer records"
    assert body.count(BASE_FIELDS) == 1, "the demo policy's housing-transfer fields changed"
    assert text.count(DEMO_RATE) == 1, "the demo policy's quangang-window rate changed"
    if address:
        body = body.replace(BASE_FIELDS, WITH_ADDRESS)
    text = head + sep + body + nxt + rest
    text = text.replace(DEMO_RATE, LOAD_RATE)
    # the load asks about one citizen: lift the daily budget per caller and citizen
    return re.sub(r"subject_budget = \{[^}]*\}", "subject_budget = { per_day = 100000000 }", text)


def version_of(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def household_request(idn: str, *fields: str) -> pb.RecordRequest:
    req = pb.RecordRequest(
        context=pb.RequestContext(service_item=ITEM, case_id="QG-RELOAD-1", purpose="transfer"),
        applicant=pb.Applicant(id_number=idn),
    )
    req.read_mask.paths.extend(fields)
    return req


@dataclass
class Load:
    ok: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    request_ids: list[str] = field(default_factory=list)


async def run_load(stack: Stack, stop: asyncio.Event, load: Load) -> None:
    s = stack.scenarios
    claims = pb.VerifyClaimsRequest(
        context=pb.RequestContext(service_item=ITEM, case_id="QG-RELOAD-2", purpose="transfer"),
        applicant=pb.Applicant(id_number=s["no_property"]),
        claims=[pb.Claim(id="none", type="property.ownership", params={"owns": "false"})],
    )
    record = household_request(s["household_head"], "name", "region_code", "status")

    async def worker(n: int) -> None:
        stub = await stack.verification(CALLER)
        while not stop.is_set():
            request_id = f"load-{n}-{uuid.uuid4().hex}"
            metadata = (("x-request-id", request_id),)
            try:
                if n % 2:
                    await stub.VerifyClaims(claims, timeout=10, metadata=metadata)
                else:
                    await stub.GetHouseholdRecord(record, timeout=10, metadata=metadata)
            except grpc.aio.AioRpcError as err:
                load.failed[err.code().name] += 1
            else:
                load.ok += 1
            load.request_ids.append(request_id)

    await asyncio.gather(*(worker(n) for n in range(WORKERS)))


async def test_policy_reload_under_load(
    make_stack: Callable[..., Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the watcher's tick (1 s in production) only sets the pace of this test
    monkeypatch.setattr(server, "WATCH_INTERVAL_S", 0.2)
    policy_file = tmp_path / "policy.toml"
    without, with_address = policy_text(address=False), policy_text(address=True)
    policy_file.write_text(without)
    async with make_stack(
        {"policy": {"file": str(policy_file)}}, state=tmp_path / "state"
    ) as stack:
        gw = stack.gateway
        assert gw.rules.value.policy.version == version_of(without)
        probe = pb_grpc.VerificationServiceStub(await stack.channel(CALLER))
        address_only = household_request(stack.scenarios["household_head"], "address")
        probes: list[tuple[str, str]] = []  # (request id, version that must be in its entry)

        async def address_allowed() -> bool:
            request_id = f"probe-{uuid.uuid4().hex}"
            call = probe.GetHouseholdRecord(
                address_only, timeout=10, metadata=(("x-request-id", request_id),)
            )
            err: grpc.aio.AioRpcError | None = None
            try:
                resp = await call
            except grpc.aio.AioRpcError as exc:
                err = exc
            allowed = err is None
            if err is not None:
                assert err.code() == grpc.StatusCode.PERMISSION_DENIED
                infos = [d for d in rich_details(err) if isinstance(d, error_details_pb2.ErrorInfo)]
                assert [i.reason for i in infos] == ["FIELD_NOT_ALLOWED"]
            else:
                assert list(resp.attestation.disclosed_fields) == ["address"]
                assert resp.record.address
            probes.append((request_id, version_of(with_address if allowed else without)))
            return allowed

        async def becomes(allowed: bool, text: str) -> None:
            async def seen() -> bool:
                return await address_allowed() is allowed

            await poll(seen, f"address {'allowed' if allowed else 'denied'}", every=0.05)
            assert gw.rules.value.policy.version == version_of(text)

        async def refused(bad: str, message: str) -> None:
            in_force = gw.rules.value.policy.version
            write_atomically(policy_file, bad)

            async def rejected() -> bool:
                return bool(gw.rules.last_error)

            await poll(rejected, "rejection of the invalid policy", every=0.05)
            assert message in gw.rules.last_error
            assert str(policy_file) in gw.rules.last_error
            assert gw.rules.value.policy.version == in_force

        assert not await address_allowed()
        stop, load = asyncio.Event(), Load()
        loop = asyncio.get_running_loop()
        started = loop.time()
        load_task = asyncio.create_task(run_load(stack, stop, load))
        reloads = gw.rules.reloads
        try:
            for _ in range(2):
                write_atomically(policy_file, with_address)
                await becomes(True, with_address)
                # a syntax error: refused, the policy with the address stays in force
                await refused(with_address.replace("[callers.fuan-hrss]", "[callers.fuan"), "TOML")
                assert await address_allowed()
                write_atomically(policy_file, without)
                await becomes(False, without)
                # valid TOML, invalid policy: an item names a caller that does not exist
                await refused(
                    without.replace('callers = ["fuan-hrss"]', 'callers = ["nobody"]', 1),
                    "nobody",
                )
                assert not await address_allowed()
            # an in-place rewrite (truncate, then write) rather than an atomic rename
            policy_file.write_text(with_address)
            await becomes(True, with_address)
            await asyncio.sleep(max(0.0, MIN_LOAD_S - (loop.time() - started)))
        finally:
            stop.set()
            await load_task
        assert gw.rules.reloads - reloads == 5

        total = load.ok + sum(load.failed.values())
        with capsys.disabled():
            print(
                f"\npolicy reload under load: {total} requests from {WORKERS} callers in "
                f"{loop.time() - started:.1f} s, {load.ok} ok, failed {dict(load.failed)}; "
                f"{gw.rules.reloads - reloads} reloads, 4 invalid files refused, "
                f"{len(probes)} probes"
            )
        assert load.failed == Counter()
        assert load.ok >= WORKERS

        # every entry names the version in force when its request arrived; the refused files'
        # versions never appear
        log = gw.audit
        lines = (json.loads(raw) for raw in await log.entries(0, log.tree_size))
        entries = {e["request_id"]: e for e in lines if e["kind"] == "access"}
        valid_versions = {version_of(without), version_of(with_address)}
        load_versions = Counter(entries[rid]["policy"] for rid in load.request_ids)
        assert set(load_versions) == valid_versions
        assert all(entries[rid]["outcome"] == "granted" for rid in load.request_ids)
        for request_id, version in probes:
            assert entries[request_id]["policy"] == version
