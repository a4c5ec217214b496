"""The ops HTTP server on a real socket (port 0) with a fresh metrics registry: every route,
the dashboard data moving with traffic, and hostile input answered with 4xx."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from gateway.ops.http import OpsServer
from gateway.ops.metrics import Metrics

JWKS = {
    "keys": [
        {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
            "kid": "k1",
            "alg": "EdDSA",
            "use": "sig",
        }
    ]
}
VKEY = "proofless.gov/audit/r0+7d3a1e2f+AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="


class Flags:
    ready = True
    live = True


@pytest.fixture
async def ops() -> AsyncIterator[tuple[OpsServer, str, Flags]]:
    flags = Flags()
    server = OpsServer(
        metrics=Metrics(CollectorRegistry()),
        jwks=lambda: JWKS,
        audit_vkey=lambda: VKEY,
        ready=lambda: flags.ready,
        live=lambda: flags.live,
        sample_interval=0.05,
    )
    port = await server.start("127.0.0.1", 0)
    assert port > 0
    try:
        yield server, f"http://127.0.0.1:{port}", flags
    finally:
        await server.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, str, str, Any]:
    async with http.get(url, allow_redirects=False) as response:
        return response.status, response.content_type, await response.text(), response.headers


async def test_metrics_route_serves_prometheus_text(
    ops: tuple[OpsServer, str, Flags], http: aiohttp.ClientSession
) -> None:
    server, base, _ = ops
    server.metrics.request_started("GetHouseholdRecord")
    server.metrics.request_finished(
        "GetHouseholdRecord", "housing", "ershoufang", "granted", "OK", 0.01
    )
    status, ctype, body, _ = await get(http, base + "/metrics")
    assert status == 200
    assert ctype == "text/plain"
    names = {family.name for family in text_string_to_metric_families(body)}
    assert {"proofless_requests", "proofless_build_info", "proofless_audit_tree_size"} <= names
    assert 'caller="housing"' in body


async def test_health_and_readiness(
    ops: tuple[OpsServer, str, Flags], http: aiohttp.ClientSession
) -> None:
    _, base, flags = ops
    assert (await get(http, base + "/healthz"))[0] == 200
    status, ctype, body, _ = await get(http, base + "/readyz")
    assert (status, ctype, json.loads(body)) == (200, "application/json", {"ready": True})
    flags.ready = False
    status, _, body, _ = await get(http, base + "/readyz")
    assert (status, json.loads(body)) == (503, {"ready": False})
    flags.live = False
    assert (await get(http, base + "/healthz"))[0] == 503


async def test_failing_probe_reads_as_not_ready(http: aiohttp.ClientSession) -> None:
    def broken() -> bool:
        raise RuntimeError("database gone")

    server = OpsServer(
        metrics=Metrics(CollectorRegistry()), jwks=dict, audit_vkey=str, ready=broken
    )
    port = await server.start("127.0.0.1", 0)
    try:
        status, _, body, _ = await get(http, f"http://127.0.0.1:{port}/readyz")
        assert status == 503
        assert "database" not in body
    finally:
        await server.stop()


async def test_jwks_and_vkey(
    ops: tuple[OpsServer, str, Flags], http: aiohttp.ClientSession
) -> None:
    _, base, _ = ops
    status, ctype, body, headers = await get(http, base + "/.well-known/jwks.json")
    assert (status, ctype) == (200, "application/json")
    assert json.loads(body) == JWKS
    assert headers["Cache-Control"] == "max-age=300"
    status, ctype, body, _ = await get(http, base + "/audit/vkey")
    assert (status, ctype, body) == (200, "text/plain", VKEY + "\n")


async def test_dashboard_page_and_assets(
    ops: tuple[OpsServer, str, Flags], http: aiohttp.ClientSession
) -> None:
    _, base, _ = ops
    status, ctype, body, headers = await get(http, base + "/dashboard")
    assert (status, ctype) == (200, "text/html")
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "<script>" not in body  # no inline scripts: the CSP would refuse them
    assert 'src="/dashboard/dashboard.js"' in body
    assert "http://" not in body.replace('href="/metrics"', "")  # nothing from the internet
    for name, expected in (("dashboard.js", "text/javascript"), ("dashboard.css", "text/css")):
        status, ctype, text, _ = await get(http, f"{base}/dashboard/{name}")
        assert (status, ctype) == (200, expected)
        assert "https://" not in text
    status, _, _, headers = await get(http, base + "/")
    assert (status, headers["Location"]) == (302, "/dashboard")


async def test_dashboard_data_moves_with_traffic(
    ops: tuple[OpsServer, str, Flags], http: aiohttp.ClientSession
) -> None:
    server, base, _ = ops
    status, ctype, body, headers = await get(http, base + "/dashboard/data.json")
    assert (status, ctype, headers["Cache-Control"]) == (200, "application/json", "no-store")
    before = json.loads(body)
    assert before["tiles"]["requests_total"] == 0

    m = server.metrics
    for n in range(40):
        m.request_started("VerifyClaims")
        outcome = "error" if n % 4 == 0 else "granted"
        m.request_finished("VerifyClaims", "pension", "cxjmylbx", outcome, "OK", 0.004)
        m.department_call("social_security", "ok", 0.002)
    m.department_call("social_security", "error", 0.3)
    m.breaker_state("social_security", "half_open")
    m.denial("CONSENT_REQUIRED")
    m.audit_appended(0.001, tree_size=41)
    m.checkpoint_signed(41, unix_time=before["generated_at"])
    await asyncio.sleep(0.3)  # a few sampler ticks

    after = json.loads((await get(http, base + "/dashboard/data.json"))[2])
    tiles = after["tiles"]
    assert tiles["requests_total"] == 40
    assert tiles["requests_per_second"] > 0
    assert tiles["error_rate"] == pytest.approx(0.25)
    assert tiles["p50_ms"] is not None
    assert tiles["audit_tree_size"] == 41
    assert tiles["checkpoint_age_seconds"] is not None
    assert after["generated_at"] > before["generated_at"]
    assert len(after["series"]["t"]) > len(before["series"]["t"])
    assert any(v > 0 for v in after["series"]["rps"])
    (row,) = after["departments"]
    assert row["department"] == "social_security"
    assert row["breaker"] == "half_open"
    assert row["calls_total"] == 41
    assert after["denials"][0]["reason"] == "CONSENT_REQUIRED"
    assert {"name": "cxjmylbx", "total": 40} in after["totals"]["service_item"]


async def test_hostile_input_gets_4xx_and_the_server_keeps_answering(
    ops: tuple[OpsServer, str, Flags], http: aiohttp.ClientSession
) -> None:
    _, base, _ = ops
    async with http.post(base + "/metrics", data=b"x" * 1_000_000) as response:
        assert 400 <= response.status < 500
    async with http.post(base + "/nowhere", data=b"x" * 1_000_000) as response:
        assert 400 <= response.status < 500
    for path in (
        "/dashboard/../../etc/passwd",
        "/dashboard/%2e%2e%2fsampler.py",
        "/dashboard/__init__.py",
        "/dashboard/sampler.py",
        "/.well-known/../gateway/ops.py",
        "/x" * 3000,
    ):
        status, _, body, _ = await get(http, base + path)
        assert 400 <= status < 500, path
        assert "Traceback" not in body
    async with http.get(base + "/metrics", headers={"X-Big": "y" * 20_000}) as response:
        assert 400 <= response.status < 500
    async with http.request("TRACE", base + "/dashboard") as response:
        assert response.status == 405
    # garbage that is not HTTP at all
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"\x16\x03\x01\x02\x00" + bytes(range(256)) * 4 + b"\r\n\r\n")
    await writer.drain()
    await reader.read(1024)
    writer.close()
    await writer.wait_closed()
    assert (await get(http, base + "/healthz"))[0] == 200


async def test_failing_jwks_callback_is_a_bare_500(http: aiohttp.ClientSession) -> None:
    def broken() -> dict[str, Any]:
        raise RuntimeError("key store at /secret/path is unreadable")

    server = OpsServer(
        metrics=Metrics(CollectorRegistry()), jwks=broken, audit_vkey=str, ready=lambda: True
    )
    port = await server.start("127.0.0.1", 0)
    try:
        status, _, body, headers = await get(http, f"http://127.0.0.1:{port}/.well-known/jwks.json")
        assert status == 500
        assert "secret" not in body
        assert "Content-Security-Policy" in headers
    finally:
        await server.stop()


async def test_stop_releases_the_port_and_the_sampler() -> None:
    server = OpsServer(
        metrics=Metrics(CollectorRegistry()), jwks=dict, audit_vkey=str, ready=lambda: True
    )
    port = await server.start("127.0.0.1", 0)
    with pytest.raises(RuntimeError):
        await server.start("127.0.0.1", 0)
    await server.stop()
    await server.stop()
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "ops-dashboard-sampler"]
