"""The dashboard of a real gateway, in headless Chromium, while approval systems call it over
mutual TLS: the numbers on the page are the gateway's own and move with the traffic.
Leaves tests/artifacts/dashboard-live.png."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from proofless.v1 import verification_pb2 as pb
from tests.support.stack import Stack

from .test_dashboard_browser import ARTIFACTS, DevTools, chromium, read_page

__all__ = ["chromium"]  # the fixture, imported for this module's tests
pytestmark = pytest.mark.chromium


async def traffic(stack: Stack, stop: asyncio.Event) -> int:
    """Calls from two approval systems: grants, a denial now and then, an unknown person."""
    window = await stack.verification("quangang-window")
    hrss = await stack.verification("fuan-hrss")
    s = stack.scenarios
    people = [s["household_head"], s["household_child"], s["no_property"], s["unknown"]]
    calls = 0
    for i in itertools.count():
        if stop.is_set():
            return calls
        idn = people[i % len(people)]
        ctx = pb.RequestContext(service_item="ss-card", case_id=f"QG-2026-{i:06d}")
        with contextlib.suppress(grpc.aio.AioRpcError):
            if i % 7 == 6:  # not on fuan-hrss's list: a denial
                ctx.service_item = "housing-transfer"
                ctx.purpose = "p"
                await hrss.GetHouseholdRecord(
                    pb.RecordRequest(context=ctx, applicant=pb.Applicant(id_number=idn))
                )
            else:
                await window.GetHouseholdRecord(
                    pb.RecordRequest(context=ctx, applicant=pb.Applicant(id_number=idn))
                )
        calls += 1
        await asyncio.sleep(0.01)
    return calls


async def test_dashboard_of_a_serving_gateway(
    chromium: DevTools, make_stack: Callable[..., Any]
) -> None:
    async with make_stack() as stack:
        await _watch_the_dashboard(chromium, stack)


async def _watch_the_dashboard(chromium: DevTools, stack: Stack) -> None:
    url = f"http://127.0.0.1:{stack.gateway.ops_port}/dashboard"
    stop = asyncio.Event()
    load = asyncio.create_task(traffic(stack, stop))
    try:
        await chromium.call("Page.enable")
        await chromium.call("Page.navigate", url=url)
        await chromium.wait_for("document.getElementById('live')?.textContent.includes('LIVE')")
        await chromium.wait_for(
            "document.querySelectorAll('#departments tbody tr:not(.empty)').length >= 1"
        )
        first = await read_page(chromium)
        await asyncio.sleep(3)
        second = await read_page(chromium)
        assert second["total"] != first["total"], "the request total must move with traffic"
        assert second["tiles"]["audit_tree_size"] != first["tiles"]["audit_tree_size"]
        assert any("household" in row for row in second["departments"])
        assert second["denials"] > 0
        shot = await chromium.call("Page.captureScreenshot", format="png")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "dashboard-live.png").write_bytes(base64.b64decode(shot["data"]))
    finally:
        stop.set()
        calls = await load
    assert calls > 0
