"""The OpenAPI 3.1 document of the HTTP/JSON door: generated from the protos (the stale-code
test checks it is current), valid for a maintained validator, served by the gateway as it is
checked in, and naming every RPC of both services at the path the door routes it to."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from openapi_spec_validator import validate

from gateway.server.http_door import http_rule
from proofless.v1 import audit_pb2, verification_pb2
from tests.integration.test_http_door_hostile import send
from tests.support.stack import ROOT, Stack

pytestmark = pytest.mark.asyncio(loop_scope="module")
DOCUMENT = ROOT / "proofless" / "v1" / "openapi.json"


def test_the_checked_in_document_is_valid_openapi_3_1() -> None:
    document = json.loads(DOCUMENT.read_text(encoding="utf-8"))
    assert document["openapi"].startswith("3.1")
    validate(document)


def test_every_rpc_has_its_path_and_operation() -> None:
    document = json.loads(Path(DOCUMENT).read_text(encoding="utf-8"))
    for module, name in ((verification_pb2, "VerificationService"), (audit_pb2, "AuditService")):
        service = module.DESCRIPTOR.services_by_name[name]
        for method in service.methods:
            rule = http_rule(service.full_name, method.name, method.GetOptions())
            operation = document["paths"][rule.path][rule.verb.lower()]
            assert operation["operationId"] == f"{name}_{method.name}"


async def test_the_gateway_serves_the_checked_in_document(stack: Stack) -> None:
    status, raw, headers = await send(stack, "/openapi.json", None, method="GET")
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert raw == DOCUMENT.read_bytes()
    status, raw, _ = await send(stack, "/openapi.json", None, method="GET", caller=None)
    assert status == 401
