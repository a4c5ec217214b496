"""One definition per domain term: outcomes, roles, subject kinds, transports.

Every layer that names one of these (the audit entry, the metrics labels, the access log, the
policy, the dashboard) takes it from here, so a term cannot mean one thing in the audit log
and another on the dashboard. Record and evidence types and departments are not listed here:
they are data, declared by the evidence catalogue (gateway.catalogue).
"""

from __future__ import annotations

from typing import Final, Literal

import grpc

# ---- outcomes: how a call ended, as the audit log, metrics and access log all say it -------

Outcome = Literal["granted", "denied", "not_found", "invalid", "error"]
GRANTED: Final = "granted"  # answered, with a proof
DENIED: Final = "denied"  # refused by identity, policy, consent or a rate limit
NOT_FOUND: Final = "not_found"  # the department does not know the subject
INVALID: Final = "invalid"  # the caller's request was malformed (INVALID_ARGUMENT)
ERROR: Final = "error"  # the gateway or a department failed
OUTCOMES: Final[frozenset[str]] = frozenset({GRANTED, DENIED, NOT_FOUND, INVALID, ERROR})

_BY_CODE: Final[dict[grpc.StatusCode, Outcome]] = {
    grpc.StatusCode.OK: GRANTED,
    grpc.StatusCode.PERMISSION_DENIED: DENIED,
    grpc.StatusCode.UNAUTHENTICATED: DENIED,
    grpc.StatusCode.RESOURCE_EXHAUSTED: DENIED,
    grpc.StatusCode.NOT_FOUND: NOT_FOUND,
    grpc.StatusCode.INVALID_ARGUMENT: INVALID,
}


def outcome_of(code: grpc.StatusCode) -> Outcome:
    """The outcome a call that ended with status `code` is recorded as, everywhere."""
    return _BY_CODE.get(code, ERROR)


# ---- roles: what a caller may do, granted by the policy -----------------------------------

Role = Literal["approval", "auditor", "portal", "witness"]
ROLES: Final[frozenset[str]] = frozenset({"approval", "auditor", "portal", "witness"})

# ---- subjects: whom evidence is about ----------------------------------------------------

SubjectKind = Literal["person", "organisation"]
PERSON: Final = "person"  # a resident, by 18-character ID number (GB 11643-1999)
ORGANISATION: Final = "organisation"  # by unified social credit code (GB 32100-2015)
SUBJECT_KINDS: Final[frozenset[str]] = frozenset({PERSON, ORGANISATION})
