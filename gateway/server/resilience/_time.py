"""Deadlines travel as `time.monotonic()` instants (the adapter protocol); asyncio timers run
on `loop.time()`. The default loop uses the same clock on Linux, but a custom loop (uvloop,
a test loop) need not, so every conversion goes through the offset measured now."""

from __future__ import annotations

import asyncio
import time


def loop_instant(deadline: float) -> float:
    """The running loop's time that corresponds to the monotonic instant `deadline`."""
    return asyncio.get_running_loop().time() + (deadline - time.monotonic())
