"""`proofless audit verify URL`: check a log read over HTTP as C2SP tlog-tiles.

What is checked, from the log's vkey alone:

1. `<url>/checkpoint` carries the log's signature (and, with `witnesses`, each witness's
   tlog-cosignature/v1 cosignature);
2. every hash tile of that tree: the level-0 tiles' leaf hashes fold into the checkpoint's
   root (RFC 9162 §2.1.1), and every full tile's root is the hash the tile above holds for
   it — so any proof built from these tiles is a proof about the signed tree;
3. each checkpoint seen before (`known`, e.g. saved by `--out` last time): its signature, and
   a consistency proof from it to the new one, built from the tiles as tlog-tiles clients do
   (RFC 9162 §2.1.4) — a log rolled back behind it, or forked, is INVALID;
4. with a client certificate the log gives the auditor role, the entry bundles: each entry
   hashes to its leaf in the level-0 tile and carries its own index.

Synchronous (urllib): a command-line tool that reads one resource at a time.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gateway.audit import merkle
from gateway.audit.cosignature import CosignatureVerifier
from gateway.audit.note import NoteError, NoteVerifier, SignatureError, SignedCheckpoint
from gateway.audit.tiles import (
    TILE_HEIGHT,
    TILE_WIDTH,
    entries_path,
    parse_bundle,
    tile_path,
    tile_width,
)
from gateway.domain.errors import ConfigError, IntegrityError

#: a checkpoint is a few hundred bytes; a tile 8 KiB; a bundle 256 entries of a few KiB
MAX_RESOURCE_BYTES = 64 << 20


class FetchError(IntegrityError):
    """A resource the log must serve could not be read."""

    reason = "FETCH_FAILED"


def client_context(
    ca: Path | None = None, cert: Path | None = None, key: Path | None = None
) -> ssl.SSLContext:
    """TLS for reading a log: the server checked against `ca` (default: the system's roots),
    and the client certificate `cert`/`key` when given (entry bundles need it)."""
    ctx = ssl.create_default_context(cafile=str(ca) if ca else None)
    if cert is not None:
        try:
            ctx.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load the client certificate {cert}: {exc}") from exc
    return ctx


class RemoteLog:
    """A tlog-tiles log at a URL prefix."""

    def __init__(self, url: str, context: ssl.SSLContext | None = None, timeout: float = 30.0):
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"{url!r}: a log URL starts with http:// or https://")
        self.url = url.rstrip("/") + "/"
        self._context = context
        self._timeout = timeout

    def get(self, path: str) -> bytes:
        # the URL's scheme is http or https, checked in __init__
        request = urllib.request.Request(  # noqa: S310
            self.url + path, headers={"Accept-Encoding": "identity"}
        )
        try:
            with urllib.request.urlopen(  # noqa: S310
                request, timeout=self._timeout, context=self._context
            ) as response:
                data: bytes = response.read(MAX_RESOURCE_BYTES + 1)
        except urllib.error.HTTPError as exc:
            detail = exc.read(200).decode("utf-8", "replace").strip()
            raise FetchError(f"{path}: HTTP {exc.code} {detail}".strip()) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise FetchError(f"{path}: {reason}") from None
        if len(data) > MAX_RESOURCE_BYTES:
            raise FetchError(f"{path}: larger than {MAX_RESOURCE_BYTES} bytes")
        return data

    def checkpoint(self) -> bytes:
        return self.get("checkpoint")

    def tile(self, level: int, index: int, size: int) -> list[bytes]:
        """The hashes of tile (level, index) of the tree of `size` (full or partial)."""
        width = tile_width(level, index, size)
        if width == 0:
            raise ValueError(f"a tree of {size} has no tile ({level}, {index})")
        data = self.get(tile_path(level, index, width))
        if len(data) != width * merkle.HASH_SIZE:
            raise IntegrityError(
                f"{tile_path(level, index, width)}: {len(data)} bytes, expected "
                f"{width * merkle.HASH_SIZE}",
                reason="TILE_MALFORMED",
            )
        return [data[i : i + merkle.HASH_SIZE] for i in range(0, len(data), merkle.HASH_SIZE)]

    def bundle(self, index: int, size: int) -> list[bytes]:
        width = tile_width(0, index, size)
        entries = parse_bundle(self.get(entries_path(index, width)))
        if len(entries) != width:
            raise IntegrityError(
                f"{entries_path(index, width)}: {len(entries)} entries, expected {width}",
                reason="BUNDLE_MALFORMED",
            )
        return entries

    def node_reader(self, size: int) -> merkle.NodeReader:
        """Reads any perfect subtree of the tree of `size` from its tiles (cached)."""
        cache: dict[tuple[int, int], list[bytes]] = {}

        def read(level: int, index: int) -> bytes:
            tile_level, sub = divmod(level, TILE_HEIGHT)
            first = index << sub
            n, offset = divmod(first, TILE_WIDTH)
            if (tile_level, n) not in cache:
                cache[(tile_level, n)] = self.tile(tile_level, n, size)
            hashes = cache[(tile_level, n)][offset : offset + (1 << sub)]
            if len(hashes) != 1 << sub:
                raise IntegrityError(f"node ({level}, {index}) is beyond the tree of {size}")
            return hashes[0] if sub == 0 else merkle.perfect_root(hashes)

        return read


@dataclass
class RemoteReport:
    """One line per check, `valid` or `INVALID (<reason>)`, then a summary."""

    url: str
    lines: list[str] = field(default_factory=list)
    failures: int = 0
    checkpoint: SignedCheckpoint | None = None

    def valid(self, what: str, detail: str = "") -> None:
        self.lines.append(f"{what}: valid" + (f" — {detail}" if detail else ""))

    def invalid(self, what: str, reason: str, detail: str = "") -> None:
        self.failures += 1
        self.lines.append(f"{what}: INVALID ({reason})" + (f" — {detail}" if detail else ""))

    @property
    def ok(self) -> bool:
        return self.failures == 0 and self.checkpoint is not None

    def summary(self) -> str:
        size = self.checkpoint.size if self.checkpoint is not None else 0
        return f"Results: {self.url} tree of {size}: " + ("VALID" if self.ok else "INVALID")


def check_tiles(remote: RemoteLog, cp: SignedCheckpoint, report: RemoteReport) -> bool:
    """Every hash tile of the tree, level by level (see the module docstring, 2)."""
    size, cr = cp.size, merkle.CompactRange()
    expected: list[bytes] | None = None  # this level's hashes, from the full tiles below
    level = 0
    while size >> (TILE_HEIGHT * level):
        count = size >> (TILE_HEIGHT * level)
        above: list[bytes] = []
        for n in range((count + TILE_WIDTH - 1) // TILE_WIDTH):
            hashes = remote.tile(level, n, size)
            if expected is not None:
                mine = expected[n * TILE_WIDTH : n * TILE_WIDTH + len(hashes)]
                if hashes != mine:
                    path = tile_path(level, n, len(hashes))
                    report.invalid(f"tile {path}", "hash mismatch", "differs from the tiles below")
                    return False
            if level == 0:
                cr.extend(hashes)
            if len(hashes) == TILE_WIDTH:
                above.append(merkle.perfect_root(hashes))
        expected, level = above, level + 1
    if cr.root() != cp.root:
        report.invalid("tiles", "hash mismatch", "the leaf hashes give another root")
        return False
    report.valid("tiles", f"{size} leaf hashes give the checkpoint's root, {level} levels")
    return True


def check_known(
    remote: RemoteLog,
    cp: SignedCheckpoint,
    known: SignedCheckpoint,
    name: str,
    report: RemoteReport,
) -> None:
    """A checkpoint seen before must be a prefix of the new one (see the module, 3)."""
    what = f"checkpoint {name} of {known.size}"
    if known.size > cp.size:
        report.invalid(what, "rolled back", f"the log's checkpoint now covers only {cp.size}")
        return
    if known.size in (cp.size, 0):
        if known.size and known.root != cp.root:
            report.invalid(what, "inconsistent checkpoint", "same size, another root")
        else:
            report.valid(what, f"the tree of {cp.size} extends it")
        return
    try:
        proof = merkle.consistency_proof(known.size, cp.size, remote.node_reader(cp.size))
        merkle.verify_consistency(known.size, cp.size, proof, known.root, cp.root)
    except merkle.ConsistencyProofError:
        report.invalid(what, "inconsistent checkpoint", "the consistency proof fails: a fork")
        return
    report.valid(what, f"consistent with the tree of {cp.size} ({len(proof)}-hash proof)")


def check_entries(remote: RemoteLog, cp: SignedCheckpoint, report: RemoteReport) -> None:
    """Each entry of each bundle against its leaf hash and index (see the module, 4)."""
    size = cp.size
    for n in range((size + TILE_WIDTH - 1) // TILE_WIDTH):
        entries = remote.bundle(n, size)
        leaves = remote.tile(0, n, size)
        for i, (entry, leaf) in enumerate(zip(entries, leaves, strict=True)):
            index = n * TILE_WIDTH + i
            if merkle.leaf_hash(entry) != leaf:
                report.invalid("entries", "hash mismatch", f"at index {index}")
                return
            try:
                ok = json.loads(entry).get("index") == index
            except (ValueError, AttributeError):
                ok = False
            if not ok:
                report.invalid("entries", "gap", f"entry {index} does not carry its index")
                return
    report.valid("entries", f"{size} entries hash to the tree's leaves")


def verify_remote(
    remote: RemoteLog,
    key: NoteVerifier,
    *,
    witnesses: Sequence[CosignatureVerifier] = (),
    known: Sequence[tuple[str, bytes]] = (),
    entries: bool = False,
    fetch_checkpoint: Callable[[], bytes] | None = None,
) -> RemoteReport:
    """Check the log at `remote` (see the module docstring); `known` are (name, note) of
    checkpoints seen before; `entries` reads the entry bundles too."""
    report = RemoteReport(remote.url)
    try:
        data = (fetch_checkpoint or remote.checkpoint)()
        cp = SignedCheckpoint.open(data, key)
    except (NoteError, SignatureError, FetchError) as exc:
        report.invalid("checkpoint", exc.reason, exc.message)
        return report
    report.checkpoint = cp
    report.valid("checkpoint", f"size {cp.size}, signed by {key.name}")
    for witness in witnesses:
        try:
            cosig = witness.require(cp.note)
        except SignatureError as exc:
            report.invalid(f"witness {witness.name}", "missing cosignature", exc.message)
        else:
            report.valid(f"witness {witness.name}", f"cosigned at time {cosig.timestamp}")
    try:
        if not check_tiles(remote, cp, report):
            return report
        for name, note in known:
            try:
                seen = SignedCheckpoint.open(note, key)
            except (NoteError, SignatureError) as exc:
                report.invalid(f"checkpoint {name}", exc.reason, exc.message)
                continue
            check_known(remote, cp, seen, name, report)
        if entries:
            check_entries(remote, cp, report)
        else:
            report.lines.append("entries: not read (they need an auditor's client certificate)")
    except IntegrityError as exc:
        report.invalid("log", exc.reason, exc.message)
    return report
