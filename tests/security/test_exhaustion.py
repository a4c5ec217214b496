"""Red-team item 12: memory and disk exhaustion.

- The in-memory subject index (gateway.audit.log `_subjects`) grew without bound, and denied
  requests add their subject too (checked before the policy): any approval certificate could
  grow it by asking about valid ID numbers. It is bounded now; past its bounds it lets go and
  ListAccesses answers UNAVAILABLE (AUDIT_INDEX_FULL), naming the PostgreSQL index. Denied
  attempts keep their subject on purpose: a citizen is shown who tried and was refused.
- A revoked certificate wrote an fsync'ed entry on every call, with no throttle: now a
  (serial, reason) writes a few entries a second, and each entry says how many refused calls
  it stands for, so they add up to every refusal.
- A claim's parameters were unbounded in number (a map as big as a 1 MiB message fits): now
  at most 16 per claim, names and values bounded, before anything reads them.
- Nothing warned before the audit volume filled (a full disk stops every reply): the gateway
  exports its audit volume's free bytes, and an alert fires days ahead.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from gateway.audit.tools import iter_entries
from gateway.devtools.pki import DevPki, issue_client, revoke
from gateway.server.rejections import BURST, PER_SECOND
from proofless.v1 import audit_pb2
from proofless.v1 import verification_pb2 as pb
from proofless.v1 import verification_pb2_grpc as pb_grpc
from tests.support.stack import ROOT, poll, running_stack

pytestmark = pytest.mark.asyncio(loop_scope="module")

CALLER = "quangang-window"


def ownership(item: str, idn: str, case: str) -> pb.VerifyClaimsRequest:
    return pb.VerifyClaimsRequest(
        context=pb.RequestContext(service_item=item, case_id=case, purpose="review"),
        applicant=pb.Applicant(id_number=idn),
        claims=[pb.Claim(id="owns", type="property.ownership", params={"owns": "false"})],
    )


def reason_of(err: grpc.aio.AioRpcError, details: Callable[..., list[Any]]) -> str:
    return next(d.reason for d in details(err) if hasattr(d, "reason"))


# ---- the in-memory subject index ------------------------------------------------------------


async def test_denied_requests_cannot_grow_the_subject_index_without_bound(
    make_stack: Callable[..., Any], details: Callable[..., list[Any]]
) -> None:
    async with make_stack({"audit": {"index_max_subjects": 4}}) as stack:
        window = await stack.verification(CALLER)
        people = sorted(stack.sims.population.people)[:6]
        # resident-pension is not the window's item: each call is denied by the policy, yet
        # each names a subject of its own
        for n, idn in enumerate(people):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await window.VerifyClaims(ownership("resident-pension", idn, f"E-{n}"))
            assert reason_of(info.value, details) == "ITEM_NOT_ALLOWED"
        auditor = await stack.audit("auditor")
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await auditor.ListAccesses(audit_pb2.ListAccessesRequest(id_number=people[0]))
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert reason_of(info.value, details) == "AUDIT_INDEX_FULL"
        assert "postgresql" in (info.value.details() or "")
        assert stack.gateway.audit.subject_index.postings == {}  # what it held is let go
        assert stack.registry.get_sample_value("proofless_audit_index_usage_ratio") == 1.0
        # verification does not depend on the index
        idn = stack.scenarios["no_property"]
        reply = await window.VerifyClaims(ownership("housing-transfer", idn, "E-9"))
        assert reply.attestation.audit_index > 0


async def test_a_denied_attempt_is_shown_to_its_citizen(stack: Any) -> None:
    """Kept on purpose: a denial by policy is recorded under the citizen's subject, so the
    citizen sees who tried to read their records and was refused."""
    idn = stack.scenarios["household_head"]
    window = await stack.verification(CALLER)
    with pytest.raises(grpc.aio.AioRpcError):
        await window.VerifyClaims(ownership("resident-pension", idn, "E-D"))
    portal = await stack.audit("citizen-portal")
    seen = await portal.ListAccesses(
        audit_pb2.ListAccessesRequest(id_number=idn, citizen_token=stack.citizen_token(idn))
    )
    denied = [a for a in seen.accesses if a.outcome == "denied" and a.caller == CALLER]
    assert denied
    assert denied[-1].service_item == "resident-pension"


# ---- refused peers ----------------------------------------------------------------------------


async def test_a_revoked_certificate_cannot_fill_the_disk_one_fsync_per_call(
    pki: DevPki, tmp_path: Path
) -> None:
    own = tmp_path / "pki"
    shutil.copytree(pki.dir, own)
    own_pki = DevPki(own)
    fresh = issue_client(own, CALLER, "approval", out_dir=tmp_path / "fresh")
    creds = grpc.ssl_channel_credentials(
        root_certificates=own_pki.ca_pem.read_bytes(),
        private_key=fresh.key_path.read_bytes(),
        certificate_chain=fresh.cert_path.read_bytes(),
    )
    refused = 0
    codes: list[grpc.StatusCode] = []
    async with running_stack(own_pki, tmp_path / "state") as stack:
        audit_dir = stack.config.audit.dir
        async with grpc.aio.secure_channel(stack.gateway.address, creds) as channel:
            stub = pb_grpc.VerificationServiceStub(channel)
            await stub.ListServiceItems(pb.ListServiceItemsRequest(), timeout=5)
            revoke(own, CALLER, serial=fresh.cert.serial_number)

            async def refused_now() -> bool:
                nonlocal refused
                try:
                    await stub.ListServiceItems(pb.ListServiceItemsRequest(), timeout=5)
                except grpc.aio.AioRpcError as err:
                    codes.append(err.code())
                    refused += 1
                    return True
                return False

            await poll(refused_now, "CRL reload")
            started = time.monotonic()
            for _ in range(200):  # a peer that keeps calling
                assert await refused_now()
            elapsed = time.monotonic() - started
    assert set(codes) == {grpc.StatusCode.UNAUTHENTICATED}
    # the gateway has stopped: every refusal is accounted for in the log
    serial = format(fresh.cert.serial_number, "x")
    entries = [
        e
        for e in iter_entries(audit_dir)
        if e.get("reason") == "CERTIFICATE_REVOKED" and e.get("peer_serial") == serial
    ]
    assert sum(e.get("calls", 1) for e in entries) == refused
    # a burst, then about one a second, and one at shutdown for the calls still counted
    assert len(entries) <= BURST + PER_SECOND * (elapsed + 1) + 1
    assert len(entries) < refused
    assert all(e["outcome"] == "denied" and e["caller"] == "unauthenticated" for e in entries)


# ---- claim parameters -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "description"),
    [
        ({f"p{n}": "1" for n in range(5000)}, "at most 16 parameters"),
        ({f"p{n}": "1" for n in range(17)}, "at most 16 parameters"),
        ({"owns": "false", "region": "3" * 5000}, "values of at most 1024"),
        ({"x" * 500: "1"}, "names of at most 64"),
    ],
    ids=["5000", "17", "long-value", "long-name"],
)
async def test_claim_parameters_are_bounded_before_they_are_read(
    stack: Any, details: Callable[..., list[Any]], params: dict[str, str], description: str
) -> None:
    window = await stack.verification(CALLER)
    request = ownership("housing-transfer", stack.scenarios["no_property"], "E-P")
    request.claims[0].params.clear()
    request.claims[0].params.update(params)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await window.VerifyClaims(request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    violations = [
        v for d in details(info.value) if hasattr(d, "field_violations") for v in d.field_violations
    ]
    assert [(v.field, description in v.description) for v in violations] == [
        ("claims[0].params", True)
    ]
    assert "3" * 100 not in (info.value.details() or "")


# ---- the audit volume -----------------------------------------------------------------------


async def test_the_audit_volume_is_watched(stack: Any) -> None:
    st = os.statvfs(stack.config.audit.dir)
    size = stack.registry.get_sample_value("proofless_audit_volume_size_bytes")
    free = stack.registry.get_sample_value("proofless_audit_volume_free_bytes")
    assert size == st.f_blocks * st.f_frsize
    assert 0 < free <= size


RULE_TESTS = """
rule_files: [{rules}]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'proofless_audit_volume_size_bytes{{instance="gw-0"}}'
        values: '1000x120'
      - series: 'proofless_audit_volume_free_bytes{{instance="gw-0"}}'
        values: '500x30 100x90'
      - series: 'proofless_audit_index_usage_ratio{{instance="gw-0"}}'
        values: '0.5x30 0.9x90'
    alert_rule_test:
      - eval_time: 20m
        alertname: ProoflessAuditDiskFilling
        exp_alerts: []
      - eval_time: 60m
        alertname: ProoflessAuditDiskFilling
        exp_alerts:
          - exp_labels: {{severity: page, instance: gw-0}}
            exp_annotations: {disk}
      - eval_time: 20m
        alertname: ProoflessAuditIndexFilling
        exp_alerts: []
      - eval_time: 60m
        alertname: ProoflessAuditIndexFilling
        exp_alerts:
          - exp_labels: {{severity: ticket, instance: gw-0}}
            exp_annotations: {index}
"""


async def test_an_alert_fires_before_the_audit_volume_fills(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("needs promtool (Debian package prometheus; `make system-deps`)")
    rules = ROOT / "deploy" / "prometheus" / "alerts.yml"
    disk = {
        "summary": "gw-0: the audit volume is filling up",
        "description": "Grow the volume or archive sealed segments before it is full: at "
        "full, every call answers UNAVAILABLE.",
    }
    index = {
        "summary": "gw-0: subject index 90% full",
        "description": 'Move to [audit] index = "postgresql" before citizens\' listings fail.',
    }
    test = tmp_path / "alerts_test.yml"
    test.write_text(
        RULE_TESTS.format(rules=json.dumps(str(rules)), disk=json.dumps(disk),
                          index=json.dumps(index))
    )  # fmt: skip
    result = await asyncio.to_thread(
        subprocess.run,
        [promtool, "test", "rules", str(test)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
