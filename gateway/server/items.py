"""CheckItem's plan and answer: a service item's requirements (gateway/domain/requirements.py)
turned into catalogue claims and prefill reads for one request, and their results into the
item's verdict, the response and the proof's data. No I/O: the servicer fetches.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from google.rpc import code_pb2, status_pb2

from gateway.catalogue.claims import ClaimOutcome, Fetch, Need, ParsedClaim, parse_claim
from gateway.catalogue.schema import Catalogue
from gateway.domain.errors import InvalidArgument, ProoflessError, RecordNotFound
from gateway.domain.policy import ServiceItem
from gateway.domain.requirements import (
    APPLICANT,
    UNDETERMINED,
    Requirement,
    combine,
    decide,
)
from gateway.domain.times import set_timestamp
from proofless.v1 import verification_pb2 as pb


@dataclass(frozen=True)
class ClaimStep:
    requirement: Requirement
    party: str  # "" for the applicant's own requirement, else "role#n"
    claim: ParsedClaim | None  # None: the request names no party for the role
    missing_role: str = ""
    subject: str = ""  # whose own evidence the claim reads: the applicant, or the party


@dataclass(frozen=True)
class PrefillStep:
    requirement: Requirement
    party: str
    need: Need | None  # None: the request names no party for the role


@dataclass(frozen=True)
class ItemPlan:
    claims: tuple[ClaimStep, ...]
    prefills: tuple[PrefillStep, ...]

    def needs(self) -> frozenset[Need]:
        found = {n for s in self.claims if s.claim is not None for n in s.claim.needs(s.subject)}
        found |= {s.need for s in self.prefills if s.need is not None}
        return frozenset(found)

    def persons(self) -> set[str]:
        """Everyone other than the applicant whose record the plan reads."""
        people = {p for s in self.claims if s.claim is not None for p in s.claim.persons.values()}
        people |= {s.subject for s in self.claims if s.claim is not None and s.party}
        people |= {s.need.subject for s in self.prefills if s.need is not None and s.party}
        return people


def _text(value: Any) -> str:
    """A policy value as a request parameter (request parameters are text)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def plan_item(
    item: ServiceItem,
    parties: Sequence[tuple[str, str]],
    applicant: str,
    catalogue: Catalogue,
    *,
    today: date,
) -> ItemPlan:
    """Each claim requirement as a catalogue claim (once per party of its role), each prefill
    as a record to read. Raises InvalidArgument when a party cannot stand where the
    requirement puts it (e.g. an organisation where a person is needed)."""
    by_role: dict[str, list[str]] = {}
    for role, subject in parties:
        by_role.setdefault(role, []).append(subject)
    claims: list[ClaimStep] = []
    violations = []
    for n, req in enumerate(item.requirements.claims()):
        role = next(iter(sorted(req.roles())), "")  # at most one (the policy file checks)
        subjects = by_role.get(role, []) if role else [""]
        if role and not subjects:
            claims.append(ClaimStep(req, "", None, missing_role=role))
            continue
        for k, party_subject in enumerate(subjects, 1):
            raw: dict[str, str] = {}
            for name, source in req.params.items():
                if source.item_attribute:
                    raw[name] = item.attributes[source.item_attribute]
                elif source.party == APPLICANT:
                    raw[name] = applicant
                elif source.party:
                    raw[name] = party_subject
                else:
                    raw[name] = _text(source.value)
            label = f"{role}#{k}" if role else ""
            subject = party_subject if req.subject_party else applicant
            claim, problems = parse_claim(
                n, req.name, req.claim, raw, catalogue, applicant=subject, today=today
            )
            violations += problems
            if claim is not None:
                claims.append(ClaimStep(req, label, claim, subject=subject))
    if violations:
        raise InvalidArgument(violations)
    prefills: list[PrefillStep] = []
    for req in item.requirements.prefills():
        if not req.subject_party:
            prefills.append(PrefillStep(req, "", Need(req.prefill, applicant)))
            continue
        subjects = by_role.get(req.subject_party, [])
        if not subjects:
            prefills.append(PrefillStep(req, "", None))
        for k, party_subject in enumerate(subjects, 1):
            label = f"{req.subject_party}#{k}"
            prefills.append(PrefillStep(req, label, Need(req.prefill, party_subject)))
    return ItemPlan(tuple(claims), tuple(prefills))


def _status(code: str, message: str) -> status_pb2.Status:
    return status_pb2.Status(code=getattr(code_pb2, code, code_pb2.UNKNOWN), message=message)


def _verdict(value: str) -> int:
    return int(pb.Verdict.Value(f"VERDICT_{value}"))


def answer_item(
    item: ServiceItem,
    plan: ItemPlan,
    outcomes: Sequence[ClaimOutcome | None],
    results: Mapping[Need, Fetch | ProoflessError],
) -> tuple[pb.CheckItemResponse, dict[str, Any], list[Any]]:
    """The response, the proof's data (no record value but the prefill the item allows, no
    raw ID number: parties by role label, persons in claim parameters by binding), and the
    as-of times read."""
    spec = item.requirements
    response = pb.CheckItemResponse(service_item=item.code)
    per_requirement: dict[str, list[str]] = {}
    disclosed_requirements: list[dict[str, Any]] = []
    as_ofs: list[Any] = []
    for step, outcome in zip(plan.claims, outcomes, strict=True):
        req = step.requirement
        result = pb.RequirementResult(name=req.name, kind="claim", claim_type=req.claim)
        result.party = step.party
        if outcome is None:
            verdict = UNDETERMINED
            result.status.CopyFrom(
                _status("INVALID_ARGUMENT", f"the request names no {step.missing_role}")
            )
            params: dict[str, Any] = {}
        else:
            verdict = outcome.verdict
            result.status.CopyFrom(_status(outcome.status, outcome.message))
            result.department = outcome.department
            if outcome.as_of is not None:
                set_timestamp(result.as_of, outcome.as_of)
                as_ofs.append(outcome.as_of)
            params = dict(outcome.disclosed.get("params", {}))
        result.verdict = _verdict(verdict)  # type: ignore[assignment]
        response.requirements.append(result)
        per_requirement.setdefault(req.name, []).append(verdict)
        entry: dict[str, Any] = {"name": req.name, "claim": req.claim, "params": params}
        entry["verdict"] = verdict
        if step.party:
            entry["party"] = step.party
        disclosed_requirements.append(entry)
    verdicts = {name: combine("all", found) for name, found in per_requirement.items()}
    overall, groups = decide(spec, verdicts)
    for name, verdict in groups.items():
        group = spec.groups[name]
        response.requirements.append(
            pb.RequirementResult(name=name, kind="group", verdict=_verdict(verdict))  # type: ignore[arg-type]
        )
        disclosed_requirements.append(
            {"name": name, "group": group.mode, "members": list(group.members), "verdict": verdict}
        )
    response.verdict = _verdict(overall)  # type: ignore[assignment]
    prefill_data: list[dict[str, Any]] = []
    for pstep in plan.prefills:
        req = pstep.requirement
        out = pb.Prefill(name=req.name, evidence_type=req.prefill, party=pstep.party)
        records: list[dict[str, Any]] = []
        if pstep.need is None:
            out.status.CopyFrom(
                _status("INVALID_ARGUMENT", f"the request names no {req.subject_party}")
            )
        else:
            answer = results.get(pstep.need)
            if isinstance(answer, Fetch):
                rows = answer.record if isinstance(answer.record, list) else [answer.record]
                records = [{k: r[k] for k in req.fields if k in r} for r in rows]
                for record in records:
                    out.records.add().update(record)
                if answer.as_of is not None:
                    as_ofs.append(answer.as_of)
            elif isinstance(answer, RecordNotFound):
                out.status.CopyFrom(_status("NOT_FOUND", "the department does not know them"))
            elif isinstance(answer, ProoflessError):
                out.status.CopyFrom(
                    _status(answer.code.name, f"the department could not answer ({answer.reason})")
                )
        response.prefill.append(out)
        item_data: dict[str, Any] = {"name": req.name, "evidence": req.prefill, "records": records}
        if pstep.party:
            item_data["party"] = pstep.party
        prefill_data.append(item_data)
    data = {
        "item": item.code,
        "verdict": overall,
        "requirements": disclosed_requirements,
        "prefill": prefill_data,
    }
    return response, data, as_ofs
