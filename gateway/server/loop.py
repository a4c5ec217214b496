"""The event loop `proofless serve` runs on: `[server] event_loop`, "uvloop" by default.

uvloop (libuv under asyncio's API) answers the same calls with less of the loop's own CPU:
`make bench` measures the gateway on both loops in one run (BENCHMARKS.md, "uvloop"), and
`serve` takes the one that gives more requests per core. "asyncio" is the standard loop, for
a platform without uvloop's wheels or to rule the loop out while debugging. This is the one
place a serving process enters the loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from gateway.domain.errors import ConfigError

T = TypeVar("T")

LOOPS = ("uvloop", "asyncio")


def run(main: Coroutine[Any, Any, T], loop: str = "uvloop") -> T:
    """`asyncio.run(main)` on the loop `[server] event_loop` names."""
    if loop == "uvloop":
        try:
            import uvloop  # noqa: PLC0415 - the serving loop only, chosen by configuration
        except ImportError:
            main.close()
            raise ConfigError(
                '[server] event_loop = "uvloop" but uvloop is not installed on this '
                'platform; install it or set event_loop = "asyncio"'
            ) from None
        return uvloop.run(main)
    if loop != "asyncio":
        main.close()
        raise ConfigError(f"[server] event_loop must be one of {', '.join(LOOPS)}")
    return asyncio.run(main)
