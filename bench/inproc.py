"""`python -m bench.inproc [--calls N] [--profile FILE]`: the gateway's own CPU per call.

Drives the real servicer behind the real `GatewayInterceptor` of a `running_gateway` (the
in-process household department, the real audit log with fdatasync, the real signer, policy
and metrics) with a stand-in for grpc's ServicerContext, `--concurrency` calls at a time, and
prints process CPU µs per call. No sockets, TLS, HTTP/2 or protobuf parsing of the request:
what is left is the gateway's own work, the part a change to its Python moves. `--profile`
writes a cProfile of the measured calls (slower; read it for shares, not for µs).

`--without STAGE` replaces one stage by its cheapest stand-in (see `STAGES`), so the
difference against a run without it is what that stage costs. Under callgrind that
difference is exact (BENCHMARKS.md, "By instruction"); the answers are then no longer valid
proofs or audited calls: a measuring tool only.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc

import gateway.server.door
import gateway.server.verification
from bench.load import request_bodies
from bench.servers import InProcessHousehold
from bench.setup import RECORD_CALLER, prepare
from gateway.audit.log import AppendReceipt, AuditLog
from gateway.config import parse_config
from gateway.crypto.jws import b64url_encode
from gateway.crypto.proofs import ProofClaims, ProofSigner
from gateway.ops.logging import configure_logging
from gateway.ops.metrics import Metrics
from gateway.server.app import running_gateway
from gateway.server.resilience.adapter import ResilientAdapter
from proofless.v1 import verification_pb2 as pb

METHOD = "/proofless.v1.VerificationService/GetHouseholdRecord"
SYNCS = [0]
_fdatasync = os.fdatasync


def _counted_fdatasync(fd: int) -> None:
    SYNCS[0] += 1
    _fdatasync(fd)


def _replace(owner: Any, name: str, stand_in: Any) -> None:
    """`owner.name = stand_in`, refusing a name `owner` does not have (renamed since)."""
    if not hasattr(owner, name):
        raise SystemExit(f"--without: {owner.__name__}.{name} no longer exists")
    setattr(owner, name, stand_in)


def _without_validation() -> None:
    """Each request is validated once; later calls with the same message reuse the answer."""
    real = gateway.server.verification.record_request
    seen: dict[int, Any] = {}

    def validate(context: Any, applicant: Any, *args: Any, **kw: Any) -> Any:
        key = id(applicant)  # the driver cycles through one fixed list of request messages
        if key not in seen:
            seen[key] = real(context, applicant, *args, **kw)
        return seen[key]

    _replace(gateway.server.verification, "record_request", validate)


def _without_signature() -> None:
    """The proof is built and encoded as ever; the Ed25519 call is left out."""
    fake = b"\0" * 64

    def sign(self: ProofSigner, claims: ProofClaims) -> str:
        signing_input = self._protected_b64 + "." + b64url_encode(claims.payload_json())
        signing_input.encode("ascii")
        return signing_input + "." + b64url_encode(fake)

    _replace(ProofSigner, "sign", sign)


def _without_proof() -> None:
    """No payload JSON, no base64url, no signature."""
    _replace(ProofSigner, "sign", lambda self, claims: "-.-.-")


def _without_audit() -> None:
    """Indexes are handed out; nothing is checked, encoded, written, hashed or checkpointed."""

    async def append(self: AuditLog, entry: dict[str, Any]) -> AppendReceipt:
        index = self._next_index
        self._next_index = index + 1
        return AppendReceipt(index, b"\0" * 32)

    _replace(AuditLog, "append", append)


def _without_access_log() -> None:
    _replace(gateway.server.door, "log_fields", lambda *args, **kwargs: None)


def _without_resilience() -> None:
    """Straight to the department: no single-flight, breaker, bulkhead or timeouts."""

    async def fetch(self: ResilientAdapter[Any], query: Any, deadline: float) -> Any:
        return await self._inner.fetch(query, deadline)

    _replace(ResilientAdapter, "fetch", fetch)


def _without_metrics() -> None:
    for name in (
        "request_started",
        "request_finished",
        "department_call",
        "audit_appended",
        "proofs_signed",
        "denial",
    ):
        _replace(Metrics, name, lambda self, *args, **kwargs: None)


#: --without STAGE: what each stand-in leaves out
STAGES = {
    "validation": _without_validation,
    "signature": _without_signature,
    "proof": _without_proof,
    "audit": _without_audit,
    "access-log": _without_access_log,
    "resilience": _without_resilience,
    "metrics": _without_metrics,
}


class Details(grpc.HandlerCallDetails):  # type: ignore[misc]
    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata = ()


class Context:
    """What the gateway asks of grpc.aio's ServicerContext on a successful call."""

    def __init__(self, auth: dict[str, list[bytes]]) -> None:
        self._auth = auth

    def auth_context(self) -> dict[str, list[bytes]]:
        return self._auth

    def set_trailing_metadata(self, metadata: Any) -> None:
        self.trailing = metadata

    def time_remaining(self) -> float:
        return 5.0

    async def abort(self, code: Any, details: str = "", trailing: Any = ()) -> None:
        raise RuntimeError(f"call refused: {code} {details}")

    def code(self) -> Any:
        return None


async def drive(
    work: Path, calls: int, concurrency: int, rounds: int, prof: Any
) -> tuple[list[float], list[float], list[float]]:
    workdir = prepare(work)
    raw = workdir.raw_config()
    raw["audit"]["dir"] = str(work / "audit")
    config = parse_config(raw, "bench")
    _, bodies = request_bodies("household", 512)
    requests = [pb.RecordRequest.FromString(b) for b in bodies]
    auth = {"x509_pem_cert": [workdir.pki.client_pem(RECORD_CALLER).read_bytes()]}
    details = Details(METHOD)
    figures: list[float] = []
    loop_figures: list[float] = []
    syncs: list[float] = []
    async with running_gateway(config, adapters={"household": InProcessHousehold()}) as gw:

        async def continuation(_: Any) -> Any:
            return grpc.unary_unary_rpc_method_handler(gw.servicer.GetHouseholdRecord)

        async def one(i: int) -> None:
            handler = await gw.interceptor.intercept_service(continuation, details)
            await handler.unary_unary(requests[i % len(requests)], Context(auth))

        async def batch(start: int, n: int) -> None:
            next_i = start

            async def worker() -> None:
                nonlocal next_i
                while next_i < start + n:
                    i = next_i
                    next_i += 1
                    await one(i)

            await asyncio.gather(*(worker() for _ in range(concurrency)))

        await batch(0, min(calls, 2000))  # warm-up
        for r in range(rounds):
            if prof is not None:
                prof.enable()
            cpu, loop_cpu, synced = time.process_time(), time.thread_time(), SYNCS[0]
            await batch((r + 1) * calls, calls)
            syncs.append((SYNCS[0] - synced) / calls)
            figures.append((time.process_time() - cpu) / calls * 1e6)
            loop_figures.append((time.thread_time() - loop_cpu) / calls * 1e6)
            if prof is not None:
                prof.disable()
    return figures, loop_figures, syncs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--profile", help="write a cProfile of the measured calls here")
    parser.add_argument(
        "--no-access-log", action="store_true", help="leave logging unconfigured (no access log)"
    )
    parser.add_argument(
        "--without",
        choices=sorted(STAGES),
        help="replace one stage by a stand-in, to price it (the answers are then not valid)",
    )
    args = parser.parse_args()
    if args.without:
        STAGES[args.without]()
    prof = cProfile.Profile() if args.profile else None
    os.fdatasync = _counted_fdatasync  # this process only: counts the audit log's data syncs
    if not args.no_access_log:  # as `proofless serve` runs: JSON lines on stderr
        configure_logging("INFO")
    with tempfile.TemporaryDirectory(prefix="proofless-inproc-") as tmp:
        figures, loop_figures, syncs = asyncio.run(
            drive(Path(tmp), args.calls, args.concurrency, args.rounds, prof)
        )
    if prof is not None:
        prof.dump_stats(args.profile)
    print(
        "gateway own CPU µs/call: "
        + " ".join(f"{f:.0f}" for f in figures)
        + f"  median {statistics.median(figures):.0f}"
        + f"  (loop thread {statistics.median(loop_figures):.0f}); fdatasync per call "
        + " ".join(f"{s:.2f}" for s in syncs)
    )


if __name__ == "__main__":
    main()
