"""The small protocol every department connector speaks, and the values it returns.

A connector turns one department's system (its URLs, signing, paging, field names, SQL views,
WSDL operations) into canonical records, as the evidence catalogue declares them
(gateway.catalogue). Nothing department-specific passes this boundary: a caller of `fetch`
sees canonical records or one of the typed errors below, never a raw HTTP status, a pinyin
field name or a driver exception.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from gateway.domain.errors import (
    DepartmentMalformed,
    DepartmentTimeout,
    DepartmentUnavailable,
    RecordNotFound,
)

__all__ = [
    "DepartmentAdapter",
    "DepartmentId",
    "DepartmentMalformed",
    "DepartmentTimeout",
    "DepartmentUnavailable",
    "Fetched",
    "RecordNotFound",
    "RecordQuery",
]

#: a department's code in the catalogue (`[department] code`)
DepartmentId = str

R_co = TypeVar("R_co", covariant=True)


@dataclass(frozen=True)
class RecordQuery:
    """Which evidence about whom: `subject` is the resident ID number or the organisation's
    credit code, normalised. `request_id` travels to the department for its own logs."""

    subject: str
    request_id: str = ""
    evidence: str = ""  # the evidence type's code; "" when the department has only one

    @property
    def id_number(self) -> str:
        """The subject, for the hand-written adapters until the catalogue replaces them."""
        return self.subject

    @property
    def key(self) -> tuple[str, str]:
        """Two queries with the same key ask the department the same question."""
        return (self.evidence, self.subject)


@dataclass(frozen=True)
class Fetched(Generic[R_co]):
    """A department's answer: the canonical record (a dict, or a list of dicts for evidence
    with cardinality "many") and when the department says it was current."""

    department: DepartmentId
    record: R_co
    as_of: datetime  # timezone-aware
    evidence: str = ""


Record = dict[str, Any]


class DepartmentAdapter(Protocol[R_co]):
    """`fetch` MUST return by `deadline` (a `time.monotonic()` instant) or raise
    `DepartmentTimeout`; it raises `RecordNotFound` when the department does not know the
    person and `DepartmentUnavailable` for every other failure."""

    department: DepartmentId

    async def fetch(self, query: RecordQuery, deadline: float) -> Fetched[R_co]: ...

    async def health(self) -> bool: ...

    async def close(self) -> None: ...
