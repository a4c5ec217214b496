"""Readiness that means ready (gateway/server/readiness.py), on a real gateway: /readyz and
gRPC health go NOT_SERVING when the audit log cannot be written, with the reason; a
department's breaker and a refused reload are shown but do not make the gateway unready."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from adapters.simulators.faults import Faults
from proofless.v1 import verification_pb2 as pb
from tests.support.stack import ROOT, Stack, poll


async def readyz(stack: Stack) -> tuple[int, dict[str, Any]]:
    url = f"http://127.0.0.1:{stack.gateway.ops_port}/readyz"
    async with aiohttp.ClientSession() as http, http.get(url) as reply:
        return reply.status, json.loads(await reply.read())


async def health(stack: Stack) -> int:
    channel = await stack.channel("auditor")
    reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    return int(reply.status)


async def test_ready_names_each_check_and_each_department(
    make_stack: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = tmp_path / "policy.toml"
    shutil.copy(ROOT / "deploy" / "config" / "policy.toml", policy)
    async with make_stack({"policy": {"file": str(policy)}}, tmp_path / "state") as stack:
        status, body = await readyz(stack)
        assert status == 200
        assert body["ready"] is True
        assert body["checks"] == {"serving": "ok", "audit": "ok", "signing": "ok"}
        assert body["departments"]["household"] == "closed"
        assert await health(stack) == health_pb2.HealthCheckResponse.SERVING

        # a refused reload: shown, the previous rules serve, still ready
        policy.write_text(policy.read_text() + "\n[items.broken]\n")
        os.utime(policy, ns=(1, 1))

        async def degraded() -> bool:
            return "config" in (await readyz(stack))[1].get("degraded", {})

        await poll(degraded, "the refused reload on /readyz")
        status, body = await readyz(stack)
        assert (status, body["ready"]) == (200, True)
        assert "refused" in body["degraded"]["config"]

        # a department down: its breaker opens, the gateway stays ready
        stack.sims.household.injector.set(Faults(error_rate=1.0, error_status=503))
        window = await stack.verification("quangang-window")
        request = pb.RecordRequest(
            context=pb.RequestContext(
                service_item="housing-transfer", case_id="R-1", purpose="readiness"
            ),
            applicant=pb.Applicant(id_number=stack.scenarios["household_head"]),
        )
        request.read_mask.paths.append("name")
        for _ in range(30):
            with contextlib.suppress(grpc.aio.AioRpcError):
                await window.GetHouseholdRecord(request, timeout=5)
            if (await readyz(stack))[1]["departments"]["household"] == "open":
                break
        status, body = await readyz(stack)
        assert body["departments"]["household"] == "open"
        assert (status, body["ready"]) == (200, True)

        # the audit log cannot be written: not ready, with the reason, and gRPC health says so
        def full(*args: object) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(os, "fdatasync", full)
        stack.sims.household.injector.set(Faults())
        with pytest.raises(grpc.aio.AioRpcError):
            await window.GetSocialSecurityRecord(request, timeout=5)

        async def unready() -> bool:
            return (await readyz(stack))[0] == 503

        await poll(unready, "/readyz 503 after the audit log failed")
        _, body = await readyz(stack)
        assert body["ready"] is False
        assert "cannot be written" in body["checks"]["audit"]
        assert await health(stack) == health_pb2.HealthCheckResponse.NOT_SERVING
        monkeypatch.undo()
