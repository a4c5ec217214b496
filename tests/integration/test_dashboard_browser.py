"""The live dashboard in a real headless Chromium (Debian `chromium`), driven over the DevTools
protocol with aiohttp's websocket client: the page loads, shows numbers that move while
synthetic traffic flows, turns "stale" when the server goes away, and leaves a screenshot in
tests/artifacts/dashboard.png."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import random
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from gateway.ops.http import OpsServer
from gateway.ops.metrics import Metrics

pytestmark = pytest.mark.chromium

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
REQUIRE_SERVICES = os.environ.get("PROOFLESS_REQUIRE_SERVICES") == "1"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-proxy-server",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
    "--window-size=1600,1000",
)


def need_chromium() -> str:
    """The Chromium executable; skip (or fail with PROOFLESS_REQUIRE_SERVICES=1) without one."""
    path = os.environ.get("PROOFLESS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if os.access(path, os.X_OK):
        return path
    reason = "headless Chromium is not installed (Debian: apt-get install -y chromium)"
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} and PROOFLESS_REQUIRE_SERVICES=1 requires it")
    pytest.skip(reason)


class DevTools:
    """A minimal DevTools-protocol client over one page's websocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        ident = next(self._ids)
        await self._ws.send_json({"id": ident, "method": method, "params": params})
        while True:
            message = await asyncio.wait_for(self._ws.receive_json(), timeout=15)
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page error: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, within: float = 15.0) -> Any:
        deadline = time.monotonic() + within
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for: {expression}")
            await asyncio.sleep(0.2)


@pytest.fixture
async def chromium(tmp_path: Path) -> AsyncIterator[DevTools]:
    executable = need_chromium()
    profile = tmp_path / "profile"
    process = await asyncio.create_subprocess_exec(
        executable,
        *CHROMIUM_FLAGS,
        f"--user-data-dir={profile}",
        "about:blank",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        for _ in range(300):
            if port_file.exists() and port_file.read_text().strip():
                break
            if process.returncode is not None:
                pytest.fail(f"chromium exited with {process.returncode}")
            await asyncio.sleep(0.1)
        else:
            pytest.fail("chromium did not open its DevTools port")
        port = int(port_file.read_text().split()[0])
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/json/list") as response:
                targets = await response.json()
            page = next(t for t in targets if t["type"] == "page")
            async with http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                devtools = DevTools(ws)
                await devtools.call(
                    "Emulation.setDeviceMetricsOverride",
                    width=1600,
                    height=1000,
                    deviceScaleFactor=1,
                    mobile=False,
                )
                yield devtools
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), timeout=10)
            except TimeoutError:
                process.kill()
                await process.wait()


async def synthetic_traffic(metrics: Metrics) -> None:
    """Approval systems calling, departments answering, the audit log growing, forever."""
    rng = random.Random(6)
    callers = ("housing-fuzhou", "pension-quanzhou", "hr-xiamen", "edu-ningde")
    items = ("ershoufang-jiaoyi", "cxjm-yanglao", "tuixiu-yijianshi", "shebaoka", "dibao")
    rpcs = ("VerifyClaims", "GetHouseholdRecord", "GetSocialSecurityRecord", "GetPropertyRecords")
    departments = ("household", "social_security", "property")
    denial_reasons = ("ITEM_NOT_ALLOWED", "CONSENT_REQUIRED", "FIELD_NOT_ALLOWED")
    tree = 0
    metrics.breaker_state("household", "closed")
    metrics.breaker_state("social_security", "closed")
    metrics.breaker_state("property", "half_open")
    for tick in itertools.count():
        for _ in range(rng.randint(20, 60)):
            rpc = rng.choice(rpcs)
            metrics.request_started(rpc)
            roll = rng.random()
            outcome, code = (
                ("granted", "OK")
                if roll < 0.85
                else ("denied", "PERMISSION_DENIED")
                if roll < 0.93
                else ("not_found", "NOT_FOUND")
                if roll < 0.97
                else ("error", "UNAVAILABLE")
            )
            if outcome == "denied":
                metrics.denial(rng.choice(denial_reasons))
            department = rng.choice(departments)
            slow = department == "property"
            seconds = rng.lognormvariate(-4.6 if not slow else -3.5, 0.6)
            metrics.department_call(department, "error" if outcome == "error" else "ok", seconds)
            caller, item = rng.choice(callers), rng.choice(items)
            metrics.request_finished(rpc, caller, item, outcome, code, seconds + 0.0015)
            tree += 1
            metrics.audit_appended(rng.uniform(0.0003, 0.002), tree)
            metrics.proofs_signed()
        if tick % 10 == 0:
            metrics.checkpoint_signed(tree, time.time())
        await asyncio.sleep(0.1)


@pytest.fixture
async def dashboard() -> AsyncIterator[tuple[OpsServer, str]]:
    metrics = Metrics(CollectorRegistry())
    server = OpsServer(
        metrics=metrics,
        jwks=lambda: {"keys": []},
        audit_vkey=lambda: "proofless+00000000+AQ==",
        ready=lambda: True,
        sample_interval=0.5,
    )
    port = await server.start("127.0.0.1", 0)
    traffic = asyncio.create_task(synthetic_traffic(metrics))
    try:
        yield server, f"http://127.0.0.1:{port}/dashboard"
    finally:
        traffic.cancel()
        await asyncio.gather(traffic, return_exceptions=True)
        await server.stop()


READ_PAGE = """JSON.stringify({
  tiles: Object.fromEntries([...document.querySelectorAll('[data-key]')]
    .map(e => [e.dataset.key, e.textContent])),
  total: document.querySelector('[data-foot="requests_total"]').textContent,
  live: document.getElementById('live').textContent,
  departments: [...document.querySelectorAll('#departments tbody tr:not(.empty)')]
    .map(r => r.textContent),
  breakers: [...document.querySelectorAll('#departments .breaker')].map(e => e.className),
  denials: document.querySelectorAll('#denials li:not(.empty)').length,
  callers: document.querySelectorAll('#callers li:not(.empty)').length,
  chartPaths: [...document.querySelectorAll('#chart path')]
    .filter(p => (p.getAttribute('d') || '').length > 20).length,
})"""


async def read_page(devtools: DevTools) -> dict[str, Any]:
    page: dict[str, Any] = json.loads(await devtools.evaluate(READ_PAGE))
    return page


async def test_dashboard_shows_live_numbers_in_chromium(
    chromium: DevTools, dashboard: tuple[OpsServer, str]
) -> None:
    server, url = dashboard
    await chromium.call("Page.enable")
    await chromium.call("Page.navigate", url=url)
    await chromium.wait_for("document.getElementById('live')?.textContent.includes('LIVE')")
    await chromium.wait_for(
        "document.querySelectorAll('#chart path').length >= 4"
        " && document.querySelector('[data-key=p99_ms]').textContent !== '—'"
    )
    first = await read_page(chromium)
    await asyncio.sleep(2.5)
    second = await read_page(chromium)

    for page in (first, second):
        assert "LIVE" in page["live"]
        for key in ("requests_per_second", "p50_ms", "p99_ms", "error_rate", "audit_tree_size"):
            assert any(ch.isdigit() for ch in page["tiles"][key]), (key, page["tiles"])
        assert len(page["departments"]) == 3
        assert any("half_open" in c for c in page["breakers"])
        assert page["denials"] > 0
        assert page["callers"] == 4
    assert second["total"] != first["total"], "the request total must move while traffic flows"
    assert second["tiles"]["audit_tree_size"] != first["tiles"]["audit_tree_size"]
    assert second["chartPaths"] >= 3

    # let the chart fill a little more for a representative screenshot
    await asyncio.sleep(4)
    shot = await chromium.call("Page.captureScreenshot", format="png")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "dashboard.png").write_bytes(base64.b64decode(shot["data"]))

    # the server goes away: the page says so instead of showing old numbers as live
    await server.stop()
    await chromium.wait_for("document.getElementById('live').textContent.includes('STALE')")
    assert await chromium.evaluate("document.body.classList.contains('is-stale')")
