"""Single-flight: concurrent identical fetches share one call to the department.

When a caller asks for a key that is already being fetched, it joins that call instead of
starting another; the answer (or error) goes to everyone waiting. Nothing is cached: once the
call ends, the next caller starts a new one.

Deadlines, the choice made here: the shared call runs as its own task and its deadline is the
LATEST among its waiters (`Flight.deadline` only ever moves later as callers join). Each
waiter watches the task through `asyncio.shield` under its own deadline, so a caller with a
short deadline stops waiting on time without cutting short a caller who can wait longer, and
a caller who joins late is never bound by the first caller's short deadline. The worker reads
`Flight.deadline` at the start of each attempt, so an extension counts from the next attempt
on (the attempt in flight has already told the department its deadline). When the last waiter
leaves (deadline or cancellation), the call is cancelled: nobody wants its answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Hashable
from typing import Any, Generic, TypeVar

from gateway.resilience._time import loop_instant

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


class Flight:
    """One shared call in progress."""

    __slots__ = ("deadline", "waiters")

    def __init__(self, deadline: float) -> None:
        #: `time.monotonic()` instant: the latest deadline of anyone waiting
        self.deadline = deadline
        self.waiters = 0


class SingleFlight(Generic[K, T]):
    def __init__(self) -> None:
        self._flights: dict[K, tuple[Flight, asyncio.Task[T]]] = {}
        #: every call task not yet finished, including abandoned ones still unwinding
        self._tasks: set[asyncio.Task[T]] = set()
        #: callers that joined a call already in flight
        self.coalesced = 0

    def __len__(self) -> int:
        """Calls still running, including abandoned ones that are unwinding."""
        return len(self._tasks)

    async def do(
        self, key: K, deadline: float, work: Callable[[Flight], Coroutine[Any, Any, T]]
    ) -> T:
        """`work(flight)`'s result, shared with every concurrent caller of the same `key`.
        Raises `TimeoutError` when `deadline` (a `time.monotonic()` instant) passes first."""
        entry = self._flights.get(key)
        if entry is None:
            flight = Flight(deadline)
            task = asyncio.get_running_loop().create_task(work(flight))
            entry = self._flights[key] = (flight, task)
            self._tasks.add(task)
            task.add_done_callback(lambda t: self._finished(key, t))
        else:
            flight, task = entry
            self.coalesced += 1
            flight.deadline = max(flight.deadline, deadline)
        flight.waiters += 1
        try:
            async with asyncio.timeout_at(loop_instant(deadline)):
                return await asyncio.shield(task)
        finally:
            flight.waiters -= 1
            if flight.waiters == 0 and not task.done():
                # Forget it now, not when the cancellation lands: a caller arriving in
                # between must start a fresh call, not join one that is being torn down.
                self._forget(key, task)
                task.cancel()

    async def cancel_all(self) -> None:
        """Cancel every call in flight and wait until each has unwound."""
        tasks = list(self._tasks)
        self._flights.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _forget(self, key: K, task: asyncio.Task[T]) -> None:
        entry = self._flights.get(key)
        if entry is not None and entry[1] is task:
            del self._flights[key]

    def _finished(self, key: K, task: asyncio.Task[T]) -> None:
        self._forget(key, task)
        self._tasks.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: waiters that left early never will
