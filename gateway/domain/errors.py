"""The one exception root of Proofless and the gRPC status each error becomes.

Every malformed input, refused call and failing department becomes one typed error at the
boundary where it is noticed. The servicer turns it into a gRPC status with google.rpc
details (`to_status`); the CLI prints `diagnostics()`. Messages never carry personal data
(ID numbers, names, addresses): they name fields and reasons, not values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

ERROR_DOMAIN = "proofless.gov"


class ProoflessError(Exception):
    """Root of every error Proofless raises on purpose."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    #: short machine-readable reason (google.rpc.ErrorInfo.reason), UPPER_SNAKE_CASE
    reason: str = "INTERNAL"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason

    def diagnostics(self) -> str:
        """A human-readable explanation for the CLI."""
        return f"{self.reason}: {self.message}"

    def details(self) -> list[any_pb2.Any]:
        """google.rpc detail messages that travel with the status."""
        info = error_details_pb2.ErrorInfo(reason=self.reason, domain=ERROR_DOMAIN)
        packed = any_pb2.Any()
        packed.Pack(info)
        return [packed]

    def to_status(self) -> status_pb2.Status:
        return status_pb2.Status(
            code=getattr(code_pb2, self.code.name), message=self.message, details=self.details()
        )


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


class InvalidArgument(ProoflessError):
    """Bad input: carries google.rpc.BadRequest field violations."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "INVALID_ARGUMENT"

    def __init__(self, violations: Sequence[FieldViolation]) -> None:
        self.violations = tuple(violations)
        fields = ", ".join(v.field for v in self.violations)
        super().__init__(f"invalid request: {fields}")

    def diagnostics(self) -> str:
        lines = [f"{v.field}: {v.description}" for v in self.violations]
        return "invalid request:\n  " + "\n  ".join(lines)

    def details(self) -> list[any_pb2.Any]:
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=v.field, description=v.description
                )
                for v in self.violations
            ]
        )
        packed = any_pb2.Any()
        packed.Pack(bad)
        return [packed]


class Unauthenticated(ProoflessError):
    code = grpc.StatusCode.UNAUTHENTICATED
    reason = "UNAUTHENTICATED"


class PermissionDenied(ProoflessError):
    """A policy or consent refusal; `reason` says which rule (e.g. FIELD_NOT_ALLOWED)."""

    code = grpc.StatusCode.PERMISSION_DENIED
    reason = "PERMISSION_DENIED"


class NotFound(ProoflessError):
    code = grpc.StatusCode.NOT_FOUND
    reason = "RECORD_NOT_FOUND"


class Unavailable(ProoflessError):
    """A department is down, its answer unusable, or the audit log cannot be written."""

    code = grpc.StatusCode.UNAVAILABLE
    reason = "UNAVAILABLE"


class DeadlineExceeded(ProoflessError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED
    reason = "DEADLINE_EXCEEDED"


class ResourceExhausted(ProoflessError):
    """Rate limit or overload; tells the caller when to retry (google.rpc.RetryInfo)."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "RATE_LIMITED"

    def __init__(self, message: str, *, retry_after: float, reason: str | None = None) -> None:
        super().__init__(message, reason=reason)
        self.retry_after = retry_after

    def details(self) -> list[any_pb2.Any]:
        retry = error_details_pb2.RetryInfo(
            retry_delay=duration_pb2.Duration(
                seconds=int(self.retry_after), nanos=int((self.retry_after % 1) * 1e9)
            )
        )
        packed = any_pb2.Any()
        packed.Pack(retry)
        return [*super().details(), packed]


class ConfigError(ProoflessError):
    """A configuration, policy or key file is missing or malformed (CLI and start-up only)."""

    reason = "CONFIG"


class IntegrityError(ProoflessError):
    """Stored data (an audit log, a proof) does not check out."""

    code = grpc.StatusCode.DATA_LOSS
    reason = "INTEGRITY"


# ---- what a department's answer can be, other than a record ---------------------------------


class RecordNotFound(NotFound):
    """The department does not know the subject (查无此人)."""

    reason = "RECORD_NOT_FOUND"


class DepartmentUnavailable(Unavailable):
    """The department cannot answer now: down, refusing, or answering with an error code."""

    reason = "DEPARTMENT_UNAVAILABLE"


class DepartmentMalformed(DepartmentUnavailable):
    """The department answered, but not with something the mapping can read."""

    reason = "DEPARTMENT_MALFORMED_RESPONSE"


class DepartmentTimeout(DeadlineExceeded):
    """The department did not answer within the call's budget."""

    reason = "DEPARTMENT_TIMEOUT"
