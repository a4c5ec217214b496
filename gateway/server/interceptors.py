"""The one place for what every RPC shares: request id, caller identity, metrics, and turning
a `ProoflessError` into a gRPC status with google.rpc details.

grpc.aio server interceptors see the method name but not the call context, so the
interceptor wraps the unary handler it is given (the pattern of grpc's
examples/python/interceptors/async).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import lru_cache
from typing import Any

import grpc
from cryptography import x509
from grpc_status import rpc_status

from gateway.crypto.keys import issuer_of
from gateway.domain.errors import ProoflessError, Unauthenticated
from gateway.ops.metrics import Metrics
from gateway.ops.tracing import OFF, Tracing
from gateway.server.door import Door, Visit, current_request_id, request_id_from
from gateway.server.identity import Caller

log = logging.getLogger("proofless.rpc")

# Health checks and reflection need a certificate from our CA but no caller identity; the
# certificate is still checked against its CA's CRL and the clock, like any caller's.
_ANONYMOUS_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.")

Handler = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]


def _peer_pem(context: grpc.aio.ServicerContext) -> bytes | None:
    pems = context.auth_context().get("x509_pem_cert") or []
    return pems[0] if pems else None


@lru_cache(maxsize=1024)
def _anonymous_peer(pem: bytes) -> Caller:
    """The certificate of a health or reflection client, as far as revocation and expiry go
    (it needs no caller identity)."""
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise Unauthenticated("the client certificate cannot be read") from exc
    return Caller(
        id="",
        roles=frozenset(),
        serial=cert.serial_number,
        not_after=cert.not_valid_after_utc,
        issuer=issuer_of(cert),
    )


async def _check_anonymous(door: Door, visit: Visit, pem: bytes | None) -> None:
    """A health or reflection call: its certificate, when there is one, must not be revoked
    or expired; a refusal is audited like any caller's."""
    if not pem:
        return
    try:
        door.check_caller(_anonymous_peer(pem))
    except ProoflessError as err:
        if door.on_rejected is not None:
            await door.on_rejected(visit.call.rpc, visit.call.request_id, err)
        raise


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
        if handler is None:
            return handler
        method: str = details.method
        anonymous = method.startswith(_ANONYMOUS_SERVICES)
        if handler.unary_unary is None:
            # streaming: health's Watch and reflection, anonymous; the gateway serves no other
            return self._checked_stream(handler, details) if anonymous else handler
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
                if anonymous:
                    await _check_anonymous(door, visit, _peer_pem(context))
                else:
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

    def _checked_stream(
        self, handler: grpc.RpcMethodHandler, details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler:
        """A streaming anonymous handler (health's Watch, reflection) behind the certificate
        check of a unary one. Only a refused stream is counted and logged as a call: a
        Watch lasts as long as its client, and is no load the in-flight gauge should show."""
        door = self.door
        rpc = details.method.rsplit("/", 1)[-1]
        request_id = request_id_from(details.invocation_metadata)
        inner = handler.unary_stream or handler.stream_stream or handler.stream_unary

        async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
            pem = _peer_pem(context)
            if pem:
                try:
                    door.check_caller(_anonymous_peer(pem))
                except ProoflessError as err:
                    visit = door.open(rpc, request_id, "grpc")
                    try:
                        if door.on_rejected is not None:
                            await door.on_rejected(rpc, request_id, err)
                        await abort_with(context, err)
                    finally:
                        door.close(visit, err.code)
            result = inner(request, context)
            if inspect.isasyncgen(result):
                answers: AsyncIterator[Any] = result
                async for answer in answers:
                    await context.write(answer)
                return None
            return await result

        kind = {
            (False, True): grpc.unary_stream_rpc_method_handler,
            (True, True): grpc.stream_stream_rpc_method_handler,
            (True, False): grpc.stream_unary_rpc_method_handler,
        }[(handler.request_streaming, handler.response_streaming)]
        return kind(
            wrapped,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
