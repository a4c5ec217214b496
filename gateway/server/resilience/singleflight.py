"""Single-flight: concurrent identical fetches share one call to the department.

When a caller asks for a key that is already being fetched, it joins that call instead of
starting another; the answer (or error) goes to everyone waiting. Nothing is cached: once the
call ends, the next caller starts a new one.

Deadlines, the choice made here: the shared call's deadline is the LATEST among its waiters
(`Flight.deadline` only ever moves later as callers join). The worker reads `Flight.deadline`
at the start of each attempt, so an extension counts from the next attempt on (the attempt in
flight has already told the department its deadline).

Fast path (profiled: a task, a shield and a second timeout were ~10 % of the gateway's own
CPU per request): the first caller, the leader, runs the call itself, in its own task, and
needs no timer of its own while it is alone: every attempt is bounded by `Flight.deadline`,
which is then its deadline. Callers who join await the leader's future through
`asyncio.shield` under their own deadline, so a short joiner stops waiting on time without
cutting the call; a joiner who extends the deadline arms the leader's own deadline (an
`asyncio.Timeout` the leader entered unarmed), so the leader still leaves on time. When the
leader leaves before the call ends (its deadline, or its caller cancelled), the call in its
task ends with it: the joiners still waiting start (or join) a fresh call under their own
deadlines, so a caller who joins late is never bound by the first caller's short deadline.
When the leader leaves, nobody else waiting, the call is cancelled: nobody wants its answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Hashable
from typing import Any, Generic, TypeVar

from gateway.server.resilience._time import loop_instant

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


class Flight:
    """One shared call in progress."""

    __slots__ = ("closing", "deadline", "leader", "leader_deadline", "timeout", "waiters")

    def __init__(self, deadline: float) -> None:
        #: `time.monotonic()` instant: the latest deadline of anyone waiting
        self.deadline = deadline
        #: callers waiting besides the leader
        self.waiters = 0
        self.leader_deadline = deadline
        self.leader: asyncio.Task[Any] | None = None
        #: the leader's own deadline, armed only once someone extends `deadline`
        self.timeout: asyncio.Timeout | None = None
        self.closing = False


class _LeaderLeft(Exception):
    """The leader left before the call ended: the joiners start or join a fresh call."""


class SingleFlight(Generic[K, T]):
    def __init__(self) -> None:
        self._flights: dict[K, tuple[Flight, asyncio.Future[T]]] = {}
        #: every call not yet finished, with the future it resolves when it has unwound
        self._live: dict[Flight, asyncio.Future[T]] = {}
        #: callers that joined a call already in flight
        self.coalesced = 0

    def __len__(self) -> int:
        """Calls still running, including abandoned ones that are unwinding."""
        return len(self._live)

    async def do(
        self, key: K, deadline: float, work: Callable[[Flight], Coroutine[Any, Any, T]]
    ) -> T:
        """`work(flight)`'s result, shared with every concurrent caller of the same `key`.
        Raises `TimeoutError` when `deadline` (a `time.monotonic()` instant) passes first."""
        joined = False
        while True:
            entry = self._flights.get(key)
            if entry is None:
                return await self._lead(key, deadline, work)
            flight, future = entry
            if not joined:
                joined = True
                self.coalesced += 1
            if deadline > flight.deadline:
                flight.deadline = deadline
                if flight.timeout is not None and flight.timeout.when() is None:
                    flight.timeout.reschedule(loop_instant(flight.leader_deadline))
            flight.waiters += 1
            try:
                async with asyncio.timeout_at(loop_instant(deadline)):
                    return await asyncio.shield(future)
            except _LeaderLeft:
                continue
            finally:
                flight.waiters -= 1

    async def _lead(
        self, key: K, deadline: float, work: Callable[[Flight], Coroutine[Any, Any, T]]
    ) -> T:
        flight = Flight(deadline)
        flight.leader = asyncio.current_task()
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._flights[key] = (flight, future)
        self._live[flight] = future
        try:
            async with asyncio.timeout(None) as timeout:
                flight.timeout = timeout
                # One loop iteration before the call, as a task's first step would wait: the
                # callers arriving in this same iteration join it even when the department
                # answers without suspending (an in-memory adapter, a cached refusal).
                await asyncio.sleep(0)
                result = await work(flight)
        except BaseException as exc:
            self._forget(key, flight)
            if flight.closing and isinstance(exc, asyncio.CancelledError):
                # close() cancelled the call, not this caller: the adapter answers
                # "closing", as for every joiner (whose future is cancelled)
                if flight.leader is not None:
                    flight.leader.uncancel()
                future.cancel()
            elif isinstance(exc, asyncio.CancelledError) or (
                isinstance(exc, TimeoutError) and timeout.expired()
            ):
                future.set_exception(_LeaderLeft())
                future.exception()  # retrieved: nobody may be left to await it
            else:
                future.set_exception(exc)
                future.exception()
            raise
        finally:
            del self._live[flight]
        self._forget(key, flight)
        future.set_result(result)
        return result

    async def cancel_all(self) -> None:
        """Cancel every call in flight and wait until each has unwound."""
        live = dict(self._live)
        self._flights.clear()
        for flight in live:
            flight.closing = True
            if flight.leader is not None:
                flight.leader.cancel()
        await asyncio.gather(*live.values(), return_exceptions=True)

    def _forget(self, key: K, flight: Flight) -> None:
        entry = self._flights.get(key)
        if entry is not None and entry[0] is flight:
            del self._flights[key]
