"""The gateway as `serve` runs it, on uvloop (gateway/server/loop.py): the same calls over
gRPC and over both HTTP versions of the HTTP/JSON door. The rest of the suite runs on
asyncio's own loop; this directory's conftest puts these tests on uvloop's, so a transport
or protocol that only asyncio's loop provides fails here (the HTTP/2 door once asserted
asyncio's transport class, which uvloop's TLS transport is not)."""

from __future__ import annotations

import asyncio

import pytest
import uvloop
from google.protobuf import json_format

from proofless.v1 import verification_pb2 as pb
from tests.integration.test_http_door_hostile import (
    good_body,
    # collected here again: the same curl calls over HTTP/1.1 and HTTP/2, on uvloop
    test_curl_gets_a_record_over_http1_and_http2,  # noqa: F401
)
from tests.support.http_door import http_stubs
from tests.support.stack import Stack

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_the_gateway_runs_on_uvloop(stack: Stack) -> None:
    assert isinstance(asyncio.get_running_loop(), uvloop.Loop)


async def test_grpc_and_http1_answer_with_a_proof(stack: Stack) -> None:
    request = pb.RecordRequest()
    json_format.ParseDict(good_body(stack), request)
    grpc_stub = await stack.verification("quangang-window")
    http_stub, _ = await http_stubs(stack, "quangang-window")
    for stub in (grpc_stub, http_stub):
        answer = await stub.GetHouseholdRecord(request, timeout=5)
        assert answer.record.name
        assert answer.attestation.proof
