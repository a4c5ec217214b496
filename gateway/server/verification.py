"""VerificationService: the RPCs approval systems call.

Each handler is the same short story: validate at the boundary, ask the policy, fetch from
the owning department(s) within the caller's deadline, disclose only the allowed fields,
write the audit entry, sign the proof, answer. Exactly one audit entry per request, whatever
the outcome; the reply MUST NOT leave before its audit entry is durably on disk
(`AuditLog.append` returns only after fsync), and if the entry cannot be written the caller
gets UNAVAILABLE and nothing unlogged is disclosed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Protocol, TypeVar

import grpc
from google.protobuf.message import Message

from adapters.base import DepartmentAdapter, DepartmentId, Fetched, RecordNotFound, RecordQuery
from gateway.audit.entry import subject_of
from gateway.crypto.consent import ReplayCache, verify_consent
from gateway.crypto.proofs import (
    ProofClaims,
    ProofSigner,
    applicant_hash,
    canonical_json,
    digest_of_json,
    new_proof_id,
)
from gateway.domain import claims as claims_mod
from gateway.domain.access import DENIED, GRANTED, Access, outcome_of
from gateway.domain.disclosure import mask_and_disclose
from gateway.domain.errors import (
    DeadlineExceeded,
    FieldViolation,
    InvalidArgument,
    NotFound,
    ProoflessError,
    Unavailable,
)
from gateway.domain.policy import Policy
from gateway.domain.times import set_timestamp
from gateway.domain.validation import (
    ValidRecordRequest,
    validate_record_request,
    validate_verify_claims,
)
from gateway.ops.metrics import Metrics
from gateway.server.admission import Admission
from gateway.server.identity import current_caller
from gateway.server.interceptors import current_request_id, current_service_item
from gateway.server.ratelimit import RateLimiter, caller_rate
from proofless.v1 import verification_pb2 as pb
from proofless.v1 import verification_pb2_grpc as pb_grpc

log = logging.getLogger("proofless.service")

RECORD_MESSAGES: Mapping[str, type[Message]] = {
    "household": pb.HouseholdRecord,
    "social_security": pb.SocialSecurityRecord,
    "property": pb.PropertyRecord,
}
# Time kept back from the caller's deadline for writing the audit entry and signing.
DEADLINE_MARGIN_S = 0.010

M = TypeVar("M", bound=Message)


class Cancelled(ProoflessError):
    """The call ended before its answer (the caller cancelled, or shutdown's grace period ran
    out). Only ever written to the audit log: there is nobody left to answer."""

    code = grpc.StatusCode.CANCELLED
    reason = "CANCELLED"


class AuditAppender(Protocol):
    """What the servicer needs of the audit log (gateway.audit.log.AuditLog)."""

    origin: str

    async def append(self, entry: dict[str, Any]) -> Any: ...


@dataclass
class ServiceDeps:
    policy: Callable[[], Policy]
    adapters: Mapping[str, DepartmentAdapter[Any]]
    audit: AuditAppender
    signer: ProofSigner
    pepper: bytes
    metrics: Metrics
    issuer: str
    consent_keys: Mapping[str, Any]
    limiter: RateLimiter
    admission: Admission
    default_deadline_s: float = 5.0
    today: Callable[[], date] = lambda: datetime.now(UTC).date()


class VerificationServicer(pb_grpc.VerificationServiceServicer):
    def __init__(self, deps: ServiceDeps) -> None:
        self._d = deps
        self._consent_replays = ReplayCache()
        # calls inside `_audited`: shutdown waits for them before the audit log closes
        self._active = 0
        self._idle = asyncio.Event()
        self._idle.set()

    # ---- the shared story -----------------------------------------------------------

    def _deadline(self, context: grpc.aio.ServicerContext) -> float:
        remaining = context.time_remaining()
        budget = self._d.default_deadline_s if remaining is None else remaining
        return time.monotonic() + max(0.0, budget - DEADLINE_MARGIN_S)

    async def _audited(
        self,
        rpc: str,
        context: grpc.aio.ServicerContext,
        body: Callable[[Access, Policy], Awaitable[M]],
    ) -> M:
        """Run `body`, then write exactly one audit entry for it, success or not."""
        caller = current_caller.get()
        policy = self._d.policy()  # one snapshot per request: decisions and audit agree
        access = Access(
            rpc=rpc,
            request_id=current_request_id.get(),
            caller=caller.id,
            time=datetime.now(UTC),
            started=time.perf_counter(),
            policy=policy.version,
        )
        self._active += 1
        self._idle.clear()
        try:
            with self._d.admission.admit():
                rate, known = caller_rate(policy, caller.id)
                await self._d.limiter.acquire(caller.id, rate, known=known)
                response = await body(access, policy)
        # Each branch writes the entry only if none was started: a failure after a granted
        # entry (or inside the append itself) must not leave a second one.
        except ProoflessError as err:
            if not access.appending:
                await self._append(access, err)
            raise
        except asyncio.CancelledError:
            # The caller went away, or shutdown's grace period ran out: the request still
            # leaves its one entry.
            if not access.appending:
                await self._append(access, Cancelled("the call was cancelled", reason="CANCELLED"))
            raise
        except Exception as exc:
            # An unexpected failure still leaves its entry; the interceptor answers INTERNAL.
            log.exception("unexpected failure", extra={"rpc": rpc, "request_id": access.request_id})
            if not access.appending:
                await self._append(access, Unavailable("internal error", reason="INTERNAL"))
            raise exc
        finally:
            self._active -= 1
            if not self._active:
                self._idle.set()
        return response

    async def drained(self) -> None:
        """Return once no call is between arrival and its audit entry.

        `server.stop(grace)` cancels the calls still running when the grace period ends, but
        their handlers then still write their CANCELLED entries: the audit log MUST NOT close
        before they have (the server bounds this wait).
        """
        await self._idle.wait()

    async def _append(self, access: Access, err: ProoflessError | None) -> int:
        entry = access.entry(
            outcome=GRANTED if err is None else outcome_of(err),
            code=grpc.StatusCode.OK if err is None else err.code,
            reason="" if err is None else err.reason,
            latency_us=int((time.perf_counter() - access.started) * 1e6),
        )
        t0 = time.perf_counter()
        access.appending = True
        try:
            receipt = await self._d.audit.append(entry)
        except ProoflessError:
            raise
        except Exception as exc:
            raise Unavailable(
                "the audit log cannot be written", reason="AUDIT_UNAVAILABLE"
            ) from exc
        self._d.metrics.audit_appended(time.perf_counter() - t0, int(receipt.index) + 1)
        # every entry audited as denied is counted by its reason (policy, consent, rate limit)
        if err is not None and outcome_of(err) == DENIED:
            self._d.metrics.denial(err.reason)
        return int(receipt.index)

    def _admit(self, policy: Policy, access: Access, v: Any, kind: str) -> None:
        """Fill the access from a validated request."""
        access.service_item = v.service_item
        access.case_id = v.case_id
        access.purpose = v.purpose
        access.record_type = kind
        access.subject = subject_of(self._d.pepper, v.id_number)
        item = policy.item(v.service_item)
        if item is not None:
            current_service_item.get([""])[0] = item.code
            if item.covert_embargo_days:
                until = self._d.today().toordinal() + item.covert_embargo_days
                access.covert_until = date.fromordinal(until).isoformat()

    def _check_conditions(self, policy: Policy, access: Access, v: Any) -> None:
        """The item's conditions on an authorized call: a purpose, the applicant's consent.
        Checked after the policy, so a caller not entitled to the item learns nothing of them."""
        item = policy.item(v.service_item)
        if item is None:
            return
        if item.purpose_required and not v.purpose.strip():
            raise InvalidArgument(
                [FieldViolation("context.purpose", "this service item requires a purpose")]
            )
        if not item.consent_required:
            return
        verify_consent(
            v.consent_token,
            issuer_keys=self._d.consent_keys,
            applicant_id_number=v.id_number,
            caller=access.caller,
            item=v.service_item,
            case_id=v.case_id,
            now=time.time(),
            replay_cache=self._consent_replays,
        )

    async def _fetch(
        self, access: Access, department: str, id_number: str, deadline: float
    ) -> Fetched[Any]:
        adapter = self._d.adapters.get(department)
        if adapter is None:
            raise Unavailable(f"department {department} is not configured", reason="NO_ADAPTER")
        access.departments.append(department)
        t0 = time.perf_counter()
        outcome = "ok"
        try:
            return await adapter.fetch(RecordQuery(id_number, access.request_id), deadline)
        except RecordNotFound:
            outcome = "not_found"
            raise
        except DeadlineExceeded:
            outcome = "timeout"
            raise
        except ProoflessError:
            outcome = "error"
            raise
        except Exception as exc:  # an adapter bug must not reach the caller as a stack trace
            outcome = "error"
            log.exception("adapter failure", extra={"department": department})
            raise Unavailable(f"department {department} failed", reason="ADAPTER_FAILURE") from exc
        finally:
            self._d.metrics.department_call(department, outcome, time.perf_counter() - t0)

    def _attest(
        self,
        att: pb.Attestation,
        access: Access,
        *,
        index: int,
        fields: Sequence[str],
        data: Any,
        data_json: bytes,
        departments: Sequence[DepartmentId],
        as_of: datetime | None,
        applicant: str,
    ) -> None:
        """Sign the proof and fill `att` (the response's own Attestation, written in place)."""
        claims = ProofClaims(
            proof_id=access.proof_id,
            issuer=self._d.issuer,
            caller=access.caller,
            service_item=access.service_item,
            case_id=access.case_id,
            applicant=applicant_hash(applicant),
            kind=access.record_type,
            fields=fields,
            data=data,
            digest=access.digest,
            departments=departments,
            as_of=as_of,
            issued_at=access.time,
            audit_log=self._d.audit.origin,
            audit_index=index,
            data_json=data_json,
        )
        att.proof = self._d.signer.sign(claims)
        att.audit_index = index
        att.audit_log = self._d.audit.origin
        att.proof_id = access.proof_id
        att.disclosed_fields.extend(fields)
        if len(departments) == 1:
            att.source_department = claims_mod.DEPARTMENT_ENUM[departments[0]]
        if as_of is not None:
            set_timestamp(att.as_of, as_of)
        self._d.metrics.proofs_signed()

    async def _record(
        self,
        access: Access,
        policy: Policy,
        request: pb.RecordRequest,
        context: grpc.aio.ServicerContext,
        kind: str,
    ) -> tuple[ValidRecordRequest, frozenset[str], Fetched[Any]]:
        v = validate_record_request(request, RECORD_MESSAGES[kind])
        self._admit(policy, access, v, kind)
        fields = policy.authorize_record(access.caller, v.service_item, kind, v.read_mask)
        self._check_conditions(policy, access, v)
        fetched = await self._fetch(access, kind, v.id_number, self._deadline(context))
        return v, fields, fetched

    def _finish_id(self, access: Access, data: Any) -> bytes:
        """Name the proof and digest the disclosed data; returns the data's canonical JSON,
        encoded once here and spliced into the proof payload by the signer."""
        data_json = canonical_json(data)
        access.proof_id = new_proof_id()
        access.digest = digest_of_json(data_json)
        return data_json

    # ---- the RPCs ---------------------------------------------------------------------

    async def _one_record(
        self,
        rpc: str,
        request: pb.RecordRequest,
        context: grpc.aio.ServicerContext,
        kind: str,
        respond: Callable[[Any], M],
    ) -> M:
        """A department's record of one person (household, social security)."""

        async def body(access: Access, policy: Policy) -> M:
            v, fields, fetched = await self._record(access, policy, request, context, kind)
            if v.name and v.name != fetched.record.name:
                # Same answer as an unknown person: no oracle for guessing names.
                raise NotFound("no record matches the applicant", reason="RECORD_NOT_FOUND")
            masked, data = mask_and_disclose(fetched.record, fields)
            return await self._answer(
                access, v=v, fields=fields, data=data, fetched=fetched, response=respond(masked)
            )

        return await self._audited(rpc, context, body)

    async def GetHouseholdRecord(
        self, request: pb.RecordRequest, context: grpc.aio.ServicerContext
    ) -> pb.HouseholdRecordResponse:
        return await self._one_record(
            "GetHouseholdRecord",
            request,
            context,
            "household",
            lambda record: pb.HouseholdRecordResponse(record=record),
        )

    async def GetSocialSecurityRecord(
        self, request: pb.RecordRequest, context: grpc.aio.ServicerContext
    ) -> pb.SocialSecurityRecordResponse:
        return await self._one_record(
            "GetSocialSecurityRecord",
            request,
            context,
            "social_security",
            lambda record: pb.SocialSecurityRecordResponse(record=record),
        )

    async def GetPropertyRecords(
        self, request: pb.RecordRequest, context: grpc.aio.ServicerContext
    ) -> pb.PropertyRecordsResponse:
        async def body(access: Access, policy: Policy) -> pb.PropertyRecordsResponse:
            v, fields, fetched = await self._record(access, policy, request, context, "property")
            pairs = [mask_and_disclose(r, fields) for r in fetched.record]
            masked = [m for m, _ in pairs]
            data = [d for _, d in pairs]
            return await self._answer(
                access,
                v=v,
                fields=fields,
                data=data,
                fetched=fetched,
                response=pb.PropertyRecordsResponse(records=masked),
            )

        return await self._audited("GetPropertyRecords", context, body)

    async def _answer(
        self,
        access: Access,
        *,
        v: ValidRecordRequest,
        fields: frozenset[str],
        data: Any,
        fetched: Fetched[Any],
        response: M,
    ) -> M:
        data_json = self._finish_id(access, data)
        index = await self._append(access, None)
        self._attest(
            response.attestation,  # type: ignore[attr-defined]
            access,
            index=index,
            fields=sorted(fields),
            data=data,
            data_json=data_json,
            departments=[fetched.department],
            as_of=fetched.as_of,
            applicant=v.id_number,
        )
        return response

    async def VerifyClaims(
        self, request: pb.VerifyClaimsRequest, context: grpc.aio.ServicerContext
    ) -> pb.VerifyClaimsResponse:
        async def body(access: Access, policy: Policy) -> pb.VerifyClaimsResponse:
            v = validate_verify_claims(request)
            self._admit(policy, access, v, "claims")
            access.claims = tuple(c.type for c in v.claims)
            policy.authorize_claims(access.caller, v.service_item, [c.type for c in v.claims])
            self._check_conditions(policy, access, v)
            deadline = self._deadline(context)
            plan = sorted(claims_mod.fetch_plan(v.claims, v.id_number))
            fetched = await asyncio.gather(
                *(self._fetch_or_error(access, dept, idn, deadline) for dept, idn in plan)
            )
            results = dict(zip(plan, fetched, strict=True))
            today = self._d.today()
            outcomes = [claims_mod.evaluate(c, v.id_number, results, today=today) for c in v.claims]
            data = [dict(o.disclosed, id=c.id) for c, o in zip(v.claims, outcomes, strict=True)]
            data_json = self._finish_id(access, data)
            index = await self._append(access, None)
            response = pb.VerifyClaimsResponse(results=[o.to_result() for o in outcomes])
            as_ofs = [o.as_of for o in outcomes if o.as_of is not None]
            self._attest(
                response.attestation,
                access,
                index=index,
                fields=sorted({c.type for c in v.claims}),
                data=data,
                data_json=data_json,
                departments=sorted({c.department for c in v.claims}),
                as_of=min(as_ofs) if as_ofs else None,
                applicant=v.id_number,
            )
            return response

        return await self._audited("VerifyClaims", context, body)

    async def _fetch_or_error(
        self, access: Access, department: str, id_number: str, deadline: float
    ) -> Fetched[Any] | ProoflessError:
        try:
            return await self._fetch(access, department, id_number, deadline)
        except ProoflessError as err:
            return err

    async def ListServiceItems(
        self, request: pb.ListServiceItemsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListServiceItemsResponse:
        async def body(access: Access, policy: Policy) -> pb.ListServiceItemsResponse:
            access.record_type = "catalogue"
            response = pb.ListServiceItemsResponse(
                caller=access.caller, policy_version=policy.version
            )
            for item in policy.items_for(access.caller):
                out = response.items.add(
                    code=item.code,
                    name=item.name,
                    claims=sorted(item.claims),
                    consent_required=item.consent_required,
                    purpose_required=item.purpose_required,
                )
                for record_type, fields in sorted(item.records.items()):
                    out.records.add(record_type=record_type, fields=sorted(fields))
            await self._append(access, None)
            return response

        return await self._audited("ListServiceItems", context, body)
