"""In-process figures that need no network: JWS sign/verify rates and the audit log's own
benchmarks (bench/audit_bench.py: durable appends/s, `audit verify` time)."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvloop
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench import audit_bench
from gateway.audit.note import NoteSigner
from gateway.audit.verify import verify_log
from gateway.crypto import jws
from gateway.crypto.proofs import ProofClaims, ProofSigner, digest_of


def _rate(fn: Callable[[], Any], seconds: float) -> float:
    n, start = 0, time.perf_counter()
    end = start + seconds
    while True:
        for _ in range(50):
            fn()
        n += 50
        now = time.perf_counter()
        if now >= end:
            return n / (now - start)


def jws_rates(seconds: float) -> dict[str, float]:
    """Proofs signed and verified per second on one core, with a realistic payload."""
    signer = ProofSigner(Ed25519PrivateKey.generate())
    data = {"name": "林秀英", "region_code": "350505", "status": "HOUSEHOLD_STATUS_ACTIVE"}
    claims = ProofClaims(
        proof_id="0" * 32,
        issuer="proofless.bench",
        caller="quangang-window",
        service_item="housing-transfer",
        case_id="BENCH-2026-000001",
        applicant="a" * 64,
        kind="household",
        fields=sorted(data),
        data=data,
        digest=digest_of(data),
        departments=["household"],
        as_of=datetime.now(UTC),
        issued_at=datetime.now(UTC),
        audit_log="proofless.bench/gateway-0",
        audit_index=123456,
    )
    token = signer.sign(claims)
    keys = {signer.kid: signer.public_key}
    return {
        "jws_sign_per_s": _rate(lambda: signer.sign(claims), seconds),
        "jws_verify_per_s": _rate(lambda: jws.verify(token, keys), seconds),
        "proof_bytes": float(len(token)),
    }


def audit_figures(appends: int, entries: int) -> dict[str, Any]:
    """Durable appends/s (1000 concurrent appenders, group commit; one entry a call and
    `append_many` groups; on asyncio's loop and on uvloop) and `audit verify` time over a
    generated log of `entries` entries, scaled to seconds per million."""
    appended = asyncio.run(audit_bench.bench_appends(appends, 1000))
    # the loop `proofless serve` runs on (gateway/server/loop.py)
    on_uvloop = uvloop.run(audit_bench.bench_appends(appends, 1000))
    key = Ed25519PrivateKey.generate()
    directory = Path(tempfile.mkdtemp(prefix="proofless-bench-verify-"))
    try:
        audit_bench.generate(directory, entries, key)
        start = time.perf_counter()
        report = verify_log(directory, NoteSigner(audit_bench.ORIGIN, key).verifier)
        elapsed = time.perf_counter() - start
        if not report.ok:
            raise RuntimeError("audit verify failed on the generated log")
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return {
        "audit_appends_per_s": appended["appends_per_s"],
        "audit_entries_per_fsync": appended["entries_per_fsync"],
        # append_many, `batch` entries a call, as many entries outstanding
        "audit_appends_per_s_batched": appended["appends_per_s_batched"],
        "audit_appends_per_s on uvloop": on_uvloop["appends_per_s"],
        "audit_appends_per_s_batched on uvloop": on_uvloop["appends_per_s_batched"],
        "audit_verify_entries": entries,
        "audit_verify_s": elapsed,
        "audit_verify_s_per_million": elapsed / entries * 1_000_000,
    }
