"""Red-team item 13: the ops server's settings were silently dropped.

`OpsServer.start` handed aiohttp `handler_args={"max_line_size": 4096, ...}` as a keyword of
the runner, where aiohttp 3.14 passes it on to the request handler, fails, and falls back to
its defaults with a warning: header lines up to aiohttp's 8 KiB passed, and `access_log=None`
was lost with the rest, so aiohttp wrote its own access line for every ops request. Both are
checked here on the ops port of a real gateway.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from tests.support.stack import Stack

pytestmark = pytest.mark.asyncio(loop_scope="module")


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
