"""The one place for what every RPC shares: request id, caller identity, metrics, and turning
a `ProoflessError` into a gRPC status with google.rpc details.

grpc.aio server interceptors see the method name but not the call context, so the
interceptor wraps the unary handler it is given (the pattern of grpc's
examples/python/interceptors/async).
"""

from __future__ import annotations

import contextvars
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from grpc_status import rpc_status

from gateway.domain.errors import ProoflessError, Unauthenticated
from gateway.domain.vocabulary import outcome_of
from gateway.ops.logging import PERSONAL_NUMBER, log_fields
from gateway.ops.metrics import Metrics
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
# Health checks and reflection need a certificate from our CA but no caller identity.
_ANONYMOUS_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.")

Handler = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]


def request_id_from(metadata: tuple[tuple[str, str | bytes], ...] | None) -> str:
    """The caller's x-request-id when it is a sane token, else a fresh one.

    A token with a resident ID or a mobile number as one of its words is replaced too: the
    request id is written in clear into the audit entry, the access log and the reply's
    trailers, and a careless client passing an applicant's ID number as its request id must
    not put it there.
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


def _peer_caller(context: grpc.aio.ServicerContext) -> Caller:
    auth = context.auth_context()
    pems = auth.get("x509_pem_cert") or []
    if not pems:
        raise Unauthenticated("a client certificate is required", reason="NO_CLIENT_CERTIFICATE")
    return caller_from_pem(pems[0])


async def abort_with(context: grpc.aio.ServicerContext, err: ProoflessError) -> None:
    status = rpc_status.to_status(err.to_status())
    # abort() replaces the trailing metadata set earlier: carry the request id over, so a
    # refused caller can quote it (it is the audit entry's request_id)
    trailing = tuple(status.trailing_metadata)
    request_id = current_request_id.get()
    if request_id:
        trailing += (("x-request-id", request_id),)
    await context.abort(status.code, status.details, trailing)


class GatewayInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc is untyped
    def __init__(
        self,
        metrics: Metrics,
        *,
        check_caller: Callable[[Caller], None] = lambda caller: None,
        on_rejected: Callable[[str, str, ProoflessError], Awaitable[None]] | None = None,
        access_log: bool = True,
    ) -> None:
        """`check_caller` raises for a revoked or expired certificate (CRL, clock);
        `on_rejected(rpc, request_id, error)` audits calls refused before any handler ran."""
        self._metrics = metrics
        self._check_caller = check_caller
        self._on_rejected = on_rejected
        self._access_log = access_log

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler
        method: str = details.method
        anonymous = method.startswith(_ANONYMOUS_SERVICES)
        rpc = method.rsplit("/", 1)[-1]
        inner: Handler = handler.unary_unary
        metrics = self._metrics
        check_caller = self._check_caller
        on_rejected = self._on_rejected
        access_log = self._access_log and log.isEnabledFor(logging.INFO)
        request_id = request_id_from(details.invocation_metadata)

        async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
            current_request_id.set(request_id)
            call = Call(rpc=rpc, request_id=request_id)
            current_call.set(call)
            context.set_trailing_metadata((("x-request-id", request_id),))
            started = time.perf_counter()
            metrics.request_started(rpc)
            caller_id, code = "unauthenticated", grpc.StatusCode.OK
            try:
                if not anonymous:
                    try:
                        caller = _peer_caller(context)
                        check_caller(caller)
                    except ProoflessError as err:
                        if on_rejected is not None:
                            await on_rejected(rpc, request_id, err)
                        raise
                    caller_id = caller.id
                    call.caller = caller
                    current_caller.set(caller)
                return await inner(request, context)
            except ProoflessError as err:
                code = err.code
                await abort_with(context, err)
            except grpc.aio.AbortError:
                code = context.code() or grpc.StatusCode.UNKNOWN
                raise
            except Exception:
                code = grpc.StatusCode.INTERNAL
                log.exception("unhandled error", extra={"rpc": rpc, "request_id": request_id})
                await context.abort(grpc.StatusCode.INTERNAL, f"internal error ({request_id})")
            finally:
                seconds = time.perf_counter() - started
                outcome = outcome_of(code)
                metrics.request_finished(
                    rpc, caller_id, call.service_item, outcome, code.name, seconds
                )
                if access_log:
                    # one line per call, no personal data: the audit log holds the rest
                    log_fields(
                        log,
                        logging.INFO,
                        "rpc",
                        {
                            "request_id": request_id,
                            "caller": caller_id,
                            "rpc": rpc,
                            "service_item": call.service_item,
                            "outcome": outcome,
                            "code": code.name,
                            "latency_ms": round(seconds * 1000, 3),
                        },
                    )

        return grpc.unary_unary_rpc_method_handler(
            wrapped,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
