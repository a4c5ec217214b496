"""Reading each VerificationService request at the boundary: every problem of the request,
context, applicant, read mask and claims alike, in one `InvalidArgument`; what passes comes
out normalised (gateway.domain.validation for the parts, the catalogue for claims).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from gateway.catalogue.claims import ParsedClaim, parse_claim
from gateway.catalogue.schema import Catalogue, EvidenceType
from gateway.domain.errors import FieldViolation, InvalidArgument
from gateway.domain.validation import (
    ValidRequest,
    claim_id_violations,
    claim_params_violations,
    claims_count_violations,
    valid_request,
    validate_context,
    validate_organisation,
    validate_person,
    validate_read_mask,
)
from proofless.v1 import verification_pb2 as pb


@dataclass(frozen=True)
class RecordRequest:
    common: ValidRequest
    evidence: EvidenceType
    read_mask: tuple[str, ...]  # top-level fields; empty = everything the policy allows


@dataclass(frozen=True)
class ClaimsRequest:
    common: ValidRequest
    claims: tuple[ParsedClaim, ...]


def _subject(
    applicant: pb.Applicant, evidence: EvidenceType | None, today: date | None
) -> tuple[str, list[FieldViolation]]:
    if evidence is not None and evidence.subject == "organisation":
        return validate_organisation(applicant)
    return validate_person(applicant, today)


def record_request(
    context: pb.RequestContext,
    applicant: pb.Applicant,
    paths: list[str],
    evidence: EvidenceType,
    *,
    today: date | None = None,
) -> RecordRequest:
    violations = validate_context(context)
    subject, more = _subject(applicant, evidence, today)
    violations += more
    mask, more = validate_read_mask(paths, evidence.record.names, evidence.code)
    violations += more
    if violations:
        raise InvalidArgument(violations)
    return RecordRequest(valid_request(context, subject, applicant.name), evidence, mask)


def evidence_request(
    request: pb.EvidenceRequest, catalogue: Catalogue, *, today: date | None = None
) -> RecordRequest:
    evidence = catalogue.evidence.get(request.evidence_type)
    if evidence is None:
        violations = validate_context(request.context)
        description = "required" if not request.evidence_type else "unknown; see ListEvidenceTypes"
        violations.append(FieldViolation("evidence_type", description))
        raise InvalidArgument(violations)
    return record_request(
        request.context,
        request.applicant,
        list(request.read_mask.paths),
        evidence,
        today=today,
    )


def claims_request(
    request: pb.VerifyClaimsRequest, catalogue: Catalogue, *, today: date | None = None
) -> ClaimsRequest:
    violations = validate_context(request.context)
    claims = list(request.claims)
    # The claims say whom they are about: a person, or an organisation (one kind a request).
    kinds = {
        catalogue.evidence[spec.evidence].subject
        for c in claims
        if (spec := catalogue.claims.get(c.type)) is not None
    }
    if len(kinds) > 1:
        violations.append(
            FieldViolation("claims", "are about persons and organisations; ask in two requests")
        )
    if "organisation" in kinds:
        subject, more = validate_organisation(request.applicant)
    else:
        subject, more = validate_person(request.applicant, today)
    violations += more
    parsed: list[ParsedClaim] = []
    # bounded before anything else reads them: how many claims, and each one's parameters
    count = claims_count_violations(claims) or claim_params_violations(claims)
    violations += count
    if not count:
        violations += claim_id_violations(claims)
        for i, claim in enumerate(claims):
            result, claim_violations = parse_claim(
                i, claim.id, claim.type, claim.params, catalogue, applicant=subject, today=today
            )
            violations += claim_violations
            if result is not None:
                parsed.append(result)
    if violations:
        raise InvalidArgument(violations)
    return ClaimsRequest(
        valid_request(request.context, subject, request.applicant.name), tuple(parsed)
    )


#: parties of one CheckItem request: enough for a large household, few enough to bound fan-out
MAX_PARTIES = 16


@dataclass(frozen=True)
class ItemRequest:
    common: ValidRequest
    #: each party as (role, subject: the normalised ID number or credit code), in request order
    parties: tuple[tuple[str, str], ...]


def _either(applicant: pb.Applicant, today: date | None) -> tuple[str, list[FieldViolation]]:
    """A person, or an organisation when only a credit code is given."""
    if applicant.credit_code and not applicant.id_number:
        return validate_organisation(applicant)
    return validate_person(applicant, today)


def item_request(
    request: pb.CheckItemRequest, roles: frozenset[str], *, today: date | None = None
) -> ItemRequest:
    """`roles`: the roles the item's requirements name; a party in any other role is refused
    (its record would be read for nothing)."""
    violations = validate_context(request.context)
    subject, more = _either(request.applicant, today)
    violations += more
    parties: list[tuple[str, str]] = []
    if len(request.parties) > MAX_PARTIES:
        violations.append(FieldViolation("parties", f"at most {MAX_PARTIES}"))
    else:
        for i, party in enumerate(request.parties):
            where = f"parties[{i}]"
            if party.role not in roles:
                # caller text: never quoted back
                violations.append(FieldViolation(f"{where}.role", "not a role this item names"))
            if party.subject.name:
                violations.append(FieldViolation(f"{where}.subject.name", "must be empty"))
            party_subject, more = _either(party.subject, today)
            violations += [
                FieldViolation(v.field.replace("applicant", f"{where}.subject", 1), v.description)
                for v in more
            ]
            if party_subject and party_subject == subject:
                violations.append(FieldViolation(f"{where}.subject", "is the applicant"))
            parties.append((party.role, party_subject))
    if violations:
        raise InvalidArgument(violations)
    return ItemRequest(
        valid_request(request.context, subject, request.applicant.name), tuple(parties)
    )
