"""RejectedPeers: refused calls are audited a few a second per (serial, reason), and the
entries' `calls` add up to every refusal."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from gateway.server.identity import Caller
from gateway.server.rejections import RejectedPeers


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def caller(serial: int) -> Caller:
    return Caller("quangang-window", frozenset(), serial, datetime.now(UTC))


async def refuse(peers: RejectedPeers, serial: int | None, reason: str, n: int) -> int:
    """`n` refusals at the door, each in its own context as gRPC runs calls; entries written."""
    written = 0
    for i in range(n):

        async def one(i: int = i) -> bool:
            if serial is not None:
                peers.checking(lambda c: None)(caller(serial))
            return await peers.audit({"request_id": f"r{i}", "reason": reason}, reason)

        written += await asyncio.create_task(one())  # a context of its own
    return written


async def test_a_burst_then_one_a_second_and_the_rest_counted() -> None:
    entries: list[dict[str, Any]] = []

    async def append(entry: dict[str, Any]) -> None:
        entries.append(entry)

    clock = Clock()
    peers = RejectedPeers(append, burst=3, per_second=1.0, clock=clock)
    assert await refuse(peers, 0xABC, "CERTIFICATE_REVOKED", 10) == 3
    assert [e.get("calls", 1) for e in entries] == [1, 1, 1]
    assert {e["peer_serial"] for e in entries} == {"abc"}
    clock.now += 1.0
    assert await refuse(peers, 0xABC, "CERTIFICATE_REVOKED", 5) == 1
    assert entries[-1]["calls"] == 8  # itself and the 7 counted before it
    # another serial, another reason: buckets of their own
    assert await refuse(peers, 0xDEF, "CERTIFICATE_REVOKED", 1) == 1
    assert await refuse(peers, 0xABC, "CERTIFICATE_EXPIRED", 1) == 1
    await peers.flush()
    assert entries[-1]["calls"] == 4  # the 4 counted after the last entry
    assert sum(e.get("calls", 1) for e in entries if e["peer_serial"] == "abc") == 16
    await peers.flush()  # nothing left to write
    assert sum(e.get("calls", 1) for e in entries) == 17


async def test_many_peers_share_one_bucket_per_reason() -> None:
    written: list[dict[str, Any]] = []

    async def append(entry: dict[str, Any]) -> None:
        written.append(entry)

    peers = RejectedPeers(append, burst=1, per_second=1.0, max_peers=2, clock=Clock())
    for serial in range(10):
        await refuse(peers, serial, "CERTIFICATE_REVOKED", 1)
    assert len(written) == 3  # two peers of their own, then the shared bucket's one token
    assert len(peers._buckets) == 3
    await refuse(peers, None, "NO_CALLER_IDENTITY", 2)  # no certificate to name
    assert "peer_serial" not in written[-1]
    await peers.flush()
    assert sum(e.get("calls", 1) for e in written) == 12
