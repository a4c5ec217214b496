"""What every door does for a call, whatever the wire: gRPC (gateway.server.interceptors) and
HTTP/JSON (gateway.server.http_door) both go through one `Door`.

A door opens a `Visit` for each request (its request id, its `Call` published in
`current_call`, the in-flight gauge), admits the caller from its client certificate (the
identity in the certificate's URI SAN, then `check_caller` for revocation and expiry; a
refused caller leaves an audit entry through `on_rejected`), and closes the visit with the
status the caller got: one metrics sample labelled with the transport, one access-log line and,
when the gateway traces (gateway.ops.tracing), the call's SERVER span, which continues the
caller's W3C trace context and is the parent of the spans the servicer opens. What happens
between admission and closing (the servicer) is the same code for both doors.
"""

from __future__ import annotations

import contextvars
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import grpc

from gateway.domain.errors import ProoflessError, Unauthenticated
from gateway.domain.vocabulary import outcome_of
from gateway.ops.logging import PERSONAL_NUMBER, log_fields
from gateway.ops.metrics import Metrics
from gateway.ops.tracing import OFF, HttpRoute, ServerSpan, Tracing, end_server_span
from gateway.server.call import Call, current_call
from gateway.server.identity import Caller, caller_from_pem, current_caller

log = logging.getLogger("proofless.rpc")

current_request_id: contextvars.ContextVar[str] = contextvars.ContextVar(
    "proofless_request_id", default=""
)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# A resident ID (18 or 15 digits) or a mobile number standing as a word of the token. Bounded
# by letters too, unlike the log redaction: a random hex id has digit runs between its letters.
_PERSONAL_WORD = re.compile(rf"(?<![0-9A-Za-z]){PERSONAL_NUMBER}(?![0-9A-Za-z])")

CheckCaller = Callable[[Caller], None]
OnRejected = Callable[[str, str, ProoflessError], Awaitable[None]]


def request_id_from(metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
    """The caller's x-request-id when it is a sane token, else a fresh one.

    A token with a resident ID or a mobile number as one of its words is replaced too: the
    request id is written in clear into the audit entry, the access log and the reply's
    trailers, and a careless client passing an applicant's ID number as its request id must
    not put it there. `metadata` is gRPC metadata or HTTP headers, keys in lower case.
    """
    for key, value in metadata or ():
        if (
            key == "x-request-id"
            and isinstance(value, str)
            and _REQUEST_ID.match(value)
            and not _PERSONAL_WORD.search(value)
        ):
            return value
    return os.urandom(16).hex()  # uuid4().hex's shape at a quarter of its cost


@dataclass
class Visit:
    """One request between its arrival at a door and its answer."""

    call: Call
    started: float
    caller_id: str = "unauthenticated"
    span: ServerSpan | None = None


class Door:
    """The request id, identity, revocation check, metrics and access log of every call."""

    def __init__(
        self,
        metrics: Metrics,
        *,
        check_caller: CheckCaller = lambda caller: None,
        on_rejected: OnRejected | None = None,
        access_log: bool = True,
        tracing: Tracing = OFF,
    ) -> None:
        """`check_caller` raises for a revoked or expired certificate (CRL, clock);
        `on_rejected(rpc, request_id, error)` audits calls refused before any handler ran."""
        self.metrics = metrics
        self.check_caller = check_caller
        self.on_rejected = on_rejected
        self.access_log = access_log
        self.tracing = tracing

    def open(
        self,
        rpc: str,
        request_id: str,
        transport: str,
        *,
        method: str = "",
        headers: Iterable[tuple[str, str | bytes]] | None = None,
        http: HttpRoute | None = None,
    ) -> Visit:
        """A request for `rpc` arrived: publish its Call for the servicer and count it.
        `method` ("pkg.Service/Method"), the request's `headers` (gRPC metadata or HTTP
        headers, for the caller's trace context) and the `http` route name its span."""
        current_request_id.set(request_id)
        call = Call(rpc=rpc, request_id=request_id, transport=transport)
        current_call.set(call)
        self.metrics.request_started(rpc)
        visit = Visit(call=call, started=time.perf_counter())
        if self.tracing.on:
            visit.span = self.tracing.server_span(
                method or rpc, request_id, transport, headers, http
            )
        return visit

    async def admit(self, visit: Visit, pem: bytes | None) -> Caller:
        """The caller named by the client certificate `pem`, if it may call at all; a refusal
        is audited (`on_rejected`) and raised as UNAUTHENTICATED."""
        try:
            if not pem:
                raise Unauthenticated(
                    "a client certificate is required", reason="NO_CLIENT_CERTIFICATE"
                )
            caller = caller_from_pem(pem)
            self.check_caller(caller)
        except ProoflessError as err:
            if self.on_rejected is not None:
                await self.on_rejected(visit.call.rpc, visit.call.request_id, err)
            raise
        visit.caller_id = caller.id
        visit.call.caller = caller
        current_caller.set(caller)
        return caller

    def close(self, visit: Visit, code: grpc.StatusCode, *, http_status: int = 0) -> None:
        """The request left with status `code` (`http_status` on the HTTP/JSON door): one
        metrics sample, one access-log line, the end of its span."""
        seconds = time.perf_counter() - visit.started
        outcome = outcome_of(code)
        call = visit.call
        if visit.span is not None:
            end_server_span(
                visit.span,
                code,
                caller=visit.caller_id,
                service_item=call.service_item,
                outcome=outcome,
                http_status=http_status,
            )
        self.metrics.request_finished(
            call.rpc,
            visit.caller_id,
            call.service_item,
            outcome,
            code.name,
            seconds,
            transport=call.transport,
        )
        if self.access_log and log.isEnabledFor(logging.INFO):
            # one line per call, no personal data: the audit log holds the rest
            log_fields(
                log,
                logging.INFO,
                "rpc",
                {
                    "request_id": call.request_id,
                    "caller": visit.caller_id,
                    "rpc": call.rpc,
                    "transport": call.transport,
                    "service_item": call.service_item,
                    "outcome": outcome,
                    "code": code.name,
                    "latency_ms": round(seconds * 1000, 3),
                },
            )
