"""Red-team items 13 and 15 (the ops server): its settings were silently dropped, and it
served per-caller and per-item counts to anyone who reached it.

Item 13: `OpsServer.start` handed aiohttp `handler_args={"max_line_size": 4096, ...}` as a
keyword of the runner, where aiohttp 3.14 passes it on to the request handler, fails, and
falls back to its defaults with a warning: header lines up to aiohttp's 8 KiB passed, and
`access_log=None` was lost with the rest, so aiohttp wrote its own access line for every ops
request. Both are checked here on the ops port of a real gateway.

Item 15 (ops): the deploy files bound the ops server to 0.0.0.0, and /metrics and /dashboard
sit beside the health and key endpoints there: calls per caller and per service item,
including the covert fraud review. The internal endpoints now have their own listener
(`ops_internal_listen`), a public `ops_listen` without one is a configuration error, and the
deploy files (compose, Prometheus, the Kubernetes manifests and their NetworkPolicy) agree.
"""

from __future__ import annotations

import asyncio
import logging
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from gateway.config import host_port
from gateway.domain.errors import ConfigError
from proofless.v1 import verification_pb2 as pb
from tests.support.stack import ROOT, Stack

module_loop = pytest.mark.asyncio(loop_scope="module")


async def exchange(port: int, request: bytes) -> tuple[int, bytes]:
    """Send one raw HTTP/1.1 request to 127.0.0.1:`port`; the answer's status and bytes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()
        await writer.wait_closed()
    assert answer.startswith(b"HTTP/1."), answer[:100]
    return int(answer.split(b" ", 2)[1]), answer


def health_with_header(size: int) -> bytes:
    return (
        b"GET /healthz HTTP/1.1\r\nHost: ops\r\nConnection: close\r\n"
        + b"X-Padding: "
        + b"p" * size
        + b"\r\n\r\n"
    )


@module_loop
async def test_a_header_line_over_4_kib_is_refused(stack: Stack) -> None:
    # under the limit: answered
    status, _ = await exchange(stack.gateway.ops_port, health_with_header(3 * 1024))
    assert status == 200
    # 5 KiB: over the ops server's 4 KiB, under aiohttp's 8 KiB default
    status, answer = await exchange(stack.gateway.ops_port, health_with_header(5 * 1024))
    assert status in (400, 431), answer[:200]
    assert b"Traceback" not in answer
    # and the server keeps answering
    status, _ = await exchange(stack.gateway.ops_port, health_with_header(0))
    assert status == 200


@module_loop
async def test_aiohttp_writes_no_access_line_and_no_fallback_warning(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for path in (b"/healthz", b"/readyz", b"/.well-known/jwks.json", b"/nowhere"):
        request = b"GET " + path + b" HTTP/1.1\r\nHost: ops\r\nConnection: close\r\n\r\n"
        status, _ = await exchange(stack.gateway.ops_port, request)
        assert status in (200, 404)
    aiohttp_records = [r for r in caplog.records if r.name.startswith("aiohttp")]
    assert not [r for r in aiohttp_records if r.name == "aiohttp.access"]
    assert not [r for r in aiohttp_records if "custom kwargs" in r.getMessage()]


# ---- item 15: public and internal ops endpoints ---------------------------------------------

PUBLIC = ("/healthz", "/readyz", "/.well-known/jwks.json", "/audit/vkey")
INTERNAL = ("/metrics", "/dashboard", "/dashboard/", "/dashboard/data.json", "/")


async def get(port: int, path: str) -> tuple[int, bytes]:
    request = f"GET {path} HTTP/1.1\r\nHost: ops\r\nConnection: close\r\n\r\n"
    return await exchange(port, request.encode())


@module_loop
async def test_the_public_ops_port_serves_no_counts(make_stack: Callable[..., Any]) -> None:
    split = {"server": {"ops_listen": "127.0.0.1:0", "ops_internal_listen": "127.0.0.1:0"}}
    async with make_stack(split) as s:
        stub = await s.verification("quangang-window")
        with pytest.raises(grpc.aio.AioRpcError):  # a call: the counts now name this caller
            await stub.GetHouseholdRecord(pb.RecordRequest(), timeout=5)
        public, internal = s.gateway.ops_port, s.gateway.ops_internal_port
        assert public != internal
        for path in PUBLIC:
            assert (await get(public, path))[0] == 200, path
        for path in INTERNAL:
            status, answer = await get(public, path)
            assert status == 404, path
            assert b"quangang-window" not in answer
        status, metrics = await get(internal, "/metrics")
        assert status == 200
        assert b'caller="quangang-window"' in metrics
        assert (await get(internal, "/dashboard/data.json"))[0] == 200
        for path in PUBLIC:  # nothing public on the internal port either
            assert (await get(internal, path))[0] == 404, path


@module_loop
async def test_a_public_ops_listen_without_an_internal_listener_is_refused(
    make_stack: Callable[..., Any],
) -> None:
    with pytest.raises(ConfigError, match="ops_internal_listen"):
        async with make_stack({"server": {"ops_listen": "0.0.0.0:0"}}):
            pass


@module_loop
async def test_on_loopback_one_ops_port_serves_both(stack: Stack) -> None:
    """The dev setup (and `make run`'s printed URLs): one loopback port for everything."""
    assert stack.config.server.ops_internal_listen == ""
    assert stack.gateway.ops_internal_port == stack.gateway.ops_port
    for path in ("/healthz", "/.well-known/jwks.json", "/metrics", "/dashboard/data.json"):
        assert (await get(stack.gateway.ops_port, path))[0] == 200, path


# ---- item 15: the deploy files agree ----------------------------------------------------------

DEPLOY = ROOT / "deploy"


def toml_server(path: Path) -> dict[str, Any]:
    server: dict[str, Any] = tomllib.loads(path.read_text())["server"]
    return server


def port_of(address: str) -> int:
    return host_port(address)[1]


def test_container_configs_put_the_internal_endpoints_on_their_own_port() -> None:
    for name in ("docker", "k8s"):
        server = toml_server(DEPLOY / name / "gateway.toml")
        assert port_of(server["ops_listen"]) == 9464, name
        assert port_of(server["ops_internal_listen"]) == 9465, name
    dev = toml_server(DEPLOY / "config" / "gateway.toml")
    assert host_port(dev["ops_listen"])[0] == "127.0.0.1"
    assert dev.get("ops_internal_listen", "") == ""


def test_compose_and_prometheus_scrape_the_internal_port_published_on_loopback_only() -> None:
    compose = (DEPLOY / "docker-compose.yml").read_text()
    published = re.findall(r'^\s+- "([0-9.:]+)"', compose, re.MULTILINE)
    assert "9464:9464" in published
    assert "127.0.0.1:9465:9465" in published
    assert not [p for p in published if p.endswith(":9465") and not p.startswith("127.0.0.1:")]
    prometheus = (DEPLOY / "prometheus" / "prometheus.yml").read_text()
    assert re.findall(r'targets: \["gateway:(\d+)"\]', prometheus) == ["9465"]


def test_kubernetes_admits_metrics_from_the_monitoring_namespace_only() -> None:
    yaml = pytest.importorskip("yaml")
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    assert "k8s/networkpolicy.yaml" in kustomization["resources"]
    docs = [
        d
        for r in kustomization["resources"]
        for d in yaml.safe_load_all((DEPLOY / r).read_text())
        if d
    ]
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    (sts,) = by_kind["StatefulSet"]
    pod = sts["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    server = toml_server(DEPLOY / "k8s" / "gateway.toml")
    assert ports == {
        "grpc": port_of(server["listen"]),
        "ops": port_of(server["ops_listen"]),
        "metrics": port_of(server["ops_internal_listen"]),
    }
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(ports["metrics"])
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["port"] == "ops"
    # the ClusterIP Service callers use carries no metrics port
    services = {s["metadata"]["name"]: s for s in by_kind["Service"]}
    assert {p["name"] for p in services["proofless"]["spec"]["ports"]} == {"grpc", "ops"}

    (policy,) = by_kind["NetworkPolicy"]
    spec = policy["spec"]
    assert spec["podSelector"]["matchLabels"] == sts["spec"]["selector"]["matchLabels"]
    assert spec["policyTypes"] == ["Ingress"]
    from_anywhere = [r for r in spec["ingress"] if not r.get("from")]
    restricted = [r for r in spec["ingress"] if r.get("from")]
    assert [sorted(p["port"] for p in r["ports"]) for r in from_anywhere] == [["grpc", "ops"]]
    (monitoring,) = restricted
    assert [p["port"] for p in monitoring["ports"]] == ["metrics"]
    assert monitoring["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
