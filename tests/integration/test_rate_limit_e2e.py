"""Per-caller rate limits end to end: a caller over its budget gets RESOURCE_EXHAUSTED with
RetryInfo and ErrorInfo RATE_LIMITED, audited as denied and counted by reason; with Redis two
gateways share one budget; an unreachable Redis fails closed or open as configured."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
from google.rpc import error_details_pb2
from redis.asyncio import Redis

from proofless.v1 import verification_pb2 as pb
from proofless.v1 import verification_pb2_grpc as pb_grpc
from tests.support.stack import ROOT, Stack, rich_details

POLICY = ROOT / "deploy" / "config" / "policy.toml"
LIMITED = "fuan-hrss"
OTHER = "quangang-window"
DEMO_RATE = "rate = { per_second = 50, burst = 100 }"
#: three quick calls, then one token every ten seconds: no refill during a test
TINY_RATE = "rate = { per_second = 0.1, burst = 3 }"
BURST = 3
CLOSED_PORT_URL = "redis://127.0.0.1:1/0"


@pytest.fixture
def tiny_policy(tmp_path: Path) -> Path:
    text = POLICY.read_text()
    # the limited caller's own table, wherever other callers share its rate
    head, sep, tail = text.partition(f"[callers.{LIMITED}]")
    body, nxt, rest = tail.partition("\n[")
    assert body.count(DEMO_RATE) == 1, "the demo policy's fuan-hrss rate changed"
    path = tmp_path / "policy.toml"
    path.write_text(head + sep + body.replace(DEMO_RATE, TINY_RATE) + nxt + rest)
    return path


@pytest.fixture
def prefix() -> str:
    return f"proofless-test:{uuid.uuid4().hex}:"


@pytest_asyncio.fixture
async def redis_ratelimit(redis_url: str, prefix: str) -> AsyncIterator[dict[str, Any]]:
    """The [ratelimit] table for a Redis-backed gateway; this test's keys are deleted after."""
    yield {
        "backend": "redis",
        "redis_url": redis_url,
        "prefix": prefix,
        "timeout_ms": 2000,  # about sharing a budget, not about a slow CI box
    }
    client = Redis.from_url(redis_url)
    keys = [k async for k in client.scan_iter(match=f"{prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def list_items(
    stack: Stack, caller: str, request_id: str = ""
) -> pb.ListServiceItemsResponse:
    stub = pb_grpc.VerificationServiceStub(await stack.channel(caller))
    metadata = (("x-request-id", request_id),) if request_id else None
    response: pb.ListServiceItemsResponse = await stub.ListServiceItems(
        pb.ListServiceItemsRequest(), timeout=10, metadata=metadata
    )
    return response


async def assert_rate_limited(stack: Stack, caller: str = LIMITED) -> None:
    request_id = f"rl-{uuid.uuid4().hex}"
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await list_items(stack, caller, request_id)
    err = info.value
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    details = rich_details(err)
    [reason] = [d.reason for d in details if isinstance(d, error_details_pb2.ErrorInfo)]
    assert reason == "RATE_LIMITED"
    [retry] = [d for d in details if isinstance(d, error_details_pb2.RetryInfo)]
    # the next token is at most 1 / per_second away
    assert 0 < retry.retry_delay.ToTimedelta().total_seconds() <= 10
    log = stack.gateway.audit
    entries = [json.loads(e) for e in await log.entries(0, log.tree_size)]
    [entry] = [e for e in entries if e.get("request_id") == request_id]
    assert (entry["outcome"], entry["status"], entry["reason"]) == (
        "denied",
        "RESOURCE_EXHAUSTED",
        "RATE_LIMITED",
    )
    assert entry["caller"] == caller


def denials(stack: Stack, reason: str) -> float:
    value = stack.registry.get_sample_value("proofless_denials_total", {"reason": reason})
    return value or 0.0


async def test_local_limit_refuses_the_call_after_the_burst(
    make_stack: Callable[..., Any], tiny_policy: Path
) -> None:
    async with make_stack({"policy": {"file": str(tiny_policy)}}) as stack:
        for _ in range(BURST):
            assert (await list_items(stack, LIMITED)).caller == LIMITED
        await assert_rate_limited(stack)
        await assert_rate_limited(stack)
        assert denials(stack, "RATE_LIMITED") == 2
        # a record request is refused before any department is asked
        stub = pb_grpc.VerificationServiceStub(await stack.channel(LIMITED))
        req = pb.RecordRequest(
            context=pb.RequestContext(service_item="retirement", case_id="FA-1", purpose="p"),
            applicant=pb.Applicant(id_number=stack.scenarios["long_contributor"]),
        )
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.GetSocialSecurityRecord(req, timeout=10)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        # the budget is per caller: another caller is not affected
        for _ in range(BURST + 2):
            assert (await list_items(stack, OTHER)).caller == OTHER


@pytest.mark.redis
async def test_two_gateways_share_one_budget_through_redis(
    make_stack: Callable[..., Any],
    tiny_policy: Path,
    tmp_path: Path,
    redis_ratelimit: dict[str, Any],
) -> None:
    overrides = {"policy": {"file": str(tiny_policy)}, "ratelimit": redis_ratelimit}
    async with (
        make_stack(overrides, state=tmp_path / "a") as a,
        make_stack(overrides, state=tmp_path / "b") as b,
    ):
        assert a.gateway.address != b.gateway.address
        # the burst is spent across both replicas: two calls here, one there
        await list_items(a, LIMITED)
        await list_items(b, LIMITED)
        await list_items(a, LIMITED)
        # alone each would still have two tokens; together the budget is gone
        await assert_rate_limited(b)
        await assert_rate_limited(a)
        # another caller has its own bucket in the same Redis
        for _ in range(BURST + 1):
            await list_items(b, OTHER)


@pytest.mark.parametrize(
    ("failure_mode", "admitted"), [("closed", False), ("open", True)], ids=["closed", "open"]
)
async def test_unreachable_redis_fails_as_configured(
    make_stack: Callable[..., Any], failure_mode: str, admitted: bool
) -> None:
    overrides = {
        "ratelimit": {
            "backend": "redis",
            "redis_url": CLOSED_PORT_URL,
            "failure_mode": failure_mode,
            "prefix": f"proofless-test:{uuid.uuid4().hex}:",
        }
    }
    async with make_stack(overrides) as stack:
        if admitted:
            assert (await list_items(stack, OTHER)).caller == OTHER
            return
        request_id = f"rl-{uuid.uuid4().hex}"
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await list_items(stack, OTHER, request_id)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        [reason] = [
            d.reason for d in rich_details(info.value) if isinstance(d, error_details_pb2.ErrorInfo)
        ]
        assert reason == "RATE_LIMITER_UNAVAILABLE"
        assert "6379" not in (info.value.details() or "")  # no infrastructure detail leaks
        log = stack.gateway.audit
        [entry] = [
            e
            for e in (json.loads(raw) for raw in await log.entries(0, log.tree_size))
            if e.get("request_id") == request_id
        ]
        assert (entry["outcome"], entry["reason"]) == ("denied", "RATE_LIMITER_UNAVAILABLE")
