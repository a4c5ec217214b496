"""`AuditLog`: the gateway's write-ahead, tamper-evident audit log (asyncio).

One writer thread owns the segment files (a dedicated thread, not the default executor: it
takes the pending lines, writes and fdatasyncs them, and hands the batch back to the event loop
with one `call_soon_threadsafe`) and one checkpointer task owns checkpoint signing (its file
writes on a single-thread executor of their own); both are started by `open` and stopped by
`close`. Tree maths is in `merkle`, files in `storage`, signed notes in `note`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import sys
import threading
import time
from array import array
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit import merkle
from gateway.audit.entry import (
    KIND_RECOVERY,
    canonical_json,
    check_values,
    utc_timestamp,
)
from gateway.audit.index import IndexFull, MemoryIndex
from gateway.audit.note import Checkpoint, NoteSigner, SignedCheckpoint
from gateway.audit.storage import (
    CHECKPOINTS,
    LATEST,
    SegmentStore,
    TornTail,
    checkpoint_name,
    checkpoint_paths,
    prepare_directory,
    store_checkpoint,
    supersede_checkpoint,
)
from gateway.audit.tiles import TileTree, stored_leaf_hashes
from gateway.domain.errors import (
    ConfigError,
    FieldViolation,
    IntegrityError,
    InvalidArgument,
    Unavailable,
)

log = logging.getLogger(__name__)

MIB = 1 << 20
AUDIT_UNAVAILABLE = "AUDIT_UNAVAILABLE"
#: Group commit under saturation (like PostgreSQL's commit_delay): when the event loop's
#: thread was busy at least BUSY_FRACTION of the last BUSY_WINDOW_S, the writer waits up to
#: COMMIT_DELAY_S (or MAX_BATCH lines) before writing, so several calls share one write, one
#: fdatasync and one thread hand-off. Without it a saturated gateway wrote one entry per
#: fdatasync (its calls reach the log ~1 ms apart, an fdatasync takes ~0.1 ms), paying the
#: hand-off on every call. Then requests already queue for the CPU for many ms, so 2 ms more
#: is small; below saturation the writer never waits.
COMMIT_DELAY_S = 0.002
BUSY_FRACTION = 0.7
BUSY_WINDOW_S = 0.05
MAX_BATCH = 256
#: A crash leaves at most this many checkpoints' worth of entries unsigned (appends wait for a
#: checkpoint rather than run further ahead); opening refuses a longer unsigned tail.
UNSIGNED_CHECKPOINTS = 4
MIN_UNSIGNED = 64


@dataclass(frozen=True)
class AppendReceipt:
    """Where an entry went: its index in the log and its RFC 9162 leaf hash."""

    index: int
    leaf_hash: bytes


_sha256 = hashlib.sha256
#: `"subject":"<hex>"` as a top-level key of a canonical line: a quote inside a string is always
#: escaped, so `{"` or `,"` before the key can only be structure, never string content.
_SUBJECT = re.compile(rb'[{,]"subject":"([0-9a-f]{64})"')
#: every person whose record an access read (the applicant and, e.g., a kinship claim's
#: other person); entries from before the list carry only `subject`
_SUBJECTS = re.compile(rb'[{,]"subjects":\[((?:"[0-9a-f]{64}",?)+)\]')
_HEX64 = re.compile(rb"[0-9a-f]{64}")


class _Batch(asyncio.Future[tuple[int, list[bytes]]]):
    """One future for every append of a group commit: (first index, leaf hashes).

    All appenders of a batch await it, so cancelling one of them must not cancel it for the
    others: `cancel` refuses, and asyncio then delivers the appender's CancelledError once the
    batch is durable (its entry is on disk either way; only its reply is dropped). Appends
    that were held back for room await futures of their own, `followers`, answered with it.
    """

    def __init__(self, *, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop=loop)
        self.followers: list[asyncio.Future[tuple[int, list[bytes]]]] = []

    def cancel(self, msg: Any = None) -> bool:
        return False

    def land(self, first: int, hashes: list[bytes]) -> None:
        result = (first, hashes)
        self.set_result(result)
        for follower in self.followers:
            if not follower.done():  # else cancelled: its entry is logged all the same
                follower.set_result(result)

    def fail(self, error: BaseException) -> None:
        if not self.done():
            self.set_exception(error)
        for follower in self.followers:
            if not follower.done():
                follower.set_exception(error)


class _Held:
    """An append, or a piece of `append_many`, given its indexes and encoded but held back:
    writing it now would leave more than `unsigned_limit` entries unsigned. `_release` hands
    its lines to the writer once a checkpoint makes room, and makes `future` a follower of
    their batch."""

    __slots__ = ("first", "future", "lines", "subjects")

    def __init__(
        self,
        first: int,
        lines: list[bytes],
        subjects: list[tuple[str, int]],
        future: asyncio.Future[tuple[int, list[bytes]]],
    ) -> None:
        self.first = first
        self.lines = lines
        self.subjects = subjects
        self.future = future


def _add_subjects(out: list[tuple[str, int]], entry: Mapping[str, Any], index: int) -> None:
    """The (subject, index) pairs of an entry for the subject index: every person it lists in
    `subjects`, else its `subject`."""
    listed = entry.get("subjects")
    if type(listed) is list:
        out += [(s, index) for s in listed if type(s) is str]
    else:
        subject = entry.get("subject")
        if subject and type(subject) is str:
            out.append((subject, index))


def _encode(
    entries: Sequence[Mapping[str, Any]], first: int
) -> tuple[list[bytes], list[tuple[str, int]]]:
    """The lines of `entries` given indexes from `first`, and their (subject, index) pairs;
    AuditEntryError (nothing returned) if any cannot be encoded."""
    lines: list[bytes] = []
    subjects: list[tuple[str, int]] = []
    for index, entry in enumerate(entries, first):
        lines.append(canonical_json({**entry, "index": index}))
        _add_subjects(subjects, entry, index)
    return lines, subjects


class AuditLog:
    """An append-only log of canonical JSON entries under an RFC 9162 Merkle tree.

    Durability contract: `append` returns only after its entry is written and fdatasync'ed to
    the current segment, so a reply that waits for it MUST NOT leave before its audit entry is
    durably on disk. Group commit: the writer thread takes every append pending at that moment
    (waiting up to COMMIT_DELAY_S for more while the event loop is saturated), writes them in
    index (arrival) order with one write and one fdatasync, and only then resolves their
    futures, on the loop.

    Failure contract: if a write or fsync fails (disk full, I/O error), the log fails closed:
    that append and every later one raise `Unavailable` (reason AUDIT_UNAVAILABLE), so the
    gateway answers UNAVAILABLE and discloses nothing unlogged. Only a restart (with crash
    recovery) reopens the log.

    Checkpoints: the checkpointer signs a C2SP checkpoint every `checkpoint_every_entries`
    entries or `checkpoint_every_ms`, whichever comes first, only when the tree grew; each one
    is checked consistent with the previous one (RFC 9162 §2.1.4) before it is published.
    """

    def __init__(
        self,
        directory: Path,
        signer: NoteSigner,
        *,
        checkpoint_every_entries: int,
        checkpoint_every_ms: int,
        segment_bytes: int,
    ) -> None:
        self.directory = directory
        self.origin = signer.name
        self._signer = signer
        self._every_entries = checkpoint_every_entries
        self._every_s = checkpoint_every_ms / 1000
        #: the loop the log runs on (`open` constructs it there), kept rather than asked for on
        #: every append: asyncio.get_running_loop() makes a getpid() system call each time
        self._loop = asyncio.get_running_loop()
        self._segments = SegmentStore(directory, segment_bytes)
        self._tiles = TileTree(directory)
        #: subject → entry indexes, bounded (gateway.audit.index); the entries there at
        #: opening fill in in the background
        self._subjects = MemoryIndex()
        self._indexed = asyncio.Event()
        self._index_failure: BaseException | None = None
        self._latest: SignedCheckpoint | None = None
        self._lines: list[bytes] = []
        self._line_subjects: list[tuple[str, int]] = []
        self._batch: _Batch | None = None
        self._next_index = 0
        # Guards _lines, _line_subjects and _batch between the loop and the writer thread.
        self._pending = threading.Condition(threading.Lock())
        self._writer_waiting = False
        self._writer_stop = False  # the thread drains what is pending, then exits
        self._lingering = False  # the writer waits for more lines (group commit, busy loop)
        self._busy = False  # the loop's thread was saturated over the last window
        self._window = (time.monotonic(), time.thread_time())
        self._checkpoint_pool = ThreadPoolExecutor(1, thread_name_prefix="audit-checkpoint")
        self._checkpoint_due = asyncio.Event()
        self._checkpoint_lock = asyncio.Lock()
        self._failure: BaseException | None = None
        self._closing = False
        self._tasks: list[asyncio.Task[None]] = []
        #: appends wait while this many entries are not under a stored checkpoint (set by open)
        self._append_limit = sys.maxsize
        self._signed_size = 0  # the size of the latest stored checkpoint
        self._signing = 0  # the size of the checkpoint being stored, if one is
        #: appends encoded but held back for room under the limit, in index order (_release)
        self._held: deque[_Held] = deque()
        self._handed = 0  # the lines below this index are the writer thread's

    # -- opening and recovery --------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        directory: Path,
        *,
        origin: str,
        note_key: Ed25519PrivateKey | NoteSigner,
        checkpoint_every_entries: int = 256,
        checkpoint_every_ms: int = 1000,
        segment_bytes: int = 64 * MIB,
        witnessed: Sequence[Path] = (),
        recovery_reason: str | None = None,
    ) -> AuditLog:
        """Open (or create) the log in `directory`, recovering from a crash first.

        The log never signs what it cannot vouch for. It starts only when a checkpoint it
        signed (the latest in `checkpoints/` or `checkpoint`, or a note in one of the
        `witnessed` files: cosigned checkpoints kept where whoever can write the log directory
        cannot) covers the entries:

        - every such checkpoint must be a prefix of the entries: a shorter log is
          AUDIT_ROLLED_BACK, a different root AUDIT_ROOT_MISMATCH;
        - entries with no checkpoint at all, or more of them after the latest checkpoint than
          a crash can leave (`unsigned_limit`: appends wait for a checkpoint before going
          further), are AUDIT_UNCHECKPOINTED: checkpoints deleted and entries rewritten must
          not be re-signed as if nothing happened;
        - a torn or corrupt tail of the last segment (a crash in the middle of a write) is
          kept as `<segment>.broken`, cut off, and logged as a recovery entry of its own.

        A refusal is an IntegrityError naming the directory and what is missing; nothing is
        changed on disk. `recovery_reason` (`proofless audit recover`) is the operator's way
        out: the log is rehashed from its entries, checkpoints they contradict are moved to
        `checkpoints/superseded/`, and a recovery entry recording what was found, the old and
        new sizes and the reason is written before anything is signed.

        Opening does not rehash the whole log: the tiles persisted under the last checkpoint are
        trusted once the root they give equals that signed checkpoint's root; then only the
        last segment is re-read (its lines under the checkpoint compared with the stored leaf
        hashes, the ones after it checked as JSON and added). Missing or disagreeing tiles
        (they are written without fsync) fall back to rebuilding the tree from every entry.
        Full re-verification of every entry is `proofless audit verify`'s job.

        The subject index behind `accesses` is built from the entries by an owned background
        task; `accesses` waits for it.
        """
        signer = note_key if isinstance(note_key, NoteSigner) else NoteSigner(origin, note_key)
        if signer.name != origin:
            raise ValueError("the note key must be named after the log's origin")
        await asyncio.to_thread(prepare_directory, directory)
        self = cls(
            directory,
            signer,
            checkpoint_every_entries=checkpoint_every_entries,
            checkpoint_every_ms=checkpoint_every_ms,
            segment_bytes=segment_bytes,
        )
        recovery = await asyncio.to_thread(self._recover, tuple(witnessed), recovery_reason)
        self._next_index = self._handed = self.tree_size
        self._tasks = [
            asyncio.create_task(self._writer(), name="audit-writer"),
            asyncio.create_task(self._index_subjects(self.tree_size), name="audit-indexer"),
        ]
        if recovery is not None:  # logged before anything is signed over it
            await self.append(recovery)
        self._tasks.insert(1, asyncio.create_task(self._checkpointer(), name="audit-checkpointer"))
        if self._latest is None or self._latest.size != self.tree_size:
            await self._checkpoint()
        self._signed_size = self.latest_checkpoint().size
        self._append_limit = self.unsigned_limit
        return self

    def _witnessed_notes(self, paths: tuple[Path, ...]) -> list[SignedCheckpoint]:
        """The checkpoints in the `witnessed` files, each required to carry this log's
        signature (a witness's cosignature is not needed: the log's own signature is what
        commits it to that size and root). A file not there yet is skipped with a warning."""
        notes = []
        for path in paths:
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                log.warning("witnessed checkpoint file %s is absent; not checked", path)
                continue
            except OSError as exc:
                raise ConfigError(f"{path}: cannot read the witnessed checkpoint") from exc
            try:
                notes.append(SignedCheckpoint.open(data, self._signer.verifier))
            except IntegrityError as exc:
                raise ConfigError(
                    f"{path}: not a checkpoint signed by this log's key ({exc.reason})"
                ) from exc
        return notes

    def _recover(
        self, witnessed: tuple[Path, ...], recovery_reason: str | None
    ) -> dict[str, Any] | None:
        """Load the segments and check them against every signed checkpoint at hand (see
        `open`); returns the recovery entry to append first, if any."""
        directory, recovering = self.directory, recovery_reason is not None
        candidates = [p for _, p in checkpoint_paths(directory)[-1:]]
        if (directory / LATEST).exists():
            candidates.append(directory / LATEST)
        stored = [SignedCheckpoint.open(p.read_bytes(), self._signer.verifier) for p in candidates]
        notes = self._witnessed_notes(witnessed)
        latest = max([*stored, *notes], key=lambda cp: cp.size, default=None)
        trusted = 0
        if latest is not None and latest.size and not recovering:
            try:
                tiles = TileTree.at_size(directory, latest.size)
                if tiles.root() == latest.root:
                    self._tiles, trusted = tiles, latest.size
                else:
                    log.warning("audit tiles disagree with the checkpoint; rehashing the log")
            except IntegrityError as exc:
                log.warning("audit tiles unusable (%s); rehashing the log", exc)
        tiles = self._tiles

        def check(index: int, line: bytes) -> bool:
            if index < trusted:
                return True  # compared with its stored leaf hash in consume
            try:
                obj = json.loads(line)
            except ValueError:
                return False
            return isinstance(obj, dict) and obj.get("index") == index

        def consume(first: int, lines: list[bytes]) -> None:
            hashes = [_sha256(b"\x00" + line).digest() for line in lines]
            covered = min(len(hashes), max(0, trusted - first))
            if covered:
                stored = stored_leaf_hashes(directory, first, first + covered)
                for i, (mine, theirs) in enumerate(zip(hashes, stored, strict=False)):
                    if mine != theirs:
                        raise IntegrityError(
                            f"audit log {directory}: entry {first + i} does not match its "
                            "checkpointed hash; refusing to start",
                            reason="AUDIT_ROOT_MISMATCH",
                        )
            tiles.add(hashes[covered:])

        torn = self._segments.load(check, consume, trusted=trusted)
        size = self._segments.size

        def root_at(n: int) -> bytes:
            return merkle.subtree_hash(0, n, tiles.read_node) if n else merkle.EMPTY_ROOT

        found: tuple[str, str] | None = None
        signed = [(cp, "checkpoint") for cp in stored]
        signed += [(cp, "witnessed checkpoint") for cp in notes]
        for cp, what in signed:
            if cp.size > size:
                found = ("AUDIT_ROLLED_BACK", f"it has {size} entries, its {what} covers {cp.size}")
                break
        else:
            assert tiles.size == size, (tiles.size, size)
            for cp, what in signed:
                if root_at(cp.size) != cp.root:
                    found = (
                        "AUDIT_ROOT_MISMATCH",
                        f"its entries differ from its {what} of {cp.size}",
                    )
                    break
        if found is None and size:
            if latest is None:
                found = ("AUDIT_UNCHECKPOINTED",
                         f"no signed checkpoint covers its {size} entries "
                         f"({LATEST} and {CHECKPOINTS}/ are missing)")  # fmt: skip
            elif size - latest.size > (limit := self.unsigned_limit):
                found = ("AUDIT_UNCHECKPOINTED",
                         f"its latest signed checkpoint covers {latest.size} of its {size} "
                         f"entries; a crash leaves at most {limit} unsigned")  # fmt: skip
        if not recovering:
            if found is not None:
                reason, detail = found
                raise IntegrityError(
                    f"audit log {directory} refuses to start: {detail}. Nothing was signed; "
                    f"find out why, then `proofless audit recover {directory} --reason TEXT` "
                    "signs it with a recovery entry",
                    reason=reason,
                )
            self._latest = latest
            entry = None
            if torn is not None:
                broken = self._segments.set_aside(torn)
                log.warning("audit log recovered: %d bytes set aside", broken.truncated_bytes)
                entry = {
                    "kind": KIND_RECOVERY,
                    "event": "torn_tail",
                    "time": utc_timestamp(),
                    "truncated_bytes": broken.truncated_bytes,
                    "broken_file": broken.broken_file.name,
                }
        else:
            entry = self._recovery_entry(
                found, latest, size, root_at=root_at, torn=torn, reason=recovery_reason
            )
        # Only now rewrite tiles: a log that fails the checks above keeps its evidence.
        tiles.flush()
        return entry

    def _recovery_entry(
        self,
        found: tuple[str, str] | None,
        latest: SignedCheckpoint | None,
        size: int,
        *,
        root_at: Callable[[int], bytes],
        torn: TornTail | None,
        reason: str | None,
    ) -> dict[str, Any]:
        """`proofless audit recover`: set contradicted checkpoints aside and describe it all."""
        if found is None:
            raise ConfigError(f"audit log {self.directory} needs no recovery: it opens as it is")
        superseded: list[str] = []
        if found[0] == "AUDIT_UNCHECKPOINTED":
            self._latest = latest  # still a prefix: the next checkpoint must extend it
        else:
            paths = [p for _, p in checkpoint_paths(self.directory)]
            if (self.directory / LATEST).exists():
                paths.append(self.directory / LATEST)
            for path in paths:
                try:
                    cp = SignedCheckpoint.parse(path.read_bytes())
                    keep = cp.size <= size and root_at(cp.size) == cp.root
                except IntegrityError:
                    keep = False
                if not keep:
                    superseded.append(supersede_checkpoint(self.directory, path).name)
        entry: dict[str, Any] = {
            "kind": KIND_RECOVERY,
            "event": "operator_recovery",
            "time": utc_timestamp(),
            "found": found[0],
            "detail": found[1],
            "reason": reason,
            "old_size": None if latest is None else latest.size,
            "new_size": size,
            "superseded": superseded,
        }
        if torn is not None:
            broken = self._segments.set_aside(torn)
            entry["truncated_bytes"] = broken.truncated_bytes
            entry["broken_file"] = broken.broken_file.name
        log.warning("audit log %s recovered by its operator (%s)", self.directory, found[0])
        return entry

    @property
    def failure_reason(self) -> str:
        """Why appends fail ("" while the log can be written): readiness reads it."""
        if self._closing:
            return "the audit log is closing"
        if self._failure is not None:
            return f"the audit log cannot be written ({type(self._failure).__name__})"
        return ""

    @property
    def unsigned_limit(self) -> int:
        """The most entries a crash can leave after the latest checkpoint: appends wait for a
        checkpoint rather than run further ahead, and opening refuses more."""
        return max(UNSIGNED_CHECKPOINTS * self._every_entries, MIN_UNSIGNED)

    async def _index_subjects(self, end: int) -> None:
        """Fill the subject index for entries [0, end) from the segments, off the event loop.

        Entries appended after opening are indexed by the writer as they land; the two parts
        are joined here, in index order, before `accesses` answers. The index's bounds hold
        while it is built: past one, the scan stops and the index reports itself full. With
        the index off (the gateway lists from PostgreSQL) the scan stops at the next segment.
        """
        index = self._subjects
        found: dict[str, array[int]] = {}
        entries = 0
        try:
            for segment in list(self._segments.segments):
                if segment.first >= end or not index.enabled:
                    break
                entries = await asyncio.to_thread(self._scan_subjects, segment.path,
                    segment.first, min(end, segment.first + segment.count), found,
                    entries=entries, bounds=index)  # fmt: skip
        except IndexFull:
            index.overflow()
        except OSError as exc:
            log.error("audit subject index could not be built: %s", exc)
            self._index_failure = exc
        except asyncio.CancelledError as exc:  # closed before the index was complete
            self._index_failure = exc
            raise
        else:
            index.join(found, entries)
        finally:
            self._indexed.set()

    @staticmethod
    def _scan_subjects(
        path: Path,
        first: int,
        end: int,
        found: dict[str, array[int]],
        *,
        entries: int,
        bounds: MemoryIndex,
    ) -> int:
        """Add the subjects of a segment's entries [first, end) to `found`, which holds
        `entries` already; the new total, or IndexFull past `bounds`."""
        with open(path, "rb") as f:
            lines = f.read().split(b"\n")[: end - first]
        search, search_all, hexes = _SUBJECT.search, _SUBJECTS.search, _HEX64.findall
        for i, line in enumerate(lines, first):
            listed = search_all(line)
            if listed is not None:
                subjects = [h.decode() for h in hexes(listed.group(1))]
            else:
                m = search(line)
                subjects = [m.group(1).decode()] if m is not None else []
            for subject in subjects:
                if subject not in found:
                    found[subject] = array("Q")
                found[subject].append(i)
            entries += len(subjects)
            if subjects and bounds.over(len(found), entries):
                raise IndexFull
        return entries

    # -- appending -------------------------------------------------------------------------
    #
    # An append is given its index and encoded at once, on the caller's turn, so indexes
    # follow call order. Its line then goes to the writer thread, unless writing it would
    # leave more than `unsigned_limit` entries unsigned (or lines before it are held back):
    # then it is held, in index order, and each stored checkpoint hands the writer as many
    # held lines as now have room (`_release`). Room is thus given first come, first served,
    # and only the lines let through are touched: the appends wait on futures of their own,
    # answered when their lines are durable. (They waited on one asyncio.Event before, which
    # each checkpoint set: under load ~1000 appends woke to re-check the limit, and most
    # waited again, at a cost above that of the appends themselves.)

    async def append(self, entry: dict[str, Any]) -> AppendReceipt:
        """Log `entry` (all fields but `index`, which the log assigns) durably; see the class.

        Raises `Unavailable` (AUDIT_UNAVAILABLE) when the log cannot be written, and
        `AuditEntryError` when the entry holds floats or values JSON cannot carry.
        """
        if self._failure is not None or self._closing:
            raise Unavailable("the audit log cannot be written", reason=AUDIT_UNAVAILABLE)
        check_values(entry)  # and its keys as it is encoded
        index = self._next_index
        line = canonical_json({**entry, "index": index})
        self._next_index = index + 1
        subjects: list[tuple[str, int]] = []
        _add_subjects(subjects, entry, index)
        if self._held or index - self._signed_size >= self._append_limit:
            first, hashes = await self._hold(index, [line], subjects).future
        else:
            first, hashes = await self._hand([line], subjects)
        return AppendReceipt(index, hashes[index - first])

    async def append_many(self, entries: Sequence[Mapping[str, Any]]) -> list[AppendReceipt]:
        """Log several entries with consecutive indexes, in order: `append` for each, at one
        check for room, one pass under the writer's lock and one future for the group.

        Same contract as `append`: it returns once every entry is durable and in the tree;
        an entry refused by `check_entry` (or a lone surrogate) refuses the whole group
        before any is logged. The unsigned limit holds for a group too: one that does not fit
        is held whole until a checkpoint leaves room for all of it; one larger than
        `unsigned_limit`, which never could, is held in pieces of `unsigned_limit` entries,
        each written once the checkpoint over the one before is stored. Like an append's, a
        group's entries are logged even if its caller is cancelled once the call has begun.
        """
        if self._failure is not None or self._closing:
            raise Unavailable("the audit log cannot be written", reason=AUDIT_UNAVAILABLE)
        for entry in entries:
            check_values(entry)
        limit = self._append_limit
        step = min(len(entries), limit) or 1
        encoded: list[tuple[int, list[bytes], list[tuple[str, int]]]] = []
        start = self._next_index
        for i in range(0, len(entries), step):  # all encoded before anything changes
            lines, subjects = _encode(entries[i : i + step], start)
            encoded.append((start, lines, subjects))
            start += len(lines)
        self._next_index = start
        parts: list[tuple[int, int, asyncio.Future[tuple[int, list[bytes]]]]] = []
        for start, lines, subjects in encoded:
            if not self._held and start + len(lines) - self._signed_size <= limit:
                parts.append((start, len(lines), self._hand(lines, subjects)))
            else:
                parts.append((start, len(lines), self._hold(start, lines, subjects).future))
        receipts: list[AppendReceipt] = []
        for start, count, future in parts:
            first, hashes = await future
            lo = start - first
            receipts += map(AppendReceipt, range(start, start + count), hashes[lo : lo + count])
        return receipts

    def _hand(self, lines: list[bytes], subjects: list[tuple[str, int]]) -> _Batch:
        """Give the writer thread `lines` (the next ones in index order); returns their batch."""
        self._handed += len(lines)
        with self._pending:
            self._lines += lines
            if subjects:
                self._line_subjects += subjects
            if self._lingering and len(self._lines) >= MAX_BATCH:
                self._lingering = False
                self._pending.notify()
            batch = self._batch
            if batch is None:
                batch = self._batch = _Batch(loop=self._loop)
                # Wake the writer after the callbacks already due on this loop turn, so the
                # appends they make join this batch (measured: waking at once wrote ~1 entry
                # per fdatasync under load, one thread hand-off per call).
                self._loop.call_soon(self._kick)
        return batch

    def _hold(self, first: int, lines: list[bytes], subjects: list[tuple[str, int]]) -> _Held:
        held = _Held(first, lines, subjects, self._loop.create_future())
        self._held.append(held)
        self._sign_for_room()
        return held

    def _release(self) -> None:
        """A checkpoint was stored: hand the writer the held lines that now have room, in
        index order (whole appends and pieces: a line is never split from its append)."""
        if self._failure is not None or self._closing:
            self._refuse_held()  # the writer takes no more lines: nothing would answer them
            return
        held, end = self._held, self._signed_size + self._append_limit
        lines: list[bytes] = []
        subjects: list[tuple[str, int]] = []
        futures: list[asyncio.Future[tuple[int, list[bytes]]]] = []
        while held and held[0].first + len(held[0].lines) <= end:
            first = held.popleft()
            lines += first.lines
            subjects += first.subjects
            futures.append(first.future)
        if lines:
            self._hand(lines, subjects).followers += futures
            self._kick()  # now, not after the callbacks due: these lines are all there is

    def _sign_for_room(self) -> None:
        """Lines are held back for room: ask for a checkpoint over all that has landed once
        nothing more is on its way to land and none is being stored (then this runs again).
        A checkpoint costs about the same whatever it covers (the tiles, four fsyncs): signed
        at every landing, one over the few entries that happened to land first held the next
        one, over the ~1000 about to land, back by its whole length, and the appends kept
        coming in those two waves, two checkpoints for every `unsigned_limit` entries."""
        if self._signing or self._handed != self.tree_size:
            return
        if self.tree_size > self._signed_size:
            self._checkpoint_due.set()

    def _refuse_held(self) -> None:
        """Closing or failed: every held append raises Unavailable, its lines unwritten."""
        held, self._held = self._held, deque()
        for first in held:
            if not first.future.done():
                first.future.set_exception(
                    Unavailable("the audit log cannot be written", reason=AUDIT_UNAVAILABLE)
                )

    async def _writer(self) -> None:
        """Run the writer thread until `close` (or cancellation) stops it. Every batch it
        lands is delivered to `_landed` on this loop, in order, before this returns."""
        loop = asyncio.get_running_loop()
        stopped = loop.create_future()

        def finished() -> None:
            if not stopped.done():
                stopped.set_result(None)

        def run() -> None:
            try:
                self._write_loop(loop)
            finally:
                with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits
                    loop.call_soon_threadsafe(finished)

        thread = threading.Thread(target=run, name="audit-writer", daemon=True)
        thread.start()
        try:
            await stopped
        finally:
            self._stop_writer()

    def _kick(self) -> None:
        """On the loop, once per batch: wake the writer; note whether the loop is saturated."""
        now = time.monotonic()
        since, cpu = self._window
        if now - since >= BUSY_WINDOW_S:
            thread_cpu = time.thread_time()  # this (the loop's) thread's CPU time
            self._busy = (thread_cpu - cpu) >= BUSY_FRACTION * (now - since)
            self._window = (now, thread_cpu)
        with self._pending:
            if self._writer_waiting:
                self._writer_waiting = False
                self._pending.notify()

    def _stop_writer(self) -> None:
        with self._pending:
            self._writer_stop = True
            self._writer_waiting = False
            self._pending.notify()

    def _write_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """The writer thread: take every pending line, write, fdatasync, hand back; at once
        again if more arrived meanwhile (group commit), else sleep until an append wakes it."""
        pending = self._pending
        while True:
            with pending:
                while not self._lines:
                    if self._writer_stop:
                        return
                    self._writer_waiting = True
                    pending.wait()
                if self._busy and len(self._lines) < MAX_BATCH:
                    self._lingering = True
                    until = time.monotonic() + COMMIT_DELAY_S
                    while self._lingering and not self._writer_stop:
                        left = until - time.monotonic()
                        if left <= 0:
                            break
                        pending.wait(left)
                    self._lingering = False
                lines, self._lines = self._lines, []
                subjects, self._line_subjects = self._line_subjects, []
                batch, self._batch = self._batch, None
            assert batch is not None
            first = self._segments.size
            try:
                hashes = self._write(lines)
            except OSError as exc:
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(self._fail, exc, batch)
                return
            try:
                loop.call_soon_threadsafe(self._landed, batch, first, hashes, subjects)
            except RuntimeError:  # the loop is closed: nobody is left to answer
                return

    def _landed(
        self, batch: _Batch, first: int, hashes: list[bytes], subjects: list[tuple[str, int]]
    ) -> None:
        """On the loop: a batch is durable; add it to the tree and the index, answer it."""
        self._tiles.add(hashes)
        self._subjects.landed(subjects)
        # Ask for the checkpoint before answering the batch: the checkpointer then runs ahead
        # of the appenders the answers wake (~1000 under load), not after all of them.
        if self._held:
            self._sign_for_room()
        elif self._latest is None or self.tree_size - self._latest.size >= self._every_entries:
            self._checkpoint_due.set()
        batch.land(first, hashes)

    def _write(self, lines: list[bytes]) -> list[bytes]:
        self._segments.append(lines)
        return [_sha256(b"\x00" + line).digest() for line in lines]

    def _fail(self, exc: OSError, batch: _Batch) -> None:
        log.error("audit log write failed, failing closed: %s", exc)
        self._failure = exc
        self._refuse_held()  # appends waiting for a checkpoint fail too
        with self._pending:
            batches = (batch, self._batch)
            self._batch = None
            self._lines = []
            self._line_subjects = []
        for pending in batches:
            if pending is not None:
                error = Unavailable("the audit log cannot be written", reason=AUDIT_UNAVAILABLE)
                error.__cause__ = exc
                pending.fail(error)

    # -- checkpoints -----------------------------------------------------------------------

    async def _checkpointer(self) -> None:
        while not self._closing:
            # asyncio.timeout, not wait_for: no task per round (in 3.11 wait_for wraps the
            # wait in one, which comes and goes around every checkpoint)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._every_s):
                    await self._checkpoint_due.wait()
            self._checkpoint_due.clear()
            if self._closing:
                return
            try:
                await self._checkpoint()
            except OSError as exc:  # entries are safe; the next round retries
                log.error("audit checkpoint could not be stored: %s", exc)

    async def _checkpoint(self) -> None:
        async with self._checkpoint_lock:
            size, previous = self._tiles.size, self._latest
            if previous is not None and previous.size == size:
                return
            root = self._tiles.root()
            if previous is not None and previous.size:
                # Never publish two inconsistent checkpoints (RFC 9162 §2.1.4.2).
                proof = merkle.consistency_proof(previous.size, size, self._tiles.read_node)
                merkle.verify_consistency(previous.size, size, proof, previous.root, root)
            signed = SignedCheckpoint.sign(Checkpoint(self.origin, size, root), self._signer)
            writes = self._tiles.pending_writes()
            self._signing = size
            try:
                await self._loop.run_in_executor(
                    self._checkpoint_pool, self._store_checkpoint, writes, signed
                )
            finally:
                self._signing = 0
            self._tiles.mark_written(writes)
            self._latest = signed
            self._signed_size = signed.size
            self._release()
            if self._held:  # the next ones do not fit yet
                self._sign_for_room()

    def _store_checkpoint(
        self, writes: list[tuple[str, bytes, bool]], cp: SignedCheckpoint
    ) -> None:
        self._tiles.write_tiles(writes)  # tiles first: a published size is always provable
        store_checkpoint(self.directory, cp.size, cp.text)

    # -- reading ---------------------------------------------------------------------------

    @property
    def tree_size(self) -> int:
        """Entries durably written and in the tree."""
        return self._tiles.size

    @property
    def vkey(self) -> str:
        """The note verifier key of this log: `origin+hexid+base64(0x01 || key)`."""
        return self._signer.vkey

    def latest_checkpoint(self) -> SignedCheckpoint:
        assert self._latest is not None, "open() signs a checkpoint before returning"
        return self._latest

    async def checkpoint_at(self, size: int) -> SignedCheckpoint | None:
        """The checkpoint signed at exactly `size`, if there was one."""
        path = self.directory / CHECKPOINTS / checkpoint_name(size)
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            return None
        return SignedCheckpoint.parse(data)

    def _check_range(self, what: str, lo: int, hi: int, *, limit: int | None = None) -> None:
        if not 0 <= lo <= hi <= self.tree_size:
            raise InvalidArgument(
                [FieldViolation(what, f"must satisfy 0 <= {lo} <= {hi} <= {self.tree_size}")]
            )
        if limit is not None and hi - lo > limit:
            raise InvalidArgument([FieldViolation(what, f"at most {limit} per call")])

    async def entries(self, start: int, end: int) -> list[bytes]:
        """Leaves [start, end): the canonical JSON lines, without newlines."""
        self._check_range("end", start, end)
        return await asyncio.to_thread(self._segments.read, start, end)

    async def inclusion_proof(self, index: int, tree_size: int) -> list[bytes]:
        """RFC 9162 §2.1.3 proof of leaf `index` in the tree of `tree_size` (O(log n) reads)."""
        self._check_range("tree_size", 1, tree_size)
        if not 0 <= index < tree_size:
            raise InvalidArgument([FieldViolation("index", "must be below tree_size")])
        return merkle.inclusion_proof(index, tree_size, self._tiles.read_node)

    async def consistency_proof(self, first: int, second: int) -> list[bytes]:
        """RFC 9162 §2.1.4 proof that tree `first` is a prefix of tree `second`."""
        self._check_range("second", 1, second)
        if not 0 < first <= second:
            raise InvalidArgument([FieldViolation("first", "must satisfy 0 < first <= second")])
        return merkle.consistency_proof(first, second, self._tiles.read_node)

    async def accesses(self, subject: str) -> list[int]:
        """Indexes of the entries about this subject (HMAC of an ID number), in order.

        Waits for the background index of the entries that were there at opening. UNAVAILABLE
        (AUDIT_INDEX_FULL) once the index went past its bounds.
        """
        await self._indexed.wait()
        if self._index_failure is not None:
            raise Unavailable("the audit subject index is unavailable", reason=AUDIT_UNAVAILABLE)
        return self._subjects.get(subject)

    @property
    def subject_index(self) -> MemoryIndex:
        """The in-memory subject index behind `accesses`: its bounds are set (or it is
        turned off) by the gateway after opening; its `grown` event is set as batches land."""
        return self._subjects

    # -- closing ---------------------------------------------------------------------------

    async def close(self) -> None:
        """Drain pending appends, sign a final checkpoint, stop the tasks."""
        if self._closing:
            return
        self._closing = True
        self._refuse_held()
        self._stop_writer()
        self._checkpoint_due.set()
        for task in self._tasks:
            if task.get_name() == "audit-indexer":
                task.cancel()
        try:
            await asyncio.gather(*self._tasks[:2])
            if self._failure is None:
                await self._checkpoint()
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._checkpoint_pool.shutdown(wait=False)
            self._segments.close()
