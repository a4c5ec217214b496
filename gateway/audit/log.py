"""`AuditLog`: the gateway's write-ahead, tamper-evident audit log (asyncio).

One writer task owns the segment files and one checkpointer task owns checkpoint signing; both
are started by `open` and stopped by `close`. Tree maths is in `merkle`, files in `storage`,
signed notes in `note`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit import merkle
from gateway.audit.entry import KIND_RECOVERY, canonical_json, check_entry, utc_timestamp
from gateway.audit.note import Checkpoint, NoteSigner, SignedCheckpoint
from gateway.audit.storage import (
    CHECKPOINTS,
    LATEST,
    BrokenTail,
    SegmentStore,
    checkpoint_name,
    checkpoint_paths,
    store_checkpoint,
)
from gateway.audit.tiles import TileTree
from gateway.errors import FieldViolation, IntegrityError, InvalidArgument, Unavailable

log = logging.getLogger(__name__)

MIB = 1 << 20
AUDIT_UNAVAILABLE = "AUDIT_UNAVAILABLE"


@dataclass(frozen=True)
class AppendReceipt:
    """Where an entry went: its index in the log and its RFC 9162 leaf hash."""

    index: int
    leaf_hash: bytes


#: (canonical line, subject or None, the appender's future)
_Pending = tuple[bytes, Any, "asyncio.Future[AppendReceipt]"]


class AuditLog:
    """An append-only log of canonical JSON entries under an RFC 9162 Merkle tree.

    Durability contract: `append` returns only after its entry is written and fdatasync'ed to
    the current segment, so a reply that waits for it MUST NOT leave before its audit entry is
    durably on disk. Group commit: the writer task takes every append pending at that moment,
    gives them consecutive indexes in arrival order, writes them with one write and one
    fdatasync (off the event loop), and only then resolves their futures.

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
        self._segments = SegmentStore(directory, segment_bytes)
        self._tiles = TileTree(directory)
        self._subjects: defaultdict[str, list[int]] = defaultdict(list)
        self._latest: SignedCheckpoint | None = None
        self._pending: list[_Pending] = []
        self._next_index = 0
        self._wake = asyncio.Event()
        self._checkpoint_due = asyncio.Event()
        self._checkpoint_lock = asyncio.Lock()
        self._failure: BaseException | None = None
        self._closing = False
        self._tasks: list[asyncio.Task[None]] = []

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
    ) -> AuditLog:
        """Open (or create) the log in `directory`, recovering from a crash first.

        A torn or corrupt tail of the last segment is kept as `<segment>.broken` and cut off;
        the tree is rebuilt from the entries and must match the last checkpoint (a shorter log
        or a different root is an IntegrityError: the log refuses to start); the recovery is
        then logged as an entry of its own.
        """
        signer = note_key if isinstance(note_key, NoteSigner) else NoteSigner(origin, note_key)
        if signer.name != origin:
            raise ValueError("the note key must be named after the log's origin")
        await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
        self = cls(
            directory,
            signer,
            checkpoint_every_entries=checkpoint_every_entries,
            checkpoint_every_ms=checkpoint_every_ms,
            segment_bytes=segment_bytes,
        )
        broken = await asyncio.to_thread(self._recover)
        self._next_index = self.tree_size
        self._tasks = [
            asyncio.create_task(self._writer(), name="audit-writer"),
            asyncio.create_task(self._checkpointer(), name="audit-checkpointer"),
        ]
        if broken is not None:
            log.warning("audit log recovered: %d bytes set aside", broken.truncated_bytes)
            await self.append(
                {
                    "kind": KIND_RECOVERY,
                    "time": utc_timestamp(),
                    "truncated_bytes": broken.truncated_bytes,
                    "broken_file": broken.broken_file.name,
                }
            )
        if self._latest is None or self._latest.size != self.tree_size:
            await self._checkpoint()
        return self

    def _recover(self) -> BrokenTail | None:
        tiles, subjects = self._tiles, self._subjects

        def check(index: int, line: bytes) -> bool:
            try:
                obj = json.loads(line)
            except ValueError:
                return False
            if not isinstance(obj, dict) or obj.get("index") != index:
                return False
            subject = obj.get("subject")
            if isinstance(subject, str) and subject:
                subjects[subject].append(index)
            return True

        def consume(first: int, lines: list[bytes]) -> None:
            tiles.add([merkle.leaf_hash(line) for line in lines])

        broken = self._segments.load(check, consume)
        candidates = [p for _, p in checkpoint_paths(self.directory)[-1:]]
        if (self.directory / LATEST).exists():
            candidates.append(self.directory / LATEST)
        opened = [SignedCheckpoint.open(p.read_bytes(), self._signer.verifier) for p in candidates]
        if opened:
            latest = max(opened, key=lambda cp: cp.size)
            if latest.size > tiles.size:
                raise IntegrityError(
                    f"audit log has {tiles.size} entries but its checkpoint covers {latest.size}",
                    reason="AUDIT_ROLLED_BACK",
                )
            root = (
                merkle.subtree_hash(0, latest.size, tiles.read_node)
                if latest.size
                else (merkle.EMPTY_ROOT)
            )
            if root != latest.root:
                raise IntegrityError(
                    f"audit log does not match its checkpoint at size {latest.size}",
                    reason="AUDIT_ROOT_MISMATCH",
                )
            self._latest = latest
        # Only now rewrite tiles: a log that fails the checks above keeps its evidence.
        tiles.flush()
        return broken

    # -- appending -------------------------------------------------------------------------

    async def append(self, entry: dict[str, Any]) -> AppendReceipt:
        """Log `entry` (all fields but `index`, which the log assigns) durably; see the class.

        Raises `Unavailable` (AUDIT_UNAVAILABLE) when the log cannot be written, and
        `AuditEntryError` when the entry holds floats or values JSON cannot carry.
        """
        if self._failure is not None or self._closing:
            raise Unavailable("the audit log cannot be written", reason=AUDIT_UNAVAILABLE)
        check_entry(entry)
        # Indexes are given in call order; serializing here, on the caller's turn, lets the
        # writer thread's write and fsync (which release the GIL) overlap with the next batch.
        index = self._next_index
        line = canonical_json({**entry, "index": index})
        self._next_index = index + 1
        future: asyncio.Future[AppendReceipt] = asyncio.get_running_loop().create_future()
        self._pending.append((line, entry.get("subject"), future))
        self._wake.set()
        return await future

    async def _writer(self) -> None:
        while True:
            if not self._pending:
                if self._closing:
                    return
                await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, []
            first = self._segments.size
            try:
                hashes = await asyncio.to_thread(self._write, [line for line, _, _ in batch])
            except OSError as exc:
                self._fail(exc, batch)
                return
            self._tiles.add(hashes)
            for i, (_, subject, future) in enumerate(batch):
                if subject and isinstance(subject, str):
                    self._subjects[subject].append(first + i)
                if not future.done():
                    future.set_result(AppendReceipt(first + i, hashes[i]))
            if self._latest is None or self.tree_size - self._latest.size >= self._every_entries:
                self._checkpoint_due.set()

    def _write(self, lines: list[bytes]) -> list[bytes]:
        self._segments.append(lines)
        return [merkle.leaf_hash(line) for line in lines]

    def _fail(self, exc: OSError, batch: list[_Pending]) -> None:
        log.error("audit log write failed, failing closed: %s", exc)
        self._failure = exc
        for _, _, future in [*batch, *self._pending]:
            if not future.done():
                error = Unavailable("the audit log cannot be written", reason=AUDIT_UNAVAILABLE)
                error.__cause__ = exc
                future.set_exception(error)
        self._pending = []

    # -- checkpoints -----------------------------------------------------------------------

    async def _checkpointer(self) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._checkpoint_due.wait(), timeout=self._every_s)
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
            await asyncio.to_thread(self._store_checkpoint, writes, signed)
            self._tiles.mark_written(writes)
            self._latest = signed

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

    def accesses(self, subject: str) -> list[int]:
        """Indexes of the entries about this subject (HMAC of an ID number), in order."""
        return list(self._subjects.get(subject, ()))

    # -- closing ---------------------------------------------------------------------------

    async def close(self) -> None:
        """Drain pending appends, sign a final checkpoint, stop the tasks."""
        if self._closing:
            return
        self._closing = True
        self._wake.set()
        self._checkpoint_due.set()
        try:
            await asyncio.gather(*self._tasks)
            if self._failure is None:
                await self._checkpoint()
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._segments.close()
