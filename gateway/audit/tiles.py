"""Hash tiles: the tree's leaf and interior hashes on disk, in the C2SP tlog-tiles layout.

A tile at level L holds up to 256 consecutive tree hashes of height 8·L (https://c2sp.org/tlog-tiles):
leaf hashes are level-0 tiles, each full tile's root becomes one hash of the tile above, and any
aligned perfect subtree is at most 127 hashings of one tile away, so a proof costs O(log n)
small reads and never rehashes the log. Full tiles `tile/<L>/<N>` are immutable; a partial tile
`tile/<L>/<N>.p/<W>` holds the first W hashes. Tiles are derived data: written at checkpoint
time without fsync and rebuilt from the entries when the log opens.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gateway.audit.merkle import HASH_SIZE, CompactRange, perfect_root
from gateway.domain.errors import IntegrityError

TILES = "tile"
TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT


def tile_path(level: int, index: int, width: int = TILE_WIDTH) -> str:
    """tlog-tiles path: `tile/<L>/<N>` with N in 3-digit groups (x001/x234/067), `.p/<W>`."""
    digits = f"{index:03d}"
    digits = "0" * (-len(digits) % 3) + digits
    groups = [digits[i : i + 3] for i in range(0, len(digits), 3)]
    name = "/".join([*(f"x{g}" for g in groups[:-1]), groups[-1]])
    path = f"{TILES}/{level}/{name}"
    return path if width == TILE_WIDTH else f"{path}.p/{width}"


class TileTree:
    """The tree kept as tlog-tiles: in memory the unfinished tile of each level, on disk the rest.

    `add` appends leaf hashes (O(1) amortized: every 256th hash closes a tile and pushes its
    root one level up). `flush` writes closed tiles and the current partial tiles; `read_node`
    serves any aligned perfect subtree below `size` for proof building.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.size = 0
        self.partial: list[list[bytes]] = [[]]  # per tile level, hashes of the unfinished tile
        self._counts: list[int] = [0]  # hashes ever added per tile level
        self._closed: dict[tuple[int, int], bytes] = {}  # full tiles not yet on disk
        self._cache: dict[tuple[int, int], bytes] = {}  # full tiles read from disk
        self._written_partial: dict[tuple[int, int], int] = {}

    @classmethod
    def at_size(cls, directory: Path, size: int) -> TileTree:
        """The tree of `size` leaves as persisted: its unfinished tile per level, read from disk.

        O(log n) small reads instead of rehashing the log. The caller must check `root()`
        against a signed checkpoint before trusting it (tiles are written without fsync).
        Raises IntegrityError (TILE_MISSING) when a tile it needs is absent or short.
        """
        tree = cls(directory)
        tree.size = size
        partial: list[list[bytes]] = []
        counts: list[int] = []
        level = 0
        while level == 0 or size >> (TILE_HEIGHT * level):
            count = size >> (TILE_HEIGHT * level)
            width = count & (TILE_WIDTH - 1)
            hashes: list[bytes] = []
            if width:
                data = tree._tile(level, count >> TILE_HEIGHT, width)
                hashes = [data[i : i + HASH_SIZE] for i in range(0, width * HASH_SIZE, HASH_SIZE)]
                if len(hashes[-1]) != HASH_SIZE:
                    raise IntegrityError(
                        f"hash tile {tile_path(level, count >> TILE_HEIGHT)} is short",
                        reason="TILE_MISSING",
                    )
            partial.append(hashes)
            counts.append(count)
            level += 1
        tree.partial, tree._counts = partial, counts
        tree._cache.clear()
        return tree

    def add(self, hashes: Sequence[bytes]) -> None:
        """Append leaf hashes: whole runs extend the level-0 tile; a full tile goes up a level."""
        i, n = 0, len(hashes)
        while i < n:
            tile = self.partial[0]
            take = min(TILE_WIDTH - len(tile), n - i)
            tile.extend(hashes[i : i + take])
            self._counts[0] += take
            i += take
            if len(tile) == TILE_WIDTH:
                self._closed[(0, (self._counts[0] - 1) >> TILE_HEIGHT)] = b"".join(tile)
                self.partial[0] = []
                self._push(1, perfect_root(tile))
        self.size += n

    def _push(self, level: int, h: bytes) -> None:
        counts = self._counts
        while True:
            if level == len(self.partial):
                self.partial.append([])
                counts.append(0)
            tile = self.partial[level]
            tile.append(h)
            counts[level] += 1
            if len(tile) < TILE_WIDTH:
                return
            self._closed[(level, (counts[level] - 1) >> TILE_HEIGHT)] = b"".join(tile)
            h = perfect_root(tile)
            self.partial[level] = []
            level += 1

    def compact_range(self) -> CompactRange:
        """The tree's right edge, from the unfinished tiles (highest level, leftmost, first)."""
        cr = CompactRange()
        for level in range(len(self.partial) - 1, -1, -1):
            tile = self.partial[level]
            i = 0
            for bit in range(TILE_HEIGHT - 1, -1, -1):
                if len(tile) & (1 << bit):
                    chunk = tile[i : i + (1 << bit)]
                    cr.append_subtree(TILE_HEIGHT * level + bit, perfect_root(chunk))
                    i += 1 << bit
        return cr

    def root(self) -> bytes:
        return self.compact_range().root()

    # -- disk ------------------------------------------------------------------------------

    def pending_writes(self) -> list[tuple[str, bytes, bool]]:
        """(path, data, immutable) for every tile to write so the disk matches `size`."""
        writes = [(tile_path(lv, n), data, True) for (lv, n), data in self._closed.items()]
        for level, tile in enumerate(self.partial):
            if tile:
                n = self.size >> (TILE_HEIGHT * (level + 1))
                if self._written_partial.get((level, n)) != len(tile):
                    writes.append((tile_path(level, n, len(tile)), b"".join(tile), False))
        return writes

    def mark_written(self, writes: Sequence[tuple[str, bytes, bool]]) -> None:
        for path, _data, immutable in writes:
            if immutable:
                parts = path.split("/")
                level = int(parts[1])
                self._closed.pop((level, _parse_index(parts[2:])), None)
            else:
                head, width = path.split(".p/")
                parts = head.split("/")
                self._written_partial[(int(parts[1]), _parse_index(parts[2:]))] = int(width)

    def write_tiles(self, writes: Sequence[tuple[str, bytes, bool]]) -> None:
        """Write tiles (no fsync: derived data); an identical full tile on disk is kept."""
        for rel, data, immutable in writes:
            path = self.directory / rel
            if immutable and path.exists() and path.read_bytes() == data:
                continue
            if not path.parent.is_dir():  # each level 0700 (mkdir's parents get 0777 & ~umask)
                level = self.directory
                for part in Path(rel).parent.parts:
                    level = level / part
                    level.mkdir(mode=0o700, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
            with os.fdopen(os.open(tmp, flags, 0o600), "wb") as f:  # private, as the log
                f.write(data)
            os.replace(tmp, path)
            if immutable:  # the partial versions of this tile are now superseded
                partial_dir = path.with_name(path.name + ".p")
                if partial_dir.is_dir():
                    for old in partial_dir.iterdir():
                        old.unlink(missing_ok=True)

    def flush(self) -> None:
        writes = self.pending_writes()
        self.write_tiles(writes)
        self.mark_written(writes)

    def _tile(self, level: int, index: int, need: int) -> bytes:
        """At least the first `need` hashes of tile (level, index), from memory or disk."""
        key = (level, index)
        if key in self._closed:
            return self._closed[key]
        if level < len(self.partial) and index == self.size >> (TILE_HEIGHT * (level + 1)):
            current = self.partial[level]
            if len(current) >= need:
                return b"".join(current[:need])
        if key in self._cache:
            return self._cache[key]
        path = self.directory / tile_path(level, index)
        try:
            data = path.read_bytes()
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[key] = data
            return data
        except FileNotFoundError:
            pass
        partial_dir = path.with_name(path.name + ".p")
        widths = sorted(
            (int(p.name) for p in partial_dir.glob("*") if p.name.isdigit()), reverse=True
        )
        for width in widths:
            if width >= need:
                return (partial_dir / str(width)).read_bytes()
        raise IntegrityError(
            f"hash tile {tile_path(level, index)} is missing", reason="TILE_MISSING"
        )

    def read_node(self, level: int, index: int) -> bytes:
        """Hash of the perfect subtree (level, index), which must lie within `size`."""
        if (index + 1) << level > self.size:
            raise IntegrityError(f"node ({level}, {index}) is beyond tree size {self.size}")
        tile_level, sub = divmod(level, TILE_HEIGHT)
        first = index << sub  # position among the hashes of height 8·tile_level
        n, offset = divmod(first, TILE_WIDTH)
        count = 1 << sub
        data = self._tile(tile_level, n, offset + count)
        hashes = [
            data[i : i + HASH_SIZE]
            for i in range(offset * HASH_SIZE, (offset + count) * HASH_SIZE, HASH_SIZE)
        ]
        if len(hashes) != count or any(len(h) != HASH_SIZE for h in hashes):
            raise IntegrityError(f"hash tile {tile_path(tile_level, n)} is short")
        return hashes[0] if count == 1 else perfect_root(hashes)


def _parse_index(parts: Sequence[str]) -> int:
    return int("".join(p.removeprefix("x") for p in parts))


def stored_leaf_hashes(directory: Path, start: int, end: int) -> list[bytes | None]:
    """Leaf hashes [start, end) as stored in level-0 tiles (None where no tile holds one).

    Auditors compare them with recomputed hashes to name the first entry that changed.
    """
    out: list[bytes | None] = []
    n = start // TILE_WIDTH
    while len(out) < end - start:
        path = directory / tile_path(0, n)
        data = b""
        if path.exists():
            data = path.read_bytes()
        else:
            partial_dir = path.with_name(path.name + ".p")
            widths = [int(p.name) for p in partial_dir.glob("*") if p.name.isdigit()]
            if widths:
                data = (partial_dir / str(max(widths))).read_bytes()
        lo = max(start, n * TILE_WIDTH)
        for i in range(lo, min(end, (n + 1) * TILE_WIDTH)):
            k = (i - n * TILE_WIDTH) * HASH_SIZE
            h = data[k : k + HASH_SIZE]
            out.append(h if len(h) == HASH_SIZE else None)
        n += 1
    return out


# ---------------------------------------------------------------------------------------------
# The tlog-tiles read API: resource paths, widths and entry bundles (what a server and a client
# of https://c2sp.org/tlog-tiles agree on)

ENTRIES = "entries"
#: an entry bundle's length prefix is a big-endian uint16
MAX_BUNDLE_ENTRY = 0xFFFF
_LEVEL = r"(0|[1-9][0-9]?)"
_INDEX = r"((?:x[0-9]{3}/)*[0-9]{3})"
_WIDTH = r"(?:\.p/([1-9][0-9]{0,2}))?"
_TILE_PATH = re.compile(rf"{TILES}/(?:{_LEVEL}|({ENTRIES}))/{_INDEX}{_WIDTH}")


@dataclass(frozen=True)
class TileRef:
    """A tlog-tiles resource: hash tile `level` (None for an entry bundle), index, width."""

    level: int | None
    index: int
    width: int = TILE_WIDTH

    @property
    def path(self) -> str:
        if self.level is None:
            return entries_path(self.index, self.width)
        return tile_path(self.level, self.index, self.width)

    @property
    def partial(self) -> bool:
        return self.width < TILE_WIDTH


def parse_tile_path(path: str) -> TileRef | None:
    """`tile/<L>/<N>[.p/<W>]` or `tile/entries/<N>[.p/<W>]` as tlog-tiles spells them, or None.

    Strict: L in 0..63 without leading zeros, N in 3-digit groups all but the last prefixed
    with `x` (no empty or redundant leading group), W in 1..255 without leading zeros.
    Anything else (traversal, other spellings of the same tile) is None.
    """
    m = _TILE_PATH.fullmatch(path)
    if m is None:
        return None
    level_text, entries, index_text, width_text = m.groups()
    groups = index_text.split("/")
    if len(groups) > 1 and groups[0] == "x000":
        return None  # the same index has one spelling: no leading all-zero group
    level = None if entries else int(level_text)
    if level is not None and level > 63:
        return None
    width = int(width_text) if width_text else TILE_WIDTH
    if width_text and width >= TILE_WIDTH:
        return None
    ref = TileRef(level, _parse_index(groups), width)
    return ref if ref.path == path else None


def entries_path(index: int, width: int = TILE_WIDTH) -> str:
    """`tile/entries/<N>[.p/<W>]`: the entry bundle of level-0 tile N."""
    return tile_path(0, index, width).replace(f"{TILES}/0/", f"{TILES}/{ENTRIES}/", 1)


def tile_width(level: int, index: int, size: int) -> int:
    """The width of tile (level, index) in a tree of `size` leaves: 256 for a full tile, the
    partial width, or 0 when the tree has no such tile."""
    count = size >> (TILE_HEIGHT * level)  # hashes of height 8·level in the tree
    return max(0, min(TILE_WIDTH, count - index * TILE_WIDTH))


def served_in(ref: TileRef, size: int) -> bool:
    """Whether a tree of `size` leaves (a published checkpoint's) contains resource `ref`: a
    full tile once the tree covers it, a partial one of width W while its first W hashes lie
    within the tree. (A partial tile of a smaller published tree stays valid: its hashes
    never change.)"""
    width = tile_width(ref.level or 0, ref.index, size)
    return width == TILE_WIDTH if not ref.partial else ref.width <= width


def bundle(entries: Sequence[bytes]) -> bytes:
    """An entry bundle: each entry as a big-endian uint16 length and its bytes."""
    out = bytearray()
    for entry in entries:
        if len(entry) > MAX_BUNDLE_ENTRY:
            raise IntegrityError(
                f"an entry of {len(entry)} bytes does not fit an entry bundle's 16-bit length",
                reason="ENTRY_TOO_LARGE",
            )
        out += len(entry).to_bytes(2, "big") + entry
    return bytes(out)


def parse_bundle(data: bytes) -> list[bytes]:
    """The entries of an entry bundle; IntegrityError if the lengths do not add up."""
    entries, i = [], 0
    while i < len(data):
        if i + 2 > len(data):
            raise IntegrityError("entry bundle ends inside a length", reason="BUNDLE_MALFORMED")
        n = int.from_bytes(data[i : i + 2], "big")
        if i + 2 + n > len(data):
            raise IntegrityError("entry bundle ends inside an entry", reason="BUNDLE_MALFORMED")
        entries.append(data[i + 2 : i + 2 + n])
        i += 2 + n
    return entries
