"""The one place for what every RPC shares: request id, caller identity, metrics, and turning
a `ProoflessError` into a gRPC status with google.rpc details.

grpc.aio server interceptors see the method name but not the call context, so the
interceptor wraps the unary handler it is given (the pattern of grpc's
examples/python/interceptors/async).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from grpc_status import rpc_status

from gateway.domain.errors import ProoflessError
from gateway.ops.metrics import Metrics
from gateway.ops.tracing import OFF, Tracing
from gateway.server.door import Door, current_request_id, request_id_from
from gateway.server.identity import Caller

log = logging.getLogger("proofless.rpc")

# Health checks and reflection need a certificate from our CA but no caller identity.
_ANONYMOUS_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.")

Handler = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]


def _peer_pem(context: grpc.aio.ServicerContext) -> bytes | None:
    pems = context.auth_context().get("x509_pem_cert") or []
    return pems[0] if pems else None


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
        tracing: Tracing = OFF,
    ) -> None:
        """`check_caller` raises for a revoked or expired certificate (CRL, clock);
        `on_rejected(rpc, request_id, error)` audits calls refused before any handler ran.
        The HTTP/JSON door shares `self.door`: the same checks, metrics and access log."""
        self.door = Door(
            metrics,
            check_caller=check_caller,
            on_rejected=on_rejected,
            access_log=access_log,
            tracing=tracing,
        )

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
        door = self.door
        metadata = details.invocation_metadata
        request_id = request_id_from(metadata)

        async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
            visit = door.open(rpc, request_id, "grpc", method=method[1:], headers=metadata)
            context.set_trailing_metadata((("x-request-id", request_id),))
            code = grpc.StatusCode.OK
            try:
                if not anonymous:
                    await door.admit(visit, _peer_pem(context))
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
                door.close(visit, code)

        return grpc.unary_unary_rpc_method_handler(
            wrapped,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
