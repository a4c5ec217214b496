"""Bounding a department call by the caller's deadline and the department's own ceiling."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from adapters.base import DepartmentTimeout


def budget(deadline: float, ceiling_s: float, department: str) -> float:
    """Seconds this call may take: the sooner of the caller's deadline (a `time.monotonic()`
    instant) and the department's configured timeout."""
    remaining = min(deadline - time.monotonic(), ceiling_s)
    if remaining <= 0:
        raise DepartmentTimeout(f"{department}: no time left before the deadline")
    return remaining


@asynccontextmanager
async def within(deadline: float, ceiling_s: float, department: str) -> AsyncIterator[None]:
    """Everything inside finishes in time or raises `DepartmentTimeout`; the work in flight
    is cancelled, so no task outlives the call."""
    seconds = budget(deadline, ceiling_s, department)
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError:
        raise DepartmentTimeout(f"{department}: no answer within {seconds * 1000:.0f} ms") from None
