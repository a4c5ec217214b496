"""Audit log benchmarks: `python -m bench.audit_bench [--entries N] [--appends N]`.

1. durable appends/s through `AuditLog.append` with many concurrent appenders (group commit:
   every append returns only after its batch's fdatasync), and through `AuditLog.append_many`
   with as many entries outstanding, `--batch` entries a call;
2. `audit verify` (`verify_log`) seconds over a synthetic log of N entries of ~400 bytes, with
   a signed checkpoint every 256 entries as in the default configuration;
3. inclusion and consistency proof time at N entries, from the tiles on disk (cold reader);
4. `AuditLog.open` time at N entries (tiles trusted under the signed checkpoint, last segment
   re-read) and the background subject index it starts.

Figures are wall-clock on this machine; compare them as ratios across commits.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit import merkle
from gateway.audit.entry import canonical_json, subject_of
from gateway.audit.log import AuditLog
from gateway.audit.note import Checkpoint, NoteSigner, SignedCheckpoint
from gateway.audit.storage import ENTRIES, segment_name, store_checkpoint
from gateway.audit.tiles import TileTree
from gateway.audit.verify import verify_log

ORIGIN = "bench.proofless/audit"
PEPPER = b"bench-pepper"


def entry(i: int) -> dict[str, Any]:
    """A realistic access entry: ~400 bytes once serialized with its index."""
    return {
        "kind": "access",
        "time": f"2026-11-21T10:{i // 60_000_000 % 60:02d}:{i // 1_000_000 % 60:02d}."
        f"{i % 1_000_000:06d}Z",
        "request_id": f"{i:016x}",
        "caller": f"approval-{i % 7}",
        "rpc": "GetHouseholdRecord",
        "service_item": f"1100000000000{i % 50:04d}",
        "case_id": f"C{i:010d}",
        "purpose": "birth registration",
        "record_type": "household",
        "claims": [],
        "departments": ["public-security"],
        "outcome": "granted" if i % 10 else "denied",
        "status": "OK" if i % 10 else "PERMISSION_DENIED",
        "reason": "",
        "latency_us": 800 + i % 5000,
        "proof_id": f"{i:020d}",
        "digest": f"{i:064x}",
        "subject": subject_of(PEPPER, f"{110105194912310000 + i % 100000}"),
        "policy": "ab" * 8,
    }


#: entries per `append_many` call in the batched figure: a servicer's calls that finish in the
#: same loop turn, logged together
BATCH = 16


async def bench_appends(n: int, concurrency: int, batch: int = BATCH) -> dict[str, float]:
    """Durable appends/s by `concurrency` concurrent appenders, one `append` each at a time;
    then (unless `batch` is 1) the same `n` entries through `append_many`, `batch` entries a
    call, by `concurrency // batch` appenders: as many entries outstanding at once, so the
    two figures differ by the per-call cost only (the `*_batched` keys)."""
    result: dict[str, float] = await timed_appends(n, concurrency, 1)
    if batch > 1:
        batched = await timed_appends(n, max(1, concurrency // batch), batch)
        result |= {
            "batch": batch,
            "appends_per_s_batched": batched["appends_per_s"],
            "appends_per_cpu_s_batched": batched["appends_per_cpu_s"],
            "fdatasyncs_batched": batched["fdatasyncs"],
            "entries_per_fsync_batched": batched["entries_per_fsync"],
        }
    return result


async def timed_appends(n: int, concurrency: int, batch: int) -> dict[str, float]:
    """`n` appends to a fresh log by `concurrency` appenders, `batch` entries a call (1:
    `append`, else `append_many`), timed from the first call to the last receipt."""
    directory = Path(tempfile.mkdtemp(prefix="audit-bench-"))
    try:
        log = await AuditLog.open(directory, origin=ORIGIN, note_key=Ed25519PrivateKey.generate())
        entries = [entry(i) for i in range(n)]
        # The pre-built entries are bench fixtures, not log state: keep the collector off them
        # (a gateway's entries are short-lived), so the figure is the log's own cost.
        gc.freeze()
        syncs = 0
        real = os.fdatasync

        def counting(fd: int) -> None:
            nonlocal syncs
            syncs += 1
            real(fd)

        os.fdatasync = counting  # type: ignore[assignment]

        async def appender(k: int) -> None:
            if batch == 1:
                for i in range(k, n, concurrency):
                    await log.append(entries[i])
            else:
                for i in range(k * batch, n, concurrency * batch):
                    await log.append_many(entries[i : i + batch])

        start, cpu = time.perf_counter(), time.process_time()
        try:
            await asyncio.gather(*(appender(k) for k in range(concurrency)))
            elapsed = time.perf_counter() - start
            cpu = time.process_time() - cpu
        finally:
            os.fdatasync = real
            gc.unfreeze()
        await log.close()
        size = sum(p.stat().st_size for p in (directory / ENTRIES).glob("*.jsonl"))
        return {
            "appends": n,
            "concurrency": concurrency,
            "seconds": elapsed,
            "appends_per_s": n / elapsed,
            # per CPU-second of this process: steadier than wall time on a shared machine
            "appends_per_cpu_s": n / cpu,
            "fdatasyncs": syncs,
            "entries_per_fsync": n / max(syncs, 1),
            "mean_entry_bytes": size / n,
        }
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def generate(directory: Path, n: int, key: Ed25519PrivateKey, every: int = 256) -> None:
    """Write a log as AuditLog would (segments, tiles, a checkpoint per `every` entries)."""
    signer = NoteSigner(ORIGIN, key)
    (directory / ENTRIES).mkdir(parents=True)
    tiles = TileTree(directory)
    segment_entries = 150_000  # ~64 MiB segments at ~400 bytes
    for first in range(0, n, segment_entries):
        last = min(n, first + segment_entries)
        lines = [canonical_json({**entry(i), "index": i}) for i in range(first, last)]
        (directory / ENTRIES / segment_name(first)).write_bytes(b"\n".join(lines) + b"\n")
        hashes = [merkle.leaf_hash(x) for x in lines]
        for lo in range(first, last, every):
            hi = min(last, lo + every)
            tiles.add(hashes[lo - first : hi - first])
            cp = SignedCheckpoint.sign(Checkpoint(ORIGIN, tiles.size, tiles.root()), signer)
            if hi % (every * 64) == 0 or hi == n:
                tiles.flush()
            store_checkpoint_fast(directory, cp)
    tiles.flush()
    store_checkpoint(directory, tiles.size, cp.text)


def store_checkpoint_fast(directory: Path, cp: SignedCheckpoint) -> None:
    # generation only: skip the fsyncs of store_checkpoint
    path = directory / "checkpoints" / f"{cp.size:020d}"
    path.parent.mkdir(exist_ok=True)
    path.write_text(cp.text)


def bench_proofs(directory: Path, n: int, samples: int = 2000) -> dict[str, float]:
    rng = random.Random(1)  # noqa: S311 - sampling indexes, not secrets
    tiles = TileTree(directory)
    tiles.size = n
    root = tiles_root(directory, n)
    incl, cons = [], []
    for _ in range(samples):
        index = rng.randrange(n)
        t = time.perf_counter()
        proof = merkle.inclusion_proof(index, n, tiles.read_node)
        incl.append(time.perf_counter() - t)
        first = rng.randrange(1, n)
        t = time.perf_counter()
        merkle.consistency_proof(first, n, tiles.read_node)
        cons.append(time.perf_counter() - t)
    merkle.verify_inclusion(index, n, tiles.read_node(0, index), proof, root)
    return {
        "inclusion_proof_ms_median": statistics.median(incl) * 1e3,
        "inclusion_proof_ms_p99": sorted(incl)[int(samples * 0.99)] * 1e3,
        "consistency_proof_ms_median": statistics.median(cons) * 1e3,
        "proof_hashes": len(proof),
    }


def tiles_root(directory: Path, n: int) -> bytes:
    tiles = TileTree(directory)
    tiles.size = n
    return merkle.subtree_hash(0, n, tiles.read_node)


async def bench_open(directory: Path, key: Ed25519PrivateKey) -> tuple[float, float]:
    """(seconds to open, seconds until the subject index is complete)."""
    start = time.perf_counter()
    log = await AuditLog.open(directory, origin=ORIGIN, note_key=key)
    opened = time.perf_counter() - start
    await log.accesses(subject_of(PEPPER, "110105194912310000"))
    indexed = time.perf_counter() - start
    await log.close()
    return opened, indexed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000, help="log size for verify")
    parser.add_argument("--appends", type=int, default=200_000, help="appends to time")
    parser.add_argument("--concurrency", type=int, default=1000, help="concurrent appenders")
    parser.add_argument("--batch", type=int, default=BATCH, help="entries per append_many")
    args = parser.parse_args()

    result = asyncio.run(bench_appends(args.appends, args.concurrency, args.batch))
    print(
        f"durable appends: {result['appends_per_s']:,.0f}/s ({result['appends']:,} appends, "
        f"{result['concurrency']} appenders, {result['fdatasyncs']} fdatasyncs = "
        f"{result['entries_per_fsync']:.0f} entries/fsync, "
        f"{result['mean_entry_bytes']:.0f} B/entry; "
        f"{result['appends_per_cpu_s']:,.0f} per CPU-second)"
    )
    if "batch" in result:
        print(
            f"durable appends, {result['batch']:.0f} a call (append_many): "
            f"{result['appends_per_s_batched']:,.0f}/s ({result['fdatasyncs_batched']} "
            f"fdatasyncs = {result['entries_per_fsync_batched']:.0f} entries/fsync; "
            f"{result['appends_per_cpu_s_batched']:,.0f} per CPU-second)"
        )

    key = Ed25519PrivateKey.generate()
    directory = Path(tempfile.mkdtemp(prefix="audit-bench-verify-"))
    try:
        t = time.perf_counter()
        generate(directory, args.entries, key)
        print(f"generated {args.entries:,} entries in {time.perf_counter() - t:.1f} s")
        for workers in (1, None):
            t = time.perf_counter()
            report = verify_log(directory, NoteSigner(ORIGIN, key).verifier, workers=workers)
            elapsed = time.perf_counter() - t
            assert report.ok, report.lines()[-5:]
            checkpoints = len(report.checkpoints)
            print(
                f"audit verify ({workers or os.cpu_count()} process(es)): {args.entries:,} "
                f"entries, {checkpoints:,} checkpoints in {elapsed:.2f} s "
                f"({args.entries / elapsed:,.0f} entries/s)"
            )
        proofs = bench_proofs(directory, args.entries)
        print(
            f"proofs at {args.entries:,}: inclusion median "
            f"{proofs['inclusion_proof_ms_median']:.3f} ms (p99 "
            f"{proofs['inclusion_proof_ms_p99']:.3f} ms, {proofs['proof_hashes']} hashes), "
            f"consistency median {proofs['consistency_proof_ms_median']:.3f} ms"
        )
        opened, indexed = asyncio.run(bench_open(directory, key))
        print(f"AuditLog.open at {args.entries:,}: {opened:.2f} s "
              f"(subject index ready after {indexed:.2f} s)")  # fmt: skip
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
