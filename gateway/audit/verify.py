"""Offline verification of a copied audit log directory (`proofless audit verify`).

Recomputes every leaf hash and the tree from the entries alone, checks every checkpoint's note
signature, and requires each checkpoint's root to equal the recomputed root at its size —
which makes consecutive checkpoints consistent with each other and with the entries (a
stronger check than verifying consistency proofs, since the proofs would come from the log).
Stored tiles are used only to name the first entry that changed.

The hashing (every leaf, and the root of every aligned 256-leaf block) runs per segment in a
process pool, one worker per core; the parent walks the segments' results in order, folding
block roots into the compact range and checking each checkpoint's root as it passes, so the
report, the first bad index and the progress callbacks are exactly those of a serial run.

The report follows AWS CloudTrail `validate-logs`: one line per segment and checkpoint,
`valid` or `INVALID (<reason>)`, the first bad index and a summary.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Generator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from gateway.audit import merkle
from gateway.audit.note import NoteError, NoteVerifier, SignatureError, SignedCheckpoint
from gateway.audit.storage import (
    LATEST,
    checkpoint_paths,
    segment_paths,
)
from gateway.audit.tiles import stored_leaf_hashes

_sha256 = hashlib.sha256


def _first_index_mismatch(lines: Sequence[bytes], first: int) -> int | None:
    """The first position whose `index` field is not its position, or None.

    Canonical JSON escapes every quote inside strings, so `"index":` found in a line is a key;
    it must be preceded by `{` or `,` and its number followed by `,` or `}`. (A nested object
    with an "index" key sorting earlier would be found first: entries have none.)
    """
    for i, line in enumerate(lines):
        tag = b'"index":%d' % (first + i)
        p = line.find(tag)
        end = p + len(tag)
        if p <= 0 or line[p - 1] not in b"{," or end >= len(line) or line[end] not in b",}":
            return first + i
    return None


BLOCK = 256  # leaves per block whose root a worker precomputes (one level-0 tile)
#: below this many bytes of segments, hashing in-process beats starting workers
PARALLEL_MIN_BYTES = 16 << 20


@dataclass(frozen=True)
class _SegmentHashes:
    """A worker's answer for one segment: sizes, leaf hashes, the index check, block roots."""

    size: int  # bytes in the file
    hashes: list[bytes]  # one per complete line
    index_mismatch: int | None  # first index whose `index` field is wrong
    torn: bool  # the file ends in a partial line
    blocks: dict[int, bytes]  # global block number → root of its BLOCK leaves (whole blocks)


def _hash_segment(path: Path, first: int) -> _SegmentHashes:
    data = path.read_bytes()
    lines = data.split(b"\n")
    torn = lines.pop()
    # Inline comprehension and bytes.find: per-line Python overhead dominates at 1M lines.
    hashes = [_sha256(b"\x00" + line).digest() for line in lines]
    blocks: dict[int, bytes] = {}
    start = -first % BLOCK  # the first whole block starts here within the segment
    for i in range(start, len(hashes) - BLOCK + 1, BLOCK):
        blocks[(first + i) // BLOCK] = merkle.perfect_root(hashes[i : i + BLOCK])
    return _SegmentHashes(
        len(data), hashes, _first_index_mismatch(lines, first), bool(torn), blocks
    )


def _hash_segments(
    segments: Sequence[tuple[int, Path]], workers: int | None
) -> Generator[_SegmentHashes, None, None]:
    """`_hash_segment` for each segment, in order; in a process pool when it pays off."""
    total = sum(p.stat().st_size for _, p in segments)
    workers = workers if workers is not None else (os.cpu_count() or 1)
    if workers <= 1 or len(segments) < 2 or total < PARALLEL_MIN_BYTES:
        for first, path in segments:
            yield _hash_segment(path, first)
        return
    with ProcessPoolExecutor(max_workers=min(workers, len(segments))) as pool:
        futures = [pool.submit(_hash_segment, path, first) for first, path in segments]
        try:
            for future in futures:
                yield future.result()
        finally:
            for future in futures:
                future.cancel()


def _extend(cr: merkle.CompactRange, hashes: Sequence[bytes], blocks: dict[int, bytes]) -> None:
    """`cr.extend(hashes)`, taking whole aligned blocks' roots from `blocks` when present."""
    i, n = 0, len(hashes)
    while i < n and cr.size % BLOCK:
        cr.append_subtree(0, hashes[i])
        i += 1
    while n - i >= BLOCK:
        root = blocks.get(cr.size // BLOCK)
        cr.append_subtree(
            8, root if root is not None else merkle.perfect_root(hashes[i : i + BLOCK])
        )
        i += BLOCK
    while i < n:
        cr.append_subtree(0, hashes[i])
        i += 1


HASH_MISMATCH = "hash mismatch"
MISSING = "missing"
TRUNCATED = "truncated"
BAD_SIGNATURE = "bad signature"
INCONSISTENT = "inconsistent checkpoint"
GAP = "gap"
MALFORMED = "malformed"

Progress = Callable[[int, int], None]


@dataclass
class Finding:
    """One line of the report: a segment or checkpoint, valid or INVALID with a reason."""

    kind: str  # "segment" | "checkpoint"
    name: str
    reason: str | None = None
    detail: str = ""

    def line(self) -> str:
        status = "valid" if self.reason is None else f"INVALID ({self.reason})"
        extra = f" — {self.detail}" if self.detail else ""
        return f"{self.kind} {self.name}: {status}{extra}"


@dataclass
class VerifyReport:
    entries: int = 0
    covered: int = 0  # entries covered by a verified checkpoint
    first_bad_index: int | None = None
    segments: list[Finding] = field(default_factory=list)
    checkpoints: list[Finding] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    latest: SignedCheckpoint | None = None

    @property
    def ok(self) -> bool:
        return (
            self.first_bad_index is None
            and not self.problems
            and all(f.reason is None for f in [*self.segments, *self.checkpoints])
        )

    def bad(self, index: int, why: str) -> None:
        if self.first_bad_index is None or index < self.first_bad_index:
            self.first_bad_index = index
        self.problems.append(f"entry {index}: {why}")

    def lines(self) -> list[str]:
        out = [f.line() for f in self.segments] + [f.line() for f in self.checkpoints]
        out += self.problems
        if self.first_bad_index is not None:
            out.append(f"first bad index: {self.first_bad_index}")
        bad_segments = sum(f.reason is not None for f in self.segments)
        bad_checkpoints = sum(f.reason is not None for f in self.checkpoints)
        out.append(
            f"Results: {len(self.segments) - bad_segments}/{len(self.segments)} segments valid, "
            f"{len(self.checkpoints) - bad_checkpoints}/{len(self.checkpoints)} checkpoints valid, "
            f"{self.entries} entries, {self.covered} covered by a verified checkpoint: "
            + ("VALID" if self.ok else "INVALID")
        )
        return out


@dataclass
class _Target:
    size: int
    root: bytes
    finding: Finding


def _load_checkpoints(
    directory: Path,
    key: NoteVerifier,
    witnesses: Sequence[NoteVerifier],
    known: Sequence[str],
    report: VerifyReport,
) -> list[_Target]:
    targets: list[_Target] = []
    files: list[tuple[str, bytes, int | None]] = [
        (p.name, p.read_bytes(), size) for size, p in checkpoint_paths(directory)
    ]
    files += [(f"(given #{i + 1})", text.encode(), None) for i, text in enumerate(known)]
    for name, data, named_size in files:
        finding = Finding("checkpoint", name)
        report.checkpoints.append(finding)
        try:
            cp = SignedCheckpoint.open(data, key)
        except NoteError as exc:
            finding.reason, finding.detail = MALFORMED, exc.message
            continue
        except SignatureError as exc:
            finding.reason, finding.detail = BAD_SIGNATURE, exc.message
            continue
        if named_size is not None and cp.size != named_size:
            finding.reason, finding.detail = MALFORMED, f"file name says {named_size}"
            continue
        targets.append(_Target(cp.size, cp.root, finding))
    latest = Finding("checkpoint", LATEST)
    report.checkpoints.append(latest)
    try:
        cp = SignedCheckpoint.open((directory / LATEST).read_bytes(), key, tuple(witnesses))
        report.latest = cp
        targets.append(_Target(cp.size, cp.root, latest))
    except FileNotFoundError:
        latest.reason = MISSING
    except NoteError as exc:
        latest.reason, latest.detail = MALFORMED, exc.message
    except SignatureError as exc:
        latest.reason, latest.detail = BAD_SIGNATURE, exc.message
    if targets and report.latest is not None:
        newest = max(t.size for t in targets)
        if report.latest.size < newest:
            latest.reason = INCONSISTENT
            latest.detail = f"latest is size {report.latest.size}, a checkpoint of {newest} exists"
    return sorted(targets, key=lambda t: t.size)


def verify_log(
    directory: Path,
    key: NoteVerifier,
    *,
    witnesses: Sequence[NoteVerifier] = (),
    known_checkpoints: Sequence[str] = (),
    progress: Progress | None = None,
    workers: int | None = None,
) -> VerifyReport:
    """Verify everything in `directory`; `known_checkpoints` are notes the auditor saw before
    (from the witness or GetCheckpoint): a log rolled back behind one of them is caught.
    `workers` hashing processes (default: one per core; 1 hashes in this process)."""
    report = VerifyReport()
    targets = _load_checkpoints(directory, key, witnesses, known_checkpoints, report)
    segments = segment_paths(directory)
    total_bytes = sum(p.stat().st_size for _, p in segments)
    done_bytes = 0
    cr = merkle.CompactRange()
    window: list[bytes] = []  # leaf hashes since the last verified checkpoint
    window_start = 0
    t = 0  # next checkpoint target
    stop = False
    seen: list[tuple[int, Finding]] = []

    def locate(end: int) -> int | None:
        """First index in [window_start, end) whose leaf differs from its stored tile hash."""
        stored = stored_leaf_hashes(directory, window_start, end)
        for i, (mine, theirs) in enumerate(zip(window, stored, strict=False)):
            if mine != theirs:
                return window_start + i
        return None

    results = _hash_segments(segments, workers)
    try:
        for first, path in segments:
            finding = Finding("segment", path.name)
            report.segments.append(finding)
            seen.append((first, finding))
            if stop:
                finding.reason, finding.detail = "not checked", "follows the first bad index"
                continue
            expected = cr.size
            if first != expected:
                finding.reason = GAP if first > expected else HASH_MISMATCH
                finding.detail = f"starts at {first}, expected {expected}"
                report.bad(expected, f"segment {path.name} does not continue the log ({GAP})")
                stop = True
                continue
            result = next(results)
            hashes, blocks = result.hashes, result.blocks
            bad_at = result.index_mismatch
            why = GAP if bad_at is not None else ""
            if bad_at is None and result.torn:
                bad_at, why = first + len(hashes), TRUNCATED
            usable = len(hashes) if bad_at is None else bad_at - first
            pos = 0
            while t < len(targets) and targets[t].size <= first + usable:
                target = targets[t]
                take = target.size - cr.size
                _extend(cr, hashes[pos : pos + take], blocks)
                window.extend(hashes[pos : pos + take])
                pos += take
                if cr.root() == target.root:
                    report.covered = target.size
                    window, window_start = [], target.size
                else:
                    changed = locate(target.size)
                    if changed is not None:
                        bad_at = changed if bad_at is None else min(bad_at, changed)
                        why = HASH_MISMATCH
                        usable = bad_at - first
                        stop = True
                        break
                    target.finding.reason = INCONSISTENT
                    target.finding.detail = "root differs from the entries and their stored hashes"
                t += 1
            if bad_at is not None:
                window.extend(hashes[pos:usable])
                changed = locate(bad_at) if why == GAP else None
                if changed is not None:
                    bad_at, why = changed, HASH_MISMATCH
                culprit = finding  # the segment holding bad_at (the window may reach back)
                for seg_first, seg_finding in seen:
                    if seg_first <= bad_at:
                        culprit = seg_finding
                culprit.reason = why
                culprit.detail = f"at index {bad_at}"
                report.bad(bad_at, why)
                report.entries = bad_at
                stop = True
                continue
            _extend(cr, hashes[pos:], blocks)
            window.extend(hashes[pos:])
            report.entries = cr.size
            done_bytes += result.size
            if progress is not None:
                progress(done_bytes, total_bytes)
    finally:
        results.close()  # stops the pool early when a bad index ended the walk

    if not stop:
        for target in targets[t:]:  # checkpoints beyond the end of the log
            report.bad(
                cr.size,
                f"{MISSING}: checkpoint {target.finding.name} covers "
                f"{target.size} entries, the log has {cr.size}",
            )
            target.finding.reason = MISSING
            target.finding.detail = f"log ends at {cr.size}"
    if not segments and not targets:
        report.problems.append("no segments and no checkpoints: not an audit log")
    return report
