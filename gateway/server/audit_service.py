"""AuditService: the log's gRPC face for auditors, and ListAccesses for the citizen portal.

A thin shell: the caller's identity comes from its certificate and its roles from the policy
in force (removing a caller's role from the policy revokes it at the next reload); errors are
raised as ProoflessError and the interceptor turns them into rich statuses.

ListAccesses answers "who accessed my records" for one citizen. A portal must present the
citizen's token from the identity provider (gateway.crypto.citizen), is held to its rate in the
policy, and each listing is itself an audit entry under the citizen's subject. Entries hidden
from the citizen (covert accesses under embargo) are filtered before a page is cut, and the
page token is sealed for the subject (gateway.crypto.pagetoken): it tells nothing and works
for no one else. The listing comes from the subject index in force (gateway.audit.index):
this log's, in memory, or the cluster's in PostgreSQL, which every shard feeds; a token holds
a position in that index and is refused by any other.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf import timestamp_pb2

from gateway.audit import merkle
from gateway.audit.entry import subject_of
from gateway.audit.index import AccessIndex, IndexedAccess, LogIndex
from gateway.audit.log import AuditLog
from gateway.crypto.citizen import verify_citizen_token
from gateway.crypto.pagetoken import BadPageToken, PageTokens
from gateway.domain.errors import FieldViolation, InvalidArgument, NotFound, PermissionDenied
from gateway.domain.idnumber import validate_id_number
from gateway.domain.policy import Policy
from gateway.server.call import Audited, current_call, new_access
from gateway.server.identity import current_caller
from gateway.server.ratelimit import RateLimiter, caller_rate
from proofless.v1 import audit_pb2, audit_pb2_grpc

MAX_ENTRIES = 1000
DEFAULT_PAGE = 100
MAX_PAGE = 1000


def _bad(field: str, why: str) -> InvalidArgument:
    return InvalidArgument([FieldViolation(field, why)])


def _access(found: IndexedAccess) -> audit_pb2.Access:
    access = audit_pb2.Access(
        caller=found.caller,
        service_item=found.service_item,
        purpose=found.purpose,
        record_type=found.record_type,
        outcome=found.outcome,
        audit_index=found.index,
        audit_log=found.log,
    )
    if found.time is not None:
        ts = timestamp_pb2.Timestamp()
        ts.FromDatetime(found.time)
        access.time.CopyFrom(ts)
    return access


@dataclass(frozen=True)
class AuditDeps:
    log: AuditLog
    pepper: bytes
    policy: Callable[[], Policy]  # the policy in force
    citizen_keys: Callable[[], Mapping[str, Any]]  # the identity provider's keys in force
    limiter: RateLimiter
    audited: Audited
    catalogue_version: Callable[[], str] = lambda: ""
    #: the subject index ListAccesses reads; None: this log's, in memory
    index: AccessIndex | None = None


class AuditServicer(audit_pb2_grpc.AuditServiceServicer):
    def __init__(self, deps: AuditDeps) -> None:
        self._d = deps
        self._log = deps.log
        self._pepper = deps.pepper
        self._index: AccessIndex = deps.index or LogIndex(deps.log)
        # a token names a position in one index: another index (another shard's memory
        # index, another PostgreSQL schema) refuses it rather than misread it
        self._pages = PageTokens(deps.pepper, f"ListAccesses {self._index.scope}")

    def _require(self, *roles: str) -> str:
        """The caller's id, if the policy in force gives it one of `roles`."""
        caller = current_caller.get()
        policy = self._d.policy()
        for role in roles:
            if policy.has_role(caller.id, role):
                return role
        raise PermissionDenied(
            f"this RPC needs the {' or '.join(roles)} role", reason="ROLE_NOT_ALLOWED"
        )

    async def GetCheckpoint(
        self, request: audit_pb2.GetCheckpointRequest, context: grpc.aio.ServicerContext
    ) -> audit_pb2.Checkpoint:
        self._require("auditor")
        cp = self._log.latest_checkpoint()
        return audit_pb2.Checkpoint(
            origin=cp.origin, tree_size=cp.size, root_hash=cp.root, signed_note=cp.text
        )

    async def GetEntries(
        self, request: audit_pb2.GetEntriesRequest, context: grpc.aio.ServicerContext
    ) -> audit_pb2.GetEntriesResponse:
        self._require("auditor")
        size = self._log.tree_size
        if request.start >= size:
            raise _bad("start", f"must be below the tree size {size}")
        if request.end <= request.start:
            raise _bad("end", "must be greater than start")
        if request.end - request.start > MAX_ENTRIES:
            raise _bad("end", f"at most {MAX_ENTRIES} entries per call")
        end = min(request.end, size)
        entries = await self._log.entries(request.start, end)
        return audit_pb2.GetEntriesResponse(start=request.start, entries=entries)

    async def GetInclusionProof(
        self, request: audit_pb2.GetInclusionProofRequest, context: grpc.aio.ServicerContext
    ) -> audit_pb2.InclusionProof:
        self._require("auditor")
        tree_size = request.tree_size or self._log.latest_checkpoint().size
        if tree_size > self._log.tree_size:
            raise NotFound(f"the log has no tree of size {tree_size} yet", reason="NO_SUCH_TREE")
        if request.index >= tree_size:
            raise _bad("index", f"must be below tree_size {tree_size}")
        hashes = await self._log.inclusion_proof(request.index, tree_size)
        (leaf,) = await self._log.entries(request.index, request.index + 1)
        cp = await self._log.checkpoint_at(tree_size)
        return audit_pb2.InclusionProof(
            index=request.index,
            tree_size=tree_size,
            leaf_hash=merkle.leaf_hash(leaf),
            hashes=hashes,
            signed_note=cp.text if cp is not None else "",
        )

    async def GetConsistencyProof(
        self, request: audit_pb2.GetConsistencyProofRequest, context: grpc.aio.ServicerContext
    ) -> audit_pb2.ConsistencyProof:
        self._require("auditor")
        if not 0 < request.first <= request.second:
            raise _bad("first", "must satisfy 0 < first <= second")
        if request.second > self._log.tree_size:
            raise NotFound(
                f"the log has no tree of size {request.second} yet", reason="NO_SUCH_TREE"
            )
        hashes = await self._log.consistency_proof(request.first, request.second)
        return audit_pb2.ConsistencyProof(first=request.first, second=request.second, hashes=hashes)

    async def ListAccesses(
        self, request: audit_pb2.ListAccessesRequest, context: grpc.aio.ServicerContext
    ) -> audit_pb2.ListAccessesResponse:
        policy = self._d.policy()
        access = new_access(current_call.get(), policy.version, self._d.catalogue_version())
        access.record_type = "accesses"

        async def body() -> audit_pb2.ListAccessesResponse:
            role = self._require("portal", "auditor")
            caller = current_caller.get()
            rate, known = caller_rate(policy, caller.id)
            await self._d.limiter.acquire(caller.id, rate, known=known)
            id_number = _id_number(request.id_number)
            subject = subject_of(self._pepper, id_number)
            # the listing is an access to the citizen's data: the citizen sees it too
            access.subject = subject
            if role == "portal":
                verify_citizen_token(
                    request.citizen_token,
                    issuer_keys=self._d.citizen_keys(),
                    id_number=id_number,
                    portal=caller.id,
                    now=time.time(),
                )
            # A listing sees the index as it was at its first page: its own entries (each
            # page is an access about the citizen) and later ones, from any shard, never
            # extend it.
            if request.page_token:
                try:
                    start, bound = self._pages.open(request.page_token, subject)
                except BadPageToken:
                    raise _bad("page_token", "is not a token this service issued") from None
            else:
                start, bound = 0, await self._index.snapshot()
            reply = await self._list(
                subject, start, bound, request.page_size, auditor=role == "auditor"
            )
            await self._d.audited.append(access, None)
            return reply

        return await self._d.audited.run(access, body)

    async def _list(
        self, subject: str, start: int, bound: int, page_size: int, *, auditor: bool
    ) -> audit_pb2.ListAccessesResponse:
        page_size = min(page_size or DEFAULT_PAGE, MAX_PAGE)
        # the index leaves out what the citizen may not see before the page is cut: a hidden
        # entry never shapes a page or a token
        today = None if auditor else datetime.now(UTC).date()
        found = await self._index.page(
            subject, start=start, bound=bound, limit=page_size + 1, today=today
        )
        next_token = ""
        if len(found) > page_size:
            next_token = self._pages.seal(found[page_size].position, bound, subject)
            del found[page_size:]
        return audit_pb2.ListAccessesResponse(
            accesses=[_access(a) for a in found], next_page_token=next_token
        )


def _id_number(text: str) -> str:
    """The citizen's ID number as the log's subjects are keyed, if it is one (GB 11643)."""
    return validate_id_number(text.strip(), "id_number")
