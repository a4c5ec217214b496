"""Calls refused at the door (a revoked or expired certificate, no caller identity): audited,
but not with one fsync'ed entry per call.

A peer whose certificate was revoked keeps calling until someone turns it off; if each of its
calls wrote and fsync'ed an entry, it could fill the audit volume and take the disk's write
budget from every approval system. Each (certificate serial, reason) has a token bucket of
entries (BURST at once, then PER_SECOND): a refusal with a token left is written as before;
one without is counted, and the next entry written for that peer and reason says how many
refused calls it stands for (`calls`, itself included). What is still counted at shutdown is
written then (`flush`), so the entries' `calls` add up to every refused call.

One entry per refused call is not needed for the write-ahead rule: a refused call discloses
nothing, so nothing leaves unlogged; what the log must still tell an auditor is who was
refused, why, when and how often, and it does.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.server.identity import Caller

#: entries a (serial, reason) may write at once, then per second
BURST = 10
PER_SECOND = 1.0
#: peers tracked one by one; past this, new ones share one bucket per reason
MAX_PEERS = 4096

#: the certificate the door is checking, for the refusal that may follow
_peer: contextvars.ContextVar[Caller | None] = contextvars.ContextVar(
    "proofless_rejected_peer", default=None
)

Key = tuple[int | None, str]


@dataclass
class _Bucket:
    tokens: float
    at: float
    counted: int = 0  # refusals not written since the last entry
    last: dict[str, Any] = field(default_factory=dict)  # the latest entry, for `flush`


class RejectedPeers:
    def __init__(
        self,
        append: Callable[[dict[str, Any]], Awaitable[Any]],
        *,
        burst: int = BURST,
        per_second: float = PER_SECOND,
        max_peers: int = MAX_PEERS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._append = append
        self._burst = burst
        self._rate = per_second
        self._max_peers = max_peers
        self._clock = clock
        self._buckets: dict[Key, _Bucket] = {}

    @staticmethod
    def checking(check: Callable[[Caller], None]) -> Callable[[Caller], None]:
        """`check` (the door's certificate check), remembering which certificate it saw."""

        def check_and_remember(caller: Caller) -> None:
            _peer.set(caller)
            check(caller)

        return check_and_remember

    async def audit(self, entry: dict[str, Any], reason: str) -> bool:
        """Write `entry` for a refused call, or count it; True when written."""
        caller = _peer.get()
        serial = caller.serial if caller is not None else None
        if serial is not None:
            entry = {**entry, "peer_serial": format(serial, "x")}
        key: Key = (serial, reason)
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._max_peers:
                key = (None, reason)
                bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket(float(self._burst), now)
        bucket.tokens = min(float(self._burst), bucket.tokens + (now - bucket.at) * self._rate)
        bucket.at = now
        if bucket.tokens < 1:
            bucket.counted += 1
            bucket.last = entry
            return False
        bucket.tokens -= 1
        calls, bucket.counted = bucket.counted + 1, 0
        bucket.last = entry
        await self._append({**entry, "calls": calls} if calls > 1 else entry)
        return True

    async def flush(self) -> None:
        """Write what is still counted (at shutdown, before the log closes)."""
        for bucket in self._buckets.values():
            if bucket.counted:
                calls, bucket.counted = bucket.counted, 0
                await self._append({**bucket.last, "calls": calls})
