"""The audit log on disk: entry segments, hash tiles and checkpoints. Synchronous file I/O.

Layout of a log directory (everything a static file server could publish)::

    entries/00000000000000000000.jsonl   canonical JSON Lines, named by their first index,
                                         rotated by size; a leaf is a line without its newline
    tile/<L>/<N>[.p/<W>]                 C2SP tlog-tiles hash tiles (below)
    checkpoints/00000000000000000256     every signed checkpoint, named by its tree size
    checkpoint                           the latest one (replaced atomically)
    entries/<segment>.broken             a torn tail set aside by crash recovery

Hashes are kept as C2SP tlog-tiles (`tiles.py`); the entry bundles of tlog-tiles
(`tile/entries/...`) are replaced by the JSON Lines segments.

Durability: segments are what is acknowledged, so they are written and fdatasync'ed by the
writer (and the directory fsynced when a segment is created). Tiles are derived data written at
checkpoint time without fsync; on open they are rebuilt from the entries, so a crash can only
lose tiles that the next start rewrites.

Permissions: the log holds who accessed whom, so its directories are created 0700 and its
files 0600 (`prepare_directory` also takes group and other access away from a directory an
older version created 0755). Whole files are replaced atomically through a fresh temporary
name (O_EXCL | O_NOFOLLOW) and a target that is a symbolic link is refused, so nobody who can
plant a link in the directory makes the gateway or a witness write elsewhere.
"""

from __future__ import annotations

import contextlib
import logging
import operator
import os
import secrets
import stat
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from pathlib import Path

from gateway.domain.errors import ConfigError, IntegrityError

log = logging.getLogger(__name__)

ENTRIES = "entries"
CHECKPOINTS = "checkpoints"
LATEST = "checkpoint"
#: checkpoints a recovery found contradicted by the entries, moved here (kept as evidence)
SUPERSEDED = "superseded"
DIR_MODE = 0o700
FILE_MODE = 0o600
#: the shortest audit pepper accepted: an HMAC key of fewer bytes is guessable
MIN_PEPPER_BYTES = 16


def read_pepper(path: Path) -> bytes:
    """The audit pepper: the file's bytes exactly as they are, the one reader for everyone who
    computes a `subject` (the gateway, `audit replay`).

    Nothing is stripped: a pepper is 32 random bytes, any of which may be a whitespace byte,
    and the gateway has always keyed its subjects with the raw file, so stripping on one side
    only made a search find nothing. A file shorter than MIN_PEPPER_BYTES is refused.
    """
    try:
        pepper = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the audit pepper ({exc.strerror})") from exc
    if len(pepper) < MIN_PEPPER_BYTES:
        raise ConfigError(
            f"{path}: the audit pepper must hold at least {MIN_PEPPER_BYTES} bytes "
            f"(it holds {len(pepper)}); make one with `head -c 32 /dev/urandom`"
        )
    return pepper


def prepare_directory(path: Path) -> None:
    """Create `path` (and its parents) 0700; take group and other access away if it exists."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        try:
            os.chmod(path, mode & ~0o077)
        except PermissionError:  # e.g. a volume's root owned by root with an fsGroup
            log.warning("audit directory %s stays mode %o: not its owner", path, mode)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durably(path: Path, data: bytes) -> None:
    """Replace `path` with `data` atomically and durably, mode 0600.

    A fresh temporary file in the same directory (random name, O_EXCL | O_NOFOLLOW, so a link
    planted under a predictable name is never followed), fsync, rename over `path`, fsync the
    directory. A `path` that is a symbolic link is refused (IntegrityError): whoever put it
    there wants the write to land elsewhere.
    """
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        write_durably_at(dir_fd, path.name, data, str(path))
    finally:
        os.close(dir_fd)


def write_durably_at(dir_fd: int, name: str, data: bytes, shown: str) -> None:
    """`write_durably` of `name` in the open directory `dir_fd` (the witness holds its state
    directory open); `shown` names the file in the refusal of a symbolic link."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        pass
    else:
        if stat.S_ISLNK(st.st_mode):
            raise IntegrityError(
                f"{shown} is a symbolic link; refusing to write through it",
                reason="SYMLINK_REFUSED",
            )
    tmp = f".{name}.{secrets.token_hex(6)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    fd = os.open(tmp, flags, FILE_MODE, dir_fd=dir_fd)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise
    os.fsync(dir_fd)


# ---------------------------------------------------------------------------------------------
# Segments


def segment_name(first: int) -> str:
    return f"{first:020d}.jsonl"


def segment_paths(directory: Path) -> list[tuple[int, Path]]:
    """Segments in index order; names that are not `<20 digits>.jsonl` are ignored."""
    found = []
    for path in (directory / ENTRIES).glob("*.jsonl"):
        stem = path.name.removesuffix(".jsonl")
        if len(stem) == 20 and stem.isdigit():
            found.append((int(stem), path))
    return sorted(found)


def line_offsets(data: bytes) -> array[int]:
    """Byte offset of each complete line's start, with C-level iterators (no per-line Python)."""
    lines = data.split(b"\n")
    lines.pop()
    starts = accumulate(map(len, lines), initial=0)  # + one newline per line before
    return array("Q", map(operator.add, starts, range(len(lines))))


@dataclass
class Segment:
    first: int
    path: Path
    count: int = 0
    #: byte length of the complete lines
    end: int = 0
    #: line starts; None for a sealed segment until a read needs them (opening stays cheap)
    _offsets: array[int] | None = field(default_factory=lambda: array("Q"), repr=False)

    @property
    def offsets(self) -> array[int]:
        """Line starts; a line ends one byte before the next start (or `end`)."""
        if self._offsets is None:
            with open(self.path, "rb") as f:
                offsets = line_offsets(f.read(self.end))
            if len(offsets) != self.count:
                raise IntegrityError(
                    f"audit segment {self.path.name} changed on disk", reason="AUDIT_CORRUPT"
                )
            self._offsets = offsets
        return self._offsets


@dataclass(frozen=True)
class TornTail:
    """A torn or corrupt tail `load` found at the end of the last segment, not yet cut: the
    caller decides (after its own checks) whether to `set_aside` it."""

    segment: Path
    offset: int  # where the good lines end
    index: int  # the index its first line would have had


@dataclass(frozen=True)
class BrokenTail:
    """What crash recovery set aside: where, how much, and the first index it would have had."""

    segment: Path
    broken_file: Path
    truncated_bytes: int
    index: int


class SegmentStore:
    """Append-only JSON Lines segments. The writer thread is the only mutator."""

    def __init__(self, directory: Path, segment_bytes: int) -> None:
        self.directory = directory
        self.segment_bytes = segment_bytes
        self.segments: list[Segment] = []
        self._fd: int | None = None
        prepare_directory(directory)
        prepare_directory(directory / ENTRIES)

    @property
    def size(self) -> int:
        return self.segments[-1].first + self.segments[-1].count if self.segments else 0

    def load(
        self,
        check: Callable[[int, bytes], bool],
        consume: Callable[[int, list[bytes]], None],
        *,
        trusted: int = 0,
    ) -> TornTail | None:
        """Read every segment; `check(index, line)` each line, `consume(first, lines)` per segment.

        A sealed segment (not the last) that ends at or below `trusted` entries is only counted:
        its hashes are vouched for by the caller (tiles under a signed checkpoint), so opening a
        large log does not re-read every line; its line offsets are built on the first read.

        A line failing `check` (bad JSON, wrong index) or a final line without newline in the
        LAST segment is a torn tail: it is returned, left in place, and the store counts the
        lines before it only; the caller must `set_aside` it before appending. Anywhere else
        it is tampering: IntegrityError.
        """
        paths = segment_paths(self.directory)
        torn_tail: TornTail | None = None
        expected = 0
        for n, (first, path) in enumerate(paths):
            if first != expected:
                raise IntegrityError(
                    f"audit segment {path.name} starts at {first}, expected {expected} (gap)",
                    reason="AUDIT_GAP",
                )
            data = path.read_bytes()
            last = n == len(paths) - 1
            count = data.count(b"\n")
            if not last and first + count <= trusted:
                if not data.endswith(b"\n"):
                    raise IntegrityError(
                        f"audit segment {path.name} ends in a partial line",
                        reason="AUDIT_CORRUPT",
                    )
                self.segments.append(Segment(first, path, count, len(data), None))
                expected = first + count
                continue
            lines = data.split(b"\n")
            torn = lines.pop()  # b"" after the final newline, or a torn line
            good = len(lines)
            for i, line in enumerate(lines):
                if not check(first + i, line):
                    good = i
                    break
            offsets = line_offsets(data)
            end = offsets[good] if good < len(lines) else len(data) - len(torn)
            segment = Segment(first, path, good, end, offsets[:good])
            if end != len(data):
                if not last:
                    raise IntegrityError(
                        f"audit entry {first + good} in sealed segment {path.name} is corrupt",
                        reason="AUDIT_CORRUPT",
                    )
                torn_tail = TornTail(path, end, first + good)
            consume(first, lines[:good])
            self.segments.append(segment)
            expected = first + good
        return torn_tail

    def set_aside(self, torn: TornTail) -> BrokenTail:
        """Copy the torn tail to `<segment>.broken` (fsynced), then truncate the segment."""
        path, offset = torn.segment, torn.offset
        data = path.read_bytes()
        broken = path.with_name(path.name + ".broken")
        k = 1
        while broken.exists():
            broken = path.with_name(f"{path.name}.{k}.broken")
            k += 1
        write_durably(broken, data[offset:])
        with open(path, "r+b") as f:
            f.truncate(offset)
            os.fsync(f.fileno())
        return BrokenTail(path, broken, len(data) - offset, torn.index)

    def _open_current(self, first: int) -> int:
        if self._fd is None:
            if not self.segments or (
                self.segments[-1].end >= self.segment_bytes and self.segments[-1].count
            ):
                self._new_segment(first)
            self._fd = os.open(
                self.segments[-1].path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE
            )
        return self._fd

    def _new_segment(self, first: int) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        path = self.directory / ENTRIES / segment_name(first)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        os.close(fd)
        fsync_dir(path.parent)  # the new name must survive a crash with its contents
        self.segments.append(Segment(first, path))

    def append(self, lines: Sequence[bytes]) -> None:
        """Write lines (without newlines) and fdatasync; rotate segments by size.

        Raises OSError on any failure; the caller then stops writing for good (fail closed),
        since a partial write leaves a torn tail that only recovery may cut.
        """
        i = 0
        while i < len(lines):
            fd = self._open_current(self.size)
            seg = self.segments[-1]
            room = self.segment_bytes - seg.end
            chunk: list[bytes] = []
            used = 0
            while i < len(lines) and (
                used + len(lines[i]) + 1 <= room or (not chunk and not seg.count)
            ):
                chunk.append(lines[i])
                used += len(lines[i]) + 1
                i += 1
            if not chunk:  # the current segment is full
                self._new_segment(self.size)
                continue
            data = b"\n".join(chunk) + b"\n"
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fdatasync(fd)
            offsets, offset = seg.offsets, seg.end
            for line in chunk:
                offsets.append(offset)
                offset += len(line) + 1
            seg.end = offset
            seg.count += len(chunk)

    def read(self, start: int, end: int) -> list[bytes]:
        """Leaves [start, end), read with one pread per segment touched."""
        out: list[bytes] = []
        for seg in self.segments:
            lo, hi = max(start, seg.first), min(end, seg.first + seg.count)
            if lo >= hi:
                continue
            # Readers run in a worker thread while the writer appends: it extends `offsets`
            # before it moves `end` and `count`, so an offset past `hi` (when present) bounds
            # the read exactly, and `end` is right whenever it is not; the slice keeps a read
            # that raced a newer append to the lines asked for.
            offsets = seg.offsets
            a = offsets[lo - seg.first]
            b = offsets[hi - seg.first] if hi - seg.first < len(offsets) else seg.end
            with open(seg.path, "rb") as f:
                f.seek(a)
                data = f.read(b - a)
            out.extend(data.split(b"\n")[: hi - lo])
        return out

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


# ---------------------------------------------------------------------------------------------
# Checkpoints


def checkpoint_name(size: int) -> str:
    return f"{size:020d}"


def checkpoint_paths(directory: Path) -> list[tuple[int, Path]]:
    found = []
    for path in (directory / CHECKPOINTS).glob("*"):
        if len(path.name) == 20 and path.name.isdigit():
            found.append((int(path.name), path))
    return sorted(found)


def store_checkpoint(directory: Path, size: int, text: str) -> None:
    """Write `checkpoints/<size>` and replace `checkpoint`, both durably."""
    prepare_directory(directory / CHECKPOINTS)
    write_durably(directory / CHECKPOINTS / checkpoint_name(size), text.encode())
    write_durably(directory / LATEST, text.encode())


def supersede_checkpoint(directory: Path, path: Path) -> Path:
    """Move a checkpoint file the entries contradict into `checkpoints/superseded/` (renamed,
    never deleted: it is the evidence of what was signed before a recovery)."""
    target_dir = directory / CHECKPOINTS / SUPERSEDED
    prepare_directory(target_dir)
    target = target_dir / path.name
    k = 1
    while target.exists():
        target = target_dir / f"{path.name}.{k}"
        k += 1
    os.replace(path, target)
    fsync_dir(path.parent)
    fsync_dir(target_dir)
    return target
