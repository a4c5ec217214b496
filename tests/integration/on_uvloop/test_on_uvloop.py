"""The gateway as `serve` runs it, on uvloop (gateway/server/loop.py): the same calls over
gRPC and over both HTTP versions of the HTTP/JSON door. The rest of the suite runs on
asyncio's own loop; this directory's conftest puts these tests on uvloop's, so a transport
or protocol that only asyncio's loop provides fails here (the HTTP/2 door once asserted
asyncio's transport class, which uvloop's TLS transport is not)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess

import pytest
import uvloop
from google.protobuf import json_format

from gateway.devtools.pki import DevPki
from proofless.v1 import verification_pb2 as pb
from tests.integration.test_http_door_hostile import RECORD, good_body
from tests.support.http_door import http_stubs
from tests.support.stack import ROOT, Stack

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


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl (with HTTP/2)")
@pytest.mark.parametrize(("flag", "version"), [("--http1.1", "1.1"), ("--http2", "2")])
async def test_curl_over_http1_and_http2(
    stack: Stack, pki: DevPki, flag: str, version: str
) -> None:
    proc = await asyncio.create_subprocess_exec(
        "curl", "-sS", flag,
        "--cert", str(pki.client_pem("quangang-window")),
        "--key", str(pki.client_key("quangang-window")),
        "--cacert", str(pki.ca_pem),
        "-H", "content-type: application/json",
        "-d", json.dumps(good_body(stack)),
        "-w", "\n%{http_version} %{http_code}",
        f"https://localhost:{stack.gateway.http_port}{RECORD}",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    text, _, tail = out.decode().rpartition("\n")
    assert tail == f"{version} 200"
    answer = pb.HouseholdRecordResponse()
    json_format.Parse(text, answer)
    assert answer.record.name
    assert answer.attestation.proof
