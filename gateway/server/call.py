"""One call, from arrival to its audit entry: the `Call` object every door (gRPC, HTTP/JSON)
makes for a request, and the rule that each call leaves exactly one audit entry.

The door (the gRPC interceptor, the HTTP handler) creates the Call with the request id, the
RPC and the transport, authenticates the caller onto it and publishes it in `current_call`
for the servicer; the servicer names the service item on it once the policy knows it (the
metrics label) and builds its `Access`, the audit record. `Audited.run` owns the rule:

    exactly one audit entry per call, granted, denied or failed; the reply MUST NOT leave
    before its entry is durably on disk (`AuditLog.append` returns only after fsync), and if
    the entry cannot be written the caller gets UNAVAILABLE and nothing unlogged is disclosed.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import grpc

from gateway.domain.access import DENIED, GRANTED, Access, outcome_of
from gateway.domain.errors import ProoflessError, Unavailable
from gateway.ops.metrics import Metrics
from gateway.ops.tracing import traced
from gateway.server.identity import Caller

log = logging.getLogger("proofless.service")

T = TypeVar("T")


@dataclass
class Call:
    """What the gateway knows of one request while it runs."""

    rpc: str
    request_id: str
    transport: str = "grpc"  # the door it came through: "grpc" or "http"
    caller: Caller | None = None
    service_item: str = ""  # named by the servicer once the policy knows the item
    access: Access | None = None


current_call: contextvars.ContextVar[Call] = contextvars.ContextVar("proofless_call")


class Cancelled(ProoflessError):
    """The call ended before its answer (the caller cancelled, or shutdown's grace period ran
    out). Only ever written to the audit log: there is nobody left to answer."""

    code = grpc.StatusCode.CANCELLED
    reason = "CANCELLED"


class AuditAppender(Protocol):
    """What the servicers need of the audit log (gateway.audit.log.AuditLog)."""

    origin: str

    async def append(self, entry: dict[str, Any]) -> Any: ...


class Audited:
    """Runs calls under the single-audit-entry rule and counts the ones in flight, so that
    shutdown can wait for every call to have written its entry before the log closes."""

    def __init__(self, audit: AuditAppender, metrics: Metrics) -> None:
        self._audit = audit
        self._metrics = metrics
        self._active = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def run(self, access: Access, body: Callable[[], Awaitable[T]]) -> T:
        """Run `body`, then make sure exactly one entry for `access` exists, success or not.
        `body` writes the granted entry itself (`append(access, None)`) just before it signs,
        so the proof can name the entry's index."""
        self._active += 1
        self._idle.clear()
        try:
            return await body()
        # Each branch writes the entry only if none was started: a failure after a granted
        # entry (or inside the append itself) must not leave a second one.
        except ProoflessError as err:
            if not access.appending:
                await self.append(access, err)
            raise
        except asyncio.CancelledError:
            # The caller went away, or shutdown's grace period ran out: the request still
            # leaves its one entry.
            if not access.appending:
                await self.append(access, Cancelled("the call was cancelled"))
            raise
        except Exception as exc:
            # An unexpected failure still leaves its entry; the door answers INTERNAL.
            log.exception(
                "unexpected failure", extra={"rpc": access.rpc, "request_id": access.request_id}
            )
            if not access.appending:
                await self.append(access, Unavailable("internal error", reason="INTERNAL"))
            raise exc
        finally:
            self._active -= 1
            if not self._active:
                self._idle.set()

    async def append(self, access: Access, err: ProoflessError | None) -> int:
        """Write the call's one entry; its index in the log."""
        entry = access.entry(
            outcome=GRANTED if err is None else outcome_of(err),
            code=grpc.StatusCode.OK if err is None else err.code,
            reason="" if err is None else err.reason,
            latency_us=int((time.perf_counter() - access.started) * 1e6),
        )
        t0 = time.perf_counter()
        access.appending = True
        try:
            with traced("audit.append"):
                receipt = await self._audit.append(entry)
        except ProoflessError:
            raise
        except Exception as exc:
            raise Unavailable(
                "the audit log cannot be written", reason="AUDIT_UNAVAILABLE"
            ) from exc
        self._metrics.audit_appended(time.perf_counter() - t0, int(receipt.index) + 1)
        # every entry audited as denied is counted by its reason (policy, consent, rate limit)
        if err is not None and outcome_of(err) == DENIED:
            self._metrics.denial(err.reason)
        return int(receipt.index)

    async def drained(self) -> None:
        """Return once no call is between arrival and its audit entry.

        `server.stop(grace)` cancels the calls still running when the grace period ends, but
        their handlers then still write their CANCELLED entries: the audit log MUST NOT close
        before they have (the server bounds this wait).
        """
        await self._idle.wait()


def new_access(call: Call, policy_version: str, catalogue_version: str) -> Access:
    """The audit record of `call`, as far as the door knows it."""
    access = Access(
        rpc=call.rpc,
        request_id=call.request_id,
        caller=call.caller.id if call.caller is not None else "unauthenticated",
        time=datetime.now(UTC),
        started=time.perf_counter(),
        policy=policy_version,
        catalogue=catalogue_version,
        transport=call.transport,
    )
    call.access = access
    return access
