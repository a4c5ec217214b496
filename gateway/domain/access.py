"""One access, as the audit log records it: built up while a request runs, written once.

Pure: no clock reads, no I/O. The servicer fills an `Access` as it learns things (the
service item after validation, the subject after the ID checks out, the departments as it
calls them) and turns it into exactly one audit entry, whatever the outcome.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import grpc

from gateway.domain import vocabulary
from gateway.domain.errors import (
    ProoflessError,
)
from gateway.domain.times import rfc3339
from gateway.domain.vocabulary import DENIED, ERROR, GRANTED, INVALID, NOT_FOUND

__all__ = ["DENIED", "ERROR", "GRANTED", "INVALID", "NOT_FOUND", "Access", "outcome_of"]


def outcome_of(error: ProoflessError) -> str:
    """The audit outcome of a call that failed with `error` (gateway.domain.vocabulary)."""
    return vocabulary.outcome_of(error.code)


@dataclass
class Access:
    rpc: str
    request_id: str
    caller: str
    time: datetime
    started: float  # time.perf_counter() at arrival, for latency_us
    policy: str  # version (SHA-256) of the policy in force when the request arrived
    catalogue: str = ""  # version (SHA-256) of the evidence catalogue in force
    transport: str = "grpc"  # the door the call came through: grpc or http
    service_item: str = ""
    case_id: str = ""
    purpose: str = ""
    record_type: str = ""
    #: each claim asked, as {"type", "params"}: parameters with a person or organisation
    #: named by its subject pseudonym, never in clear
    claims: list[dict[str, Any]] = field(default_factory=list)
    departments: list[str] = field(default_factory=list)
    subject: str = ""  # the applicant's pseudonym
    #: every subject whose record was read (the applicant and, e.g., a kinship claim's other
    #: person), so each of them finds the access in the "who accessed my records" view
    subjects: list[str] = field(default_factory=list)
    proof_id: str = ""
    digest: str = ""
    covert_until: str = ""
    appending: bool = False  # its entry is being (or has been) written: never write a second

    def entry(
        self,
        *,
        outcome: str,
        code: grpc.StatusCode,
        reason: str,
        latency_us: int,
    ) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "kind": "access",
            "time": rfc3339(self.time),
            "request_id": self.request_id,
            "caller": self.caller,
            "rpc": self.rpc,
            "service_item": self.service_item,
            "case_id": self.case_id,
            "purpose": self.purpose,
            "record_type": self.record_type,
            "departments": sorted(set(self.departments)),
            "outcome": outcome,
            "status": code.name,
            "reason": reason,
            "latency_us": latency_us,
            "proof_id": self.proof_id,
            "digest": self.digest,
            "subject": self.subject,
            "policy": self.policy,
            "catalogue": self.catalogue,
            "transport": self.transport,
        }
        subjects = sorted({self.subject, *self.subjects} - {""})
        if subjects:
            entry["subjects"] = subjects
        if self.claims:
            entry["claims"] = self.claims
        if self.covert_until:
            entry["covert_until"] = self.covert_until
        return entry
