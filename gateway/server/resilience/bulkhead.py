"""A bulkhead: at most `max_concurrency` calls to one department at once, at most
`max_queue` more waiting for a slot, and everyone beyond that refused at once.

One slow department then holds at most its own slots and queue, never every task and
connection of the gateway (Nygard, "Release It!", ch. 5, Bulkheads).
"""

from __future__ import annotations

import asyncio

from adapters.base import DepartmentUnavailable


class DepartmentOverloaded(DepartmentUnavailable):
    """The department's bulkhead and its queue are full: the call was not attempted."""

    reason = "DEPARTMENT_OVERLOADED"


class Bulkhead:
    def __init__(self, name: str, max_concurrency: int, max_queue: int) -> None:
        self.name = name
        self.max_concurrency = max_concurrency
        self.max_queue = max_queue
        self._slots = asyncio.Semaphore(max_concurrency)
        self._active = 0
        self._waiting = 0
        #: calls refused because the queue was full
        self.rejected = 0

    @property
    def active(self) -> int:
        return self._active

    @property
    def waiting(self) -> int:
        return self._waiting

    async def acquire(self) -> None:
        """Take a slot, waiting in FIFO order if none is free; `DepartmentOverloaded` when the
        queue is full. Cancellation while waiting leaves no slot taken."""
        if self._slots.locked():
            if self._waiting >= self.max_queue:
                self.rejected += 1
                raise DepartmentOverloaded(f"{self.name}: too many calls in flight")
            self._waiting += 1
            try:
                await self._slots.acquire()
            finally:
                self._waiting -= 1
        else:
            await self._slots.acquire()  # free: returns without suspending
        self._active += 1

    def release(self) -> None:
        self._active -= 1
        self._slots.release()
