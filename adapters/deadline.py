"""Bounding a department call by the caller's deadline and the department's own ceiling."""

from __future__ import annotations

import asyncio
import time
from types import TracebackType

from adapters.base import DepartmentTimeout


def budget(deadline: float, ceiling_s: float, department: str) -> float:
    """Seconds this call may take: the sooner of the caller's deadline (a `time.monotonic()`
    instant) and the department's configured timeout."""
    remaining = min(deadline - time.monotonic(), ceiling_s)
    if remaining <= 0:
        raise DepartmentTimeout(f"{department}: no time left before the deadline")
    return remaining


class within:
    """Everything inside finishes in time or raises `DepartmentTimeout`; the work in flight
    is cancelled, so no task outlives the call. A TimeoutError raised inside (an HTTP
    client's own read timeout) is reported the same way.

    A class, not an `asynccontextmanager`: it runs on every department call, and the
    generator machinery cost as much as the timer it wraps (BENCHMARKS.md)."""

    __slots__ = ("_department", "_seconds", "_timeout")

    def __init__(self, deadline: float, ceiling_s: float, department: str) -> None:
        self._seconds = budget(deadline, ceiling_s, department)
        self._department = department
        self._timeout = asyncio.timeout(self._seconds)

    async def __aenter__(self) -> None:
        await self._timeout.__aenter__()

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self._timeout.__aexit__(kind, exc, tb)
        except TimeoutError:
            raise self._late() from None
        if kind is not None and issubclass(kind, TimeoutError):
            raise self._late() from None

    def _late(self) -> DepartmentTimeout:
        return DepartmentTimeout(
            f"{self._department}: no answer within {self._seconds * 1000:.0f} ms"
        )
