"""AuditService: the log's gRPC face for auditors, and ListAccesses for the citizen portal.

A thin shell: roles come from the caller certificate (`require_role`), errors are raised as
ProoflessError and the lead's interceptor turns them into rich statuses.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from typing import Any

import grpc
from google.protobuf import timestamp_pb2

from gateway.audit import merkle
from gateway.audit.entry import KIND_ACCESS, subject_of
from gateway.audit.log import AuditLog
from gateway.domain.errors import FieldViolation, InvalidArgument, NotFound, PermissionDenied
from gateway.server.identity import current_caller, require_role
from proofless.v1 import audit_pb2, audit_pb2_grpc

MAX_ENTRIES = 1000
DEFAULT_PAGE = 100
_PAGE_TOKEN = re.compile(r"[0-9]{1,20}")
MAX_PAGE = 1000
ID_LENGTH = 18


def _bad(field: str, why: str) -> InvalidArgument:
    return InvalidArgument([FieldViolation(field, why)])


def _timestamp(text: Any) -> timestamp_pb2.Timestamp | None:
    ts = timestamp_pb2.Timestamp()
    try:
        ts.FromJsonString(str(text))
    except ValueError:
        return None
    return ts


def _hidden_from_citizen(entry: dict[str, Any], today: date) -> bool:
    """Covert accesses (by policy) stay hidden from the portal until their embargo date."""
    until = entry.get("covert_until")
    if not until:
        return False
    try:
        return date.fromisoformat(str(until)) > today
    except ValueError:
        return True  # an unreadable embargo errs on the side of the investigation


class AuditServicer(audit_pb2_grpc.AuditServiceServicer):
    def __init__(self, log: AuditLog, pepper: bytes) -> None:
        self._log = log
        self._pepper = pepper

    async def GetCheckpoint(
        self, request: audit_pb2.GetCheckpointRequest, context: grpc.aio.ServicerContext
    ) -> audit_pb2.Checkpoint:
        require_role("auditor")
        cp = self._log.latest_checkpoint()
        return audit_pb2.Checkpoint(
            origin=cp.origin, tree_size=cp.size, root_hash=cp.root, signed_note=cp.text
        )

    async def GetEntries(
        self, request: audit_pb2.GetEntriesRequest, context: grpc.aio.ServicerContext
    ) -> audit_pb2.GetEntriesResponse:
        require_role("auditor")
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
        require_role("auditor")
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
        require_role("auditor")
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
        caller = current_caller.get()
        if not caller.roles & {"portal", "auditor"}:
            raise PermissionDenied(
                "this RPC needs the portal or auditor role", reason="ROLE_NOT_ALLOWED"
            )
        auditor = "auditor" in caller.roles
        id_number = request.id_number.strip()
        if not id_number:
            raise _bad("id_number", "is required")
        if len(id_number) > ID_LENGTH:
            raise _bad("id_number", f"has more than {ID_LENGTH} characters")
        id_number = id_number[:-1] + id_number[-1].upper()  # the check character X
        page_size = min(request.page_size or DEFAULT_PAGE, MAX_PAGE)
        start = 0
        if request.page_token:
            # ASCII digits only: str.isdigit() also admits "²" and other digits int() refuses
            if not _PAGE_TOKEN.fullmatch(request.page_token):
                raise _bad("page_token", "is not a token this service issued")
            start = int(request.page_token)

        subject = subject_of(self._pepper, id_number)
        indexes = [i for i in await self._log.accesses(subject) if i >= start]
        today = datetime.now(UTC).date()
        accesses: list[audit_pb2.Access] = []
        next_token = ""
        for index in indexes:
            if len(accesses) == page_size:
                next_token = str(index)
                break
            (line,) = await self._log.entries(index, index + 1)
            entry = json.loads(line)
            if entry.get("kind") != KIND_ACCESS:
                continue
            if not auditor and _hidden_from_citizen(entry, today):
                continue
            access = audit_pb2.Access(
                caller=str(entry.get("caller", "")),
                service_item=str(entry.get("service_item", "")),
                purpose=str(entry.get("purpose", "")),
                record_type=str(entry.get("record_type", "")),
                outcome=str(entry.get("outcome", "")),
                audit_index=index,
            )
            ts = _timestamp(entry.get("time"))
            if ts is not None:
                access.time.CopyFrom(ts)
            accesses.append(access)
        return audit_pb2.ListAccessesResponse(accesses=accesses, next_page_token=next_token)
