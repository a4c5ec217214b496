"""VerificationService: the RPCs approval systems call, served from the evidence catalogue.

Each handler is the same short story: read the request at the boundary, ask the policy, check
the item's conditions, fetch from the owning department(s) within the caller's deadline,
disclose only the allowed fields, write the audit entry, sign the proof, answer. The typed
RPCs (GetHouseholdRecord, GetSocialSecurityRecord, GetPropertyRecords) are the catalogue's
evidence types that declare their proofless.v1 message; GetEvidence serves every evidence
type as google.protobuf.Struct records; VerifyClaims runs the catalogue's claim rules.

Exactly one audit entry per request, whatever the outcome (gateway.server.call.Audited). The
door (gRPC interceptor, HTTP handler) has made the request's `Call` before a handler runs.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, TypeVar

import grpc
from google.protobuf import struct_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, status_pb2

from adapters.base import Fetched
from gateway.audit.entry import subject_of
from gateway.catalogue.claims import (
    ClaimOutcome,
    Fetch,
    Need,
    ParsedClaim,
    evaluate,
    fetch_plan,
)
from gateway.catalogue.schema import EvidenceType
from gateway.crypto.consent import ReplayCache, ReplayStore, accept_consent
from gateway.crypto.proofs import (
    ProofClaims,
    ProofSigner,
    binding,
    canonical_json,
    digest_of_json,
    new_binding_key,
    new_proof_id,
)
from gateway.domain.access import Access
from gateway.domain.disclosure import mask_and_disclose
from gateway.domain.errors import (
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ProoflessError,
    ResourceExhausted,
    Unavailable,
)
from gateway.domain.times import set_timestamp
from gateway.ops.metrics import Metrics
from gateway.ops.tracing import traced
from gateway.server.admission import Admission
from gateway.server.call import Audited, Call, current_call, new_access
from gateway.server.departments import Departments
from gateway.server.discovery import evidence_types_view, service_items_view
from gateway.server.in_force import InForce
from gateway.server.items import answer_item, plan_item
from gateway.server.ratelimit import RateLimiter, caller_rate
from gateway.server.requests import (
    RecordRequest,
    claims_request,
    evidence_request,
    item_request,
    record_request,
)
from proofless.v1 import verification_pb2 as pb
from proofless.v1 import verification_pb2_grpc as pb_grpc

# Time kept back from the caller's deadline for writing the audit entry and signing.
DEADLINE_MARGIN_S = 0.010

M = TypeVar("M", bound=Message)
Body = Callable[[Call, Access, InForce], Awaitable[M]]


@dataclass
class ServiceDeps:
    rules: Callable[[], InForce]
    departments: Departments
    audited: Audited
    audit_origin: str
    signer: ProofSigner
    pepper: bytes
    metrics: Metrics
    issuer: str
    consent_keys: Callable[[], Mapping[str, Any]]
    limiter: RateLimiter
    admission: Admission
    default_deadline_s: float = 5.0
    today: Callable[[], date] = lambda: datetime.now(UTC).date()
    #: used consent tokens; None: this process's own cache
    consent_replays: ReplayStore | None = None


class VerificationServicer(pb_grpc.VerificationServiceServicer):
    def __init__(self, deps: ServiceDeps) -> None:
        self._d = deps
        self._consent_replays = deps.consent_replays or ReplayCache()

    # ---- the shared story -----------------------------------------------------------

    def _deadline(self, context: Any) -> float:
        remaining = context.time_remaining()
        budget = self._d.default_deadline_s if remaining is None else remaining
        return time.monotonic() + max(0.0, budget - DEADLINE_MARGIN_S)

    async def _audited(self, context: Any, body: Body[M]) -> M:
        """Run `body` for the current call under one snapshot of the rules in force, the
        admission limit and the caller's rate limit, leaving exactly one audit entry."""
        del context  # the deadline is read where it is needed
        call = current_call.get()
        rules = self._d.rules()  # one snapshot per request: decisions and audit agree
        access = new_access(call, rules.policy.version, rules.catalogue.version)

        async def run() -> M:
            with self._d.admission.admit():
                rate, known = caller_rate(rules.policy, access.caller)
                await self._d.limiter.acquire(access.caller, rate, known=known)
                # the policy is the one source of roles: a certificate alone grants nothing
                if not known:
                    raise PermissionDenied("caller is not in the policy", reason="CALLER_UNKNOWN")
                if not rules.policy.has_role(access.caller, "approval"):
                    raise PermissionDenied(
                        "this RPC needs the approval role", reason="ROLE_NOT_ALLOWED"
                    )
                return await body(call, access, rules)

        return await self._d.audited.run(access, run)

    def _admit(self, call: Call, access: Access, rules: InForce, v: Any, kind: str) -> None:
        """Fill the audit record from a validated request."""
        access.service_item = v.service_item
        access.case_id = v.case_id
        access.purpose = v.purpose
        access.record_type = kind
        access.subject = subject_of(self._d.pepper, v.subject)
        item = rules.policy.item(v.service_item)
        if item is not None:
            call.service_item = item.code
            # Only a caller the item lists gets the embargo: naming a covert item must not
            # hide anyone else's attempt from the citizen.
            if item.covert_embargo_days and access.caller in item.callers:
                until = self._d.today().toordinal() + item.covert_embargo_days
                access.covert_until = date.fromordinal(until).isoformat()

    async def _conditions(self, access: Access, rules: InForce, v: Any) -> None:
        """The item's conditions on an authorized call: a purpose, the applicant's consent,
        the caller's budget for this subject. Checked after the policy, so a caller not
        entitled to the item learns nothing of them."""
        policy = rules.policy
        item = policy.item(v.service_item)
        if item is None:
            return
        if item.purpose_required and not v.purpose.strip():
            raise InvalidArgument(
                [FieldViolation("context.purpose", "this service item requires a purpose")]
            )
        if item.consent_required:
            await accept_consent(
                v.consent_token,
                issuer_keys=self._d.consent_keys(),
                applicant_id_number=v.subject,
                caller=access.caller,
                item=v.service_item,
                case_id=v.case_id,
                now=time.time(),
                replays=self._consent_replays,
            )
        caller = policy.caller(access.caller)
        if caller is not None:
            try:
                await self._d.limiter.acquire(
                    f"{access.caller}|{access.subject}", caller.subject_budget, known=True
                )
            except ResourceExhausted as exhausted:
                # The key names the subject's pseudonym: not for the message.
                raise ResourceExhausted(
                    "the caller's daily budget of calls about this subject is spent",
                    retry_after=exhausted.retry_after,
                    reason="SUBJECT_BUDGET_EXHAUSTED",
                ) from None

    def _name_check(
        self, rules: InForce, access: Access, v: Any, evidence: EvidenceType, fields: frozenset[str]
    ) -> bool:
        """A name given with the applicant is compared with the record only where the item
        grants reading the name; elsewhere it would confirm a guess, and is refused."""
        if not v.name:
            return False
        if evidence.field("name") is None or "name" not in fields:
            raise PermissionDenied(
                "applicant.name is checked only where the service item grants the name",
                reason="NAME_NOT_ALLOWED",
            )
        return True

    def _attest(
        self,
        att: pb.Attestation,
        access: Access,
        rules: InForce,
        *,
        index: int,
        fields: Sequence[str],
        data: Any,
        data_json: bytes,
        departments: Sequence[str],
        as_of: datetime | None,
        key: bytes,
        subject: str,
    ) -> None:
        """Sign the proof and fill `att` (the response's own Attestation, written in place)."""
        claims = ProofClaims(
            proof_id=access.proof_id,
            issuer=self._d.issuer,
            caller=access.caller,
            service_item=access.service_item,
            case_id=access.case_id,
            applicant=binding(key, subject),
            kind=access.record_type,
            fields=fields,
            data=data,
            digest=access.digest,
            departments=departments,
            as_of=as_of,
            issued_at=access.time,
            audit_log=self._d.audit_origin,
            audit_index=index,
            data_json=data_json,
        )
        with traced("proof.sign"):
            att.proof = self._d.signer.sign(claims)
        att.audit_index = index
        att.audit_log = self._d.audit_origin
        att.proof_id = access.proof_id
        att.disclosed_fields.extend(fields)
        att.applicant_key = _b64(key)
        if len(departments) == 1:
            department = rules.catalogue.departments.get(departments[0])
            att.department = departments[0]
            if department is not None:
                att.source_department = department.proto_enum  # type: ignore[assignment]
        if as_of is not None:
            set_timestamp(att.as_of, as_of)
        self._d.metrics.proofs_signed()

    def _finish_id(self, access: Access, data: Any) -> bytes:
        """Name the proof and digest the disclosed data; returns the data's canonical JSON,
        encoded once here and spliced into the proof payload by the signer."""
        data_json = canonical_json(data)
        access.proof_id = new_proof_id()
        access.digest = digest_of_json(data_json)
        return data_json

    async def _read(
        self,
        call: Call,
        access: Access,
        rules: InForce,
        v: RecordRequest,
        context: Any,
    ) -> tuple[frozenset[str], Fetched[Any], list[dict[str, Any]]]:
        """Authorize, check the conditions and fetch: the fields that may leave, the answer
        and its records (one, or 0..n for cardinality "many"), the applicant's name checked
        against them where the item grants the name."""
        evidence = v.evidence
        self._admit(call, access, rules, v.common, evidence.code)
        with traced("policy"):
            fields = rules.policy.authorize_record(
                access.caller, v.common.service_item, evidence.code, v.read_mask
            )
        check_name = self._name_check(rules, access, v.common, evidence, fields)
        await self._conditions(access, rules, v.common)
        fetched = await self._d.departments.fetch(
            access, evidence, v.common.subject, self._deadline(context)
        )
        many = evidence.cardinality == "many"
        records: list[dict[str, Any]] = fetched.record if many else [fetched.record]
        if check_name and any(r.get("name") != v.common.name for r in records):
            # Same answer as an unknown person: no oracle for guessing names.
            raise NotFound("no record matches the applicant", reason="RECORD_NOT_FOUND")
        return fields, fetched, records

    # ---- typed records ----------------------------------------------------------------

    async def _typed(
        self,
        request: pb.RecordRequest,
        context: Any,
        message: str,
        respond: Callable[[list[Message]], M],
    ) -> M:
        """A typed record RPC: the catalogue's evidence type for `message`, answered with its
        typed records (one, or a list for cardinality "many")."""

        async def body(call: Call, access: Access, rules: InForce) -> M:
            evidence = rules.catalogue.by_message(message)
            if evidence is None:
                raise Unavailable(
                    f"the catalogue serves no {message.rsplit('.', 1)[-1]}",
                    reason="EVIDENCE_NOT_IN_CATALOGUE",
                )
            v = record_request(
                request.context,
                request.applicant,
                list(request.read_mask.paths),
                evidence,
                today=self._d.today(),
            )
            fields, fetched, records = await self._read(call, access, rules, v, context)
            build = rules.builders[evidence.code].build
            many = evidence.cardinality == "many"
            pairs = [mask_and_disclose(build(r), fields) for r in records]
            masked = [m for m, _ in pairs]
            data: Any = [d for _, d in pairs] if many else pairs[0][1]
            response = respond(masked)
            return await self._answer(
                access, rules, v, fields=fields, data=data, fetched=fetched, response=response
            )

        return await self._audited(context, body)

    async def _answer(
        self,
        access: Access,
        rules: InForce,
        v: RecordRequest,
        *,
        fields: frozenset[str],
        data: Any,
        fetched: Fetched[Any],
        response: M,
    ) -> M:
        data_json = self._finish_id(access, data)
        index = await self._d.audited.append(access, None)
        self._attest(
            response.attestation,  # type: ignore[attr-defined]
            access,
            rules,
            index=index,
            fields=sorted(fields),
            data=data,
            data_json=data_json,
            departments=[fetched.department],
            as_of=fetched.as_of,
            key=new_binding_key(),
            subject=v.common.subject,
        )
        return response

    async def GetHouseholdRecord(
        self, request: pb.RecordRequest, context: grpc.aio.ServicerContext
    ) -> pb.HouseholdRecordResponse:
        return await self._typed(
            request,
            context,
            "proofless.v1.HouseholdRecord",
            lambda records: pb.HouseholdRecordResponse(record=records[0]),  # type: ignore[arg-type]
        )

    async def GetSocialSecurityRecord(
        self, request: pb.RecordRequest, context: grpc.aio.ServicerContext
    ) -> pb.SocialSecurityRecordResponse:
        return await self._typed(
            request,
            context,
            "proofless.v1.SocialSecurityRecord",
            lambda records: pb.SocialSecurityRecordResponse(record=records[0]),  # type: ignore[arg-type]
        )

    async def GetPropertyRecords(
        self, request: pb.RecordRequest, context: grpc.aio.ServicerContext
    ) -> pb.PropertyRecordsResponse:
        return await self._typed(
            request,
            context,
            "proofless.v1.PropertyRecord",
            lambda records: pb.PropertyRecordsResponse(records=records),  # type: ignore[arg-type]
        )

    # ---- any evidence type ------------------------------------------------------------

    async def GetEvidence(
        self, request: pb.EvidenceRequest, context: grpc.aio.ServicerContext
    ) -> pb.EvidenceResponse:
        async def body(call: Call, access: Access, rules: InForce) -> pb.EvidenceResponse:
            v = evidence_request(request, rules.catalogue, today=self._d.today())
            fields, fetched, records = await self._read(call, access, rules, v, context)
            many = v.evidence.cardinality == "many"
            masked = [{k: r[k] for k in r if k in fields} for r in records]
            response = pb.EvidenceResponse(evidence_type=v.evidence.code)
            for record in masked:
                response.records.add().update(record)
            data: Any = masked if many else masked[0]
            return await self._answer(
                access, rules, v, fields=fields, data=data, fetched=fetched, response=response
            )

        return await self._audited(context, body)

    # ---- claims -----------------------------------------------------------------------

    async def VerifyClaims(
        self, request: pb.VerifyClaimsRequest, context: grpc.aio.ServicerContext
    ) -> pb.VerifyClaimsResponse:
        async def body(call: Call, access: Access, rules: InForce) -> pb.VerifyClaimsResponse:
            today = self._d.today()
            v = claims_request(request, rules.catalogue, today=today)
            self._admit(call, access, rules, v.common, "claims")
            pseudonym = self._pseudonym
            access.claims = [
                {"type": c.type, "params": _audited_params(c, pseudonym)} for c in v.claims
            ]
            with traced("policy"):
                allowed = rules.policy.authorize_claims(
                    access.caller,
                    v.common.service_item,
                    [(c.type, c.values) for c in v.claims],
                    [c.effective for c in v.claims],
                )
            claims = [_with_values(c, values) for c, values in zip(v.claims, allowed, strict=True)]
            access.claims = [
                {"type": c.type, "params": _audited_params(c, pseudonym)} for c in claims
            ]
            if v.common.name:
                raise PermissionDenied(
                    "applicant.name is not checked by claims; leave it empty",
                    reason="NAME_NOT_ALLOWED",
                )
            await self._conditions(access, rules, v.common)
            subject = v.common.subject
            access.subjects = sorted(
                {self._pseudonym(p) for c in claims for p in c.persons.values()}
            )
            results = await self._fetch_all(access, rules, claims, subject, context)
            key = new_binding_key()
            outcomes = [
                evaluate(
                    c,
                    subject,
                    results,
                    today=today,
                    catalogue=rules.catalogue,
                    bind=lambda person: binding(key, person),
                )
                for c in claims
            ]
            data = [dict(o.disclosed, id=c.id) for c, o in zip(claims, outcomes, strict=True)]
            data_json = self._finish_id(access, data)
            index = await self._d.audited.append(access, None)
            response = pb.VerifyClaimsResponse(results=[_claim_result(o, rules) for o in outcomes])
            as_ofs = [o.as_of for o in outcomes if o.as_of is not None]
            self._attest(
                response.attestation,
                access,
                rules,
                index=index,
                fields=sorted({c.type for c in claims}),
                data=data,
                data_json=data_json,
                departments=sorted({o.department for o in outcomes}),
                as_of=min(as_ofs) if as_ofs else None,
                key=key,
                subject=subject,
            )
            return response

        return await self._audited(context, body)

    # ---- one thing, one call ------------------------------------------------------------

    async def CheckItem(
        self, request: pb.CheckItemRequest, context: grpc.aio.ServicerContext
    ) -> pb.CheckItemResponse:
        async def body(call: Call, access: Access, rules: InForce) -> pb.CheckItemResponse:
            today = self._d.today()
            declared = rules.policy.item(request.context.service_item)
            roles = declared.requirements.roles() if declared is not None else frozenset()
            v = item_request(request, roles, today=today)
            self._admit(call, access, rules, v.common, "item")
            with traced("policy"):
                item = rules.policy.grant(access.caller, v.common.service_item)
            if not item.requirements:
                raise PermissionDenied(
                    f"service item {item.code} declares no requirements; ask its records "
                    "and claims one by one",
                    reason="ITEM_HAS_NO_REQUIREMENTS",
                )
            if v.common.name:
                raise PermissionDenied(
                    "applicant.name is not checked by CheckItem; leave it empty",
                    reason="NAME_NOT_ALLOWED",
                )
            plan = plan_item(item, v.parties, v.common.subject, rules.catalogue, today=today)
            pseudonym = self._pseudonym
            access.claims = [
                {"type": s.claim.type, "params": _audited_params(s.claim, pseudonym)}
                for s in plan.claims
                if s.claim is not None
            ]
            access.subjects = sorted({pseudonym(p) for p in plan.persons()})
            await self._conditions(access, rules, v.common)
            results = await self._fetch_needs(access, rules, plan.needs(), context)
            key = new_binding_key()
            outcomes = [
                None
                if s.claim is None
                else evaluate(
                    s.claim,
                    s.subject,
                    results,
                    today=today,
                    catalogue=rules.catalogue,
                    bind=lambda person: binding(key, person),
                )
                for s in plan.claims
            ]
            response, data, as_ofs = answer_item(item, plan, outcomes, results)
            data_json = self._finish_id(access, data)
            index = await self._d.audited.append(access, None)
            self._attest(
                response.attestation,
                access,
                rules,
                index=index,
                fields=sorted(item.requirements.requirements),
                data=data,
                data_json=data_json,
                departments=sorted(set(access.departments)),
                as_of=min(as_ofs) if as_ofs else None,
                key=key,
                subject=v.common.subject,
            )
            return response

        return await self._audited(context, body)

    def _pseudonym(self, subject: str) -> str:
        return subject_of(self._d.pepper, subject)

    async def _fetch_all(
        self,
        access: Access,
        rules: InForce,
        claims: Sequence[ParsedClaim],
        subject: str,
        context: Any,
    ) -> dict[Need, Fetch | ProoflessError]:
        """Every record the claims read, each once, concurrently within the deadline; a
        failing department fails only the claims that read it."""
        return await self._fetch_needs(access, rules, fetch_plan(claims, subject), context)

    async def _fetch_needs(
        self, access: Access, rules: InForce, needs: frozenset[Need], context: Any
    ) -> dict[Need, Fetch | ProoflessError]:
        deadline = self._deadline(context)
        plan = sorted(needs)

        async def one(need: Need) -> Fetch | ProoflessError:
            evidence = rules.catalogue.evidence[need.evidence]
            try:
                fetched = await self._d.departments.fetch(access, evidence, need.subject, deadline)
            except ProoflessError as err:
                return err
            return Fetch(fetched.department, fetched.record, fetched.as_of)

        answers = await asyncio.gather(*(one(need) for need in plan))
        return dict(zip(plan, answers, strict=True))

    # ---- discovery --------------------------------------------------------------------

    async def ListServiceItems(
        self, request: pb.ListServiceItemsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListServiceItemsResponse:
        async def body(call: Call, access: Access, rules: InForce) -> pb.ListServiceItemsResponse:
            access.record_type = "catalogue"
            response = service_items_view(access.caller, rules.policy, rules.catalogue)
            await self._d.audited.append(access, None)
            return response

        return await self._audited(context, body)

    async def ListEvidenceTypes(
        self, request: pb.ListEvidenceTypesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListEvidenceTypesResponse:
        async def body(call: Call, access: Access, rules: InForce) -> pb.ListEvidenceTypesResponse:
            access.record_type = "catalogue"
            response = evidence_types_view(access.caller, rules.policy, rules.catalogue)
            await self._d.audited.append(access, None)
            return response

        return await self._audited(context, body)


# ---- helpers ---------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _with_values(claim: ParsedClaim, values: Mapping[str, Any]) -> ParsedClaim:
    """The claim with the parameters the policy allows (pinned values filled in)."""
    if values == claim.values:
        return claim
    persons = {var: values[param] for var, param in claim.spec.persons.items()}
    return ParsedClaim(claim.id, claim.spec, dict(values), persons)


def _audited_params(claim: ParsedClaim, pseudonym: Callable[[str], str]) -> dict[str, Any]:
    """A claim's parameters for the audit entry: as asked, with a person or organisation
    named by its subject pseudonym (an auditor holding the pepper can search for it)."""
    out: dict[str, Any] = {}
    effective = claim.effective
    for p in claim.spec.params:
        value = effective.get(p.name)
        if value is None:
            continue
        out[p.name] = pseudonym(value) if p.type in ("person", "organisation") else value
    return out


def _claim_result(outcome: ClaimOutcome, rules: InForce) -> pb.ClaimResult:
    department = rules.catalogue.departments.get(outcome.department)
    result = pb.ClaimResult(
        id=outcome.claim_id,
        type=outcome.claim_type,
        status=status_pb2.Status(code=getattr(code_pb2, outcome.status), message=outcome.message),
        department=outcome.department,
    )
    result.verdict = pb.Verdict.Value(f"VERDICT_{outcome.verdict}")  # type: ignore[assignment]
    if department is not None:
        result.source_department = department.proto_enum  # type: ignore[assignment]
    if outcome.as_of is not None:
        set_timestamp(result.as_of, outcome.as_of)
    return result


# struct_pb2 is imported for its side effect of registering google.protobuf.Struct
_ = struct_pb2
