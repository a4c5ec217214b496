"""Red-team item 10: one source of roles.

VerificationService never checked the `approval` role, and AuditService read roles from the
certificate alone: removing `[callers.auditor]` from the policy revoked nothing. The policy in
force is now the one source of roles; a certificate names the caller, nothing more.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from proofless.v1 import audit_pb2
from proofless.v1 import verification_pb2 as pb
from tests.support.stack import ROOT, Stack

pytestmark = pytest.mark.asyncio(loop_scope="module")


def reason_of(err: grpc.aio.AioRpcError, details: Callable[..., list[Any]]) -> str:
    return next(d.reason for d in details(err) if hasattr(d, "reason"))


async def test_a_portal_cannot_use_the_verification_service(
    stack: Stack, details: Callable[..., list[Any]]
) -> None:
    portal = await stack.verification("citizen-portal")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await portal.ListServiceItems(pb.ListServiceItemsRequest())
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert reason_of(info.value, details) == "ROLE_NOT_ALLOWED"


async def test_removing_the_auditor_from_the_policy_revokes_the_role(
    make_stack: Callable[..., Any], tmp_path: Path, details: Callable[..., list[Any]]
) -> None:
    text = (ROOT / "deploy" / "config" / "policy.toml").read_text()
    text = re.sub(r'\[callers\.auditor\]\nname = "[^"]*"\nroles = \["auditor"\]\n', "", text)
    assert "[callers.auditor]" not in text
    policy = tmp_path / "policy.toml"
    policy.write_text(text)
    async with make_stack({"policy": {"file": str(policy)}}, tmp_path / "state") as s:
        auditor = await s.audit("auditor")  # the certificate still names the auditor role
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await auditor.GetCheckpoint(audit_pb2.GetCheckpointRequest())
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert reason_of(info.value, details) == "ROLE_NOT_ALLOWED"
