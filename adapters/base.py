"""The small protocol every department adapter speaks, and the values it returns.

An adapter turns one department's system (its URLs, signing, paging, field names, SQL views)
into canonical `proofless.v1` records. Nothing department-specific passes this boundary: a
caller of `fetch` sees canonical messages or one of the typed errors below, never a raw
HTTP status, a pinyin field name or a driver exception.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Generic, Literal, Protocol, TypeVar

from gateway.domain.errors import DeadlineExceeded, NotFound, Unavailable

DepartmentId = Literal["household", "social_security", "property"]
DEPARTMENTS: tuple[DepartmentId, ...] = ("household", "social_security", "property")

R_co = TypeVar("R_co", covariant=True)


@dataclass(frozen=True)
class RecordQuery:
    """Whose record to fetch. `request_id` travels to the department for its own logs."""

    id_number: str
    request_id: str = ""


@dataclass(frozen=True)
class Fetched(Generic[R_co]):
    """A department's answer: the canonical record and when the department says it was current."""

    department: DepartmentId
    record: R_co
    as_of: datetime  # timezone-aware


class DepartmentAdapter(Protocol[R_co]):
    """`fetch` MUST return by `deadline` (a `time.monotonic()` instant) or raise
    `DepartmentTimeout`; it raises `RecordNotFound` when the department does not know the
    person and `DepartmentUnavailable` for every other failure."""

    department: DepartmentId

    async def fetch(self, query: RecordQuery, deadline: float) -> Fetched[R_co]: ...

    async def health(self) -> bool: ...

    async def close(self) -> None: ...


class RecordNotFound(NotFound):
    reason = "RECORD_NOT_FOUND"


class DepartmentUnavailable(Unavailable):
    reason = "DEPARTMENT_UNAVAILABLE"


class DepartmentMalformed(DepartmentUnavailable):
    """The department answered, but not with something the mapping can read."""

    reason = "DEPARTMENT_MALFORMED_RESPONSE"


class DepartmentTimeout(DeadlineExceeded):
    reason = "DEPARTMENT_TIMEOUT"
