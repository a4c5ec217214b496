"""Boundary validation of the request parts every VerificationService call shares.

Each function collects ALL problems of a request into one `InvalidArgument`, whose
google.rpc.BadRequest field paths name the offending part (`context.case_id`,
`applicant.id_number`, `claims[2].type`, `read_mask.paths[1]`). Descriptions state the rule
that failed, never the value. Lengths count characters (Unicode code points), not bytes.
What passes comes out as a frozen, normalised value the handlers use instead of the message.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date

from google.protobuf.message import Message

from gateway.domain.claims import KinshipParams, ParsedClaim, parse_claim
from gateway.domain.errors import FieldViolation, InvalidArgument
from gateway.domain.idnumber import id_number_violation, normalise_id_number
from proofless.v1 import verification_pb2 as pb

MAX_SERVICE_ITEM = 64
MAX_CASE_ID = 64
MAX_PURPOSE = 512
MAX_CONSENT_TOKEN = 4096
MAX_NAME = 64
MAX_READ_MASK_PATHS = 32
MAX_CLAIMS = 16
MAX_CLAIM_ID = 64

_SERVICE_ITEM = re.compile(r"[A-Za-z0-9._-]+")
_COMPACT_JWS_CHARS = re.compile(r"[A-Za-z0-9_.=-]+")
# Cc control, Cf format (bidi overrides, zero-width), Zl/Zp line and paragraph separators,
# Cs surrogates: all of them can forge or split audit log lines and terminal output.
_CONTROL_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})


def has_control_chars(text: str) -> bool:
    # Fast path: str.isprintable() is False for every character in the categories "Other"
    # (Cc Cf Cs Co Cn) and "Separator" (Zl Zp Zs but the ASCII space), a superset of ours;
    # the common clean string is answered by one C-level scan.
    if text.isprintable():
        return False
    return any(unicodedata.category(c) in _CONTROL_CATEGORIES for c in text)


@dataclass(frozen=True)
class ValidRecordRequest:
    id_number: str  # normalised: trailing check character upper-case
    service_item: str
    case_id: str
    purpose: str
    consent_token: str
    name: str
    read_mask: tuple[str, ...]  # top-level field names; empty = everything the policy allows


@dataclass(frozen=True)
class ValidClaimsRequest:
    id_number: str
    service_item: str
    case_id: str
    purpose: str
    consent_token: str
    name: str
    claims: tuple[ParsedClaim, ...]


def validate_context(ctx: pb.RequestContext) -> list[FieldViolation]:
    """Violations of the RequestContext (事项编码, 办件编号, purpose, consent token)."""
    out: list[FieldViolation] = []
    item = ctx.service_item
    if not item:
        out.append(FieldViolation("context.service_item", "required (事项编码)"))
    elif len(item) > MAX_SERVICE_ITEM or not _SERVICE_ITEM.fullmatch(item):
        out.append(
            FieldViolation(
                "context.service_item",
                f"must be 1 to {MAX_SERVICE_ITEM} characters from A-Z a-z 0-9 . _ -",
            )
        )
    case = ctx.case_id
    if not case:
        out.append(FieldViolation("context.case_id", "required (办件编号)"))
    elif len(case) > MAX_CASE_ID or not case.isprintable() or has_control_chars(case):
        out.append(
            FieldViolation(
                "context.case_id",
                f"must be 1 to {MAX_CASE_ID} printable characters, no control characters",
            )
        )
    if len(ctx.purpose) > MAX_PURPOSE or has_control_chars(ctx.purpose):
        out.append(
            FieldViolation(
                "context.purpose",
                f"must be at most {MAX_PURPOSE} characters, no control characters or line breaks",
            )
        )
    token = ctx.consent_token
    if token and (len(token) > MAX_CONSENT_TOKEN or not _COMPACT_JWS_CHARS.fullmatch(token)):
        out.append(
            FieldViolation(
                "context.consent_token",
                f"must be a compact JWS of at most {MAX_CONSENT_TOKEN} characters "
                "(base64url segments separated by dots)",
            )
        )
    return out


def _validate_applicant(
    applicant: pb.Applicant, today: date | None
) -> tuple[str, list[FieldViolation]]:
    out: list[FieldViolation] = []
    violation = id_number_violation(applicant.id_number, "applicant.id_number", today=today)
    if violation is not None:
        out.append(violation)
    if len(applicant.name) > MAX_NAME or has_control_chars(applicant.name):
        out.append(
            FieldViolation(
                "applicant.name", f"must be at most {MAX_NAME} characters, no control characters"
            )
        )
    normalised = normalise_id_number(applicant.id_number) if violation is None else ""
    return normalised, out


_FIELDS_BY_NAME: dict[type[Message], dict[str, None]] = {}


def _fields_by_name(record_message: type[Message]) -> dict[str, None]:
    """The top-level field names of a record type in declaration order, looked up in its
    descriptor once (a dict: ordered for messages, O(1) for membership)."""
    names = _FIELDS_BY_NAME.get(record_message)
    if names is None:
        names = _FIELDS_BY_NAME[record_message] = dict.fromkeys(
            record_message.DESCRIPTOR.fields_by_name
        )
    return names


def _validate_read_mask(
    paths: list[str], record_message: type[Message]
) -> tuple[tuple[str, ...], list[FieldViolation]]:
    out: list[FieldViolation] = []
    fields = _fields_by_name(record_message)
    if len(paths) > MAX_READ_MASK_PATHS:
        out.append(FieldViolation("read_mask.paths", f"at most {MAX_READ_MASK_PATHS} paths"))
        return (), out
    seen: set[str] = set()
    for i, path in enumerate(paths):
        if path not in fields:
            out.append(
                FieldViolation(
                    f"read_mask.paths[{i}]",
                    f"must be a top-level field of {record_message.DESCRIPTOR.name}: "
                    + ", ".join(fields),
                )
            )
        elif path in seen:
            out.append(FieldViolation(f"read_mask.paths[{i}]", "duplicate path"))
        seen.add(path)
    return tuple(paths), out


def validate_record_request(
    req: pb.RecordRequest, record_message: type[Message], *, today: date | None = None
) -> ValidRecordRequest:
    """The request normalised, or InvalidArgument listing every violation.

    `record_message` is the record type the RPC returns (pb.HouseholdRecord, …); read_mask
    paths must name its top-level fields. `today` bounds ID birth dates (default: the system date).
    """
    violations = validate_context(req.context)
    id_number, applicant_violations = _validate_applicant(req.applicant, today)
    violations += applicant_violations
    read_mask, mask_violations = _validate_read_mask(list(req.read_mask.paths), record_message)
    violations += mask_violations
    if violations:
        raise InvalidArgument(violations)
    ctx = req.context
    return ValidRecordRequest(
        id_number=id_number,
        service_item=ctx.service_item,
        case_id=ctx.case_id,
        purpose=ctx.purpose,
        consent_token=ctx.consent_token,
        name=req.applicant.name,
        read_mask=read_mask,
    )


def _claim_id_violations(claims: list[pb.Claim]) -> list[FieldViolation]:
    """Claim ids label results: optional, but when given unique, short and printable."""
    out: list[FieldViolation] = []
    seen: set[str] = set()
    for i, claim in enumerate(claims):
        cid = claim.id
        if not cid:
            continue
        if len(cid) > MAX_CLAIM_ID or not cid.isprintable() or has_control_chars(cid):
            out.append(
                FieldViolation(
                    f"claims[{i}].id", f"must be at most {MAX_CLAIM_ID} printable characters"
                )
            )
        elif cid in seen:
            out.append(FieldViolation(f"claims[{i}].id", "duplicate claim id"))
        seen.add(cid)
    return out


def validate_verify_claims(
    req: pb.VerifyClaimsRequest, *, today: date | None = None
) -> ValidClaimsRequest:
    """The request with every claim parsed, or InvalidArgument listing every violation."""
    violations = validate_context(req.context)
    id_number, applicant_violations = _validate_applicant(req.applicant, today)
    violations += applicant_violations
    claims = list(req.claims)
    parsed: list[ParsedClaim] = []
    if not claims:
        violations.append(FieldViolation("claims", "at least one claim is required"))
    elif len(claims) > MAX_CLAIMS:
        violations.append(FieldViolation("claims", f"at most {MAX_CLAIMS} claims per request"))
    else:
        violations += _claim_id_violations(claims)
        for i, claim in enumerate(claims):
            result, claim_violations = parse_claim(i, claim, today=today)
            violations += claim_violations
            if result is None:
                continue
            if (
                isinstance(result.params, KinshipParams)
                and id_number
                and result.params.other_id_number == id_number
            ):
                violations.append(
                    FieldViolation(
                        f"claims[{i}].params.other_id_number",
                        "must be another person than the applicant",
                    )
                )
            parsed.append(result)
    if violations:
        raise InvalidArgument(violations)
    ctx = req.context
    return ValidClaimsRequest(
        id_number=id_number,
        service_item=ctx.service_item,
        case_id=ctx.case_id,
        purpose=ctx.purpose,
        consent_token=ctx.consent_token,
        name=req.applicant.name,
        claims=tuple(parsed),
    )
