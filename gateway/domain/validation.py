"""Boundary validation of the request parts every VerificationService call shares.

Each function collects ALL problems of its part as field violations; the request readers
(gateway.server.requests) put every part's together into one `InvalidArgument`, whose
google.rpc.BadRequest field paths name the offending part (`context.case_id`,
`applicant.id_number`, `claims[2].type`, `read_mask.paths[1]`). Descriptions state the rule
that failed, never the value. Lengths count characters (Unicode code points), not bytes.
What passes comes out as a frozen, normalised value the handlers use instead of the message.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Final

from gateway.domain.creditcode import credit_code_violation
from gateway.domain.errors import FieldViolation
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

#: A resident ID number (18 characters, or the old 15 digits) or a mainland mobile number: the
#: one pattern for a personal number, shared by the log redaction (gateway.ops.logging), the
#: request-id check (gateway.server) and the free-text fields below.
PERSONAL_NUMBER: Final = r"(?:[0-9]{17}[0-9Xx]|[0-9]{15}|1[3-9][0-9]{9})"
#: one anywhere in a text, bounded by non-digits only (as the log redaction does): letters
#: and CJK around it ("ID11010519491231002X", "电话13912345678") do not hide it
_PERSONAL_IN_TEXT = re.compile(rf"(?<![0-9]){PERSONAL_NUMBER}(?![0-9])")
_NO_PERSONAL_NUMBER: Final = (
    "must not hold a resident ID number or a mobile number (the audit log would keep it in "
    "clear): no run of 15 or 18 digits, nor of 11 digits starting 13-19"
)


def has_personal_number(text: str) -> bool:
    """Whether `text` holds something shaped like a resident ID number or a mobile number."""
    return _PERSONAL_IN_TEXT.search(text) is not None


def has_control_chars(text: str) -> bool:
    # Fast path: str.isprintable() is False for every character in the categories "Other"
    # (Cc Cf Cs Co Cn) and "Separator" (Zl Zp Zs but the ASCII space), a superset of ours;
    # the common clean string is answered by one C-level scan.
    if text.isprintable():
        return False
    return any(unicodedata.category(c) in _CONTROL_CATEGORIES for c in text)


@dataclass(frozen=True)
class ValidRequest:
    """The parts every VerificationService request shares, validated and normalised."""

    subject: str  # the applicant: an ID number (check character upper-case) or credit code
    service_item: str
    case_id: str
    purpose: str
    consent_token: str
    name: str


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
    elif has_personal_number(case):
        out.append(FieldViolation("context.case_id", _NO_PERSONAL_NUMBER))
    if len(ctx.purpose) > MAX_PURPOSE or has_control_chars(ctx.purpose):
        out.append(
            FieldViolation(
                "context.purpose",
                f"must be at most {MAX_PURPOSE} characters, no control characters or line breaks",
            )
        )
    elif has_personal_number(ctx.purpose):
        out.append(FieldViolation("context.purpose", _NO_PERSONAL_NUMBER))
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


def validate_person(
    applicant: pb.Applicant, today: date | None
) -> tuple[str, list[FieldViolation]]:
    """A person applicant: the ID number (normalised) and the name's shape."""
    out: list[FieldViolation] = []
    violation = id_number_violation(applicant.id_number, "applicant.id_number", today=today)
    if violation is not None:
        out.append(violation)
    if applicant.credit_code:
        out.append(FieldViolation("applicant.credit_code", "must be empty for a person"))
    out += _name_violations(applicant)
    normalised = normalise_id_number(applicant.id_number) if violation is None else ""
    return normalised, out


def validate_organisation(applicant: pb.Applicant) -> tuple[str, list[FieldViolation]]:
    """An organisation applicant: the unified social credit code, upper-cased."""
    code = applicant.credit_code.strip().upper()
    out: list[FieldViolation] = []
    violation = credit_code_violation(code, "applicant.credit_code")
    if violation is not None:
        out.append(violation)
    if applicant.id_number:
        out.append(FieldViolation("applicant.id_number", "must be empty for an organisation"))
    out += _name_violations(applicant)
    return (code if violation is None else ""), out


def _name_violations(applicant: pb.Applicant) -> list[FieldViolation]:
    if len(applicant.name) > MAX_NAME or has_control_chars(applicant.name):
        return [
            FieldViolation(
                "applicant.name", f"must be at most {MAX_NAME} characters, no control characters"
            )
        ]
    return []


def validate_read_mask(
    paths: Sequence[str], fields: Sequence[str], type_name: str
) -> tuple[tuple[str, ...], list[FieldViolation]]:
    """The read mask's paths, each a top-level field (`fields`, in declaration order) of
    the evidence type `type_name`, or the violations."""
    out: list[FieldViolation] = []
    if len(paths) > MAX_READ_MASK_PATHS:
        out.append(FieldViolation("read_mask.paths", f"at most {MAX_READ_MASK_PATHS} paths"))
        return (), out
    known = frozenset(fields)
    seen: set[str] = set()
    for i, path in enumerate(paths):
        if path not in known:
            out.append(
                FieldViolation(
                    f"read_mask.paths[{i}]",
                    f"must be a top-level field of {type_name}: " + ", ".join(fields),
                )
            )
        elif path in seen:
            out.append(FieldViolation(f"read_mask.paths[{i}]", "duplicate path"))
        seen.add(path)
    return tuple(paths), out


def valid_request(ctx: pb.RequestContext, subject: str, name: str) -> ValidRequest:
    return ValidRequest(
        subject=subject,
        service_item=ctx.service_item,
        case_id=ctx.case_id,
        purpose=ctx.purpose,
        consent_token=ctx.consent_token,
        name=name,
    )


def claim_id_violations(claims: Sequence[pb.Claim]) -> list[FieldViolation]:
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


def claims_count_violations(claims: Sequence[pb.Claim]) -> list[FieldViolation]:
    if not claims:
        return [FieldViolation("claims", "at least one claim is required")]
    if len(claims) > MAX_CLAIMS:
        return [FieldViolation("claims", f"at most {MAX_CLAIMS} claims per request")]
    return []


#: a claim's parameters: more than any claim type declares, few enough that checking them is
#: cheap (a protobuf map may otherwise hold as many as a 1 MiB message fits)
MAX_CLAIM_PARAMS = 16
MAX_CLAIM_PARAM_NAME = 64
MAX_CLAIM_PARAM_VALUE = 1024


def claim_params_violations(claims: Sequence[pb.Claim]) -> list[FieldViolation]:
    """Each claim's parameters bounded in number and size, before any is read (names and
    values are caller text: never quoted back)."""
    out: list[FieldViolation] = []
    for i, claim in enumerate(claims):
        params = claim.params
        if len(params) > MAX_CLAIM_PARAMS:
            out.append(
                FieldViolation(f"claims[{i}].params", f"at most {MAX_CLAIM_PARAMS} parameters")
            )
        elif any(
            len(name) > MAX_CLAIM_PARAM_NAME or len(value) > MAX_CLAIM_PARAM_VALUE
            for name, value in params.items()
        ):
            out.append(
                FieldViolation(
                    f"claims[{i}].params",
                    f"names of at most {MAX_CLAIM_PARAM_NAME} characters, values of at most "
                    f"{MAX_CLAIM_PARAM_VALUE}",
                )
            )
    return out
