"""Segments, tlog-tiles paths and the tile tree against the pure Merkle functions."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from gateway.audit import merkle
from gateway.audit.storage import (
    LATEST,
    SegmentStore,
    prepare_directory,
    segment_paths,
    store_checkpoint,
    write_durably,
)
from gateway.audit.tiles import TileTree, tile_path
from gateway.domain.errors import IntegrityError


def test_tile_paths_follow_tlog_tiles() -> None:
    assert tile_path(0, 0) == "tile/0/000"
    assert tile_path(1, 1234067) == "tile/1/x001/x234/067"
    assert tile_path(0, 1000, 17) == "tile/0/x001/000.p/17"
    assert tile_path(2, 999) == "tile/2/999"


def _leaves(n: int) -> list[bytes]:
    return [merkle.leaf_hash(str(i).encode()) for i in range(n)]


@pytest.mark.parametrize("size", [1, 2, 255, 256, 257, 511, 65536 + 300])
def test_tile_tree_roots_and_proofs(tmp_path: Path, size: int) -> None:
    hashes = _leaves(size)
    tree = TileTree(tmp_path)
    tree.add(hashes[: size // 3])
    tree.flush()
    tree.add(hashes[size // 3 :])
    assert tree.root() == merkle.root_of(hashes)
    assert tree.compact_range().hashes == _cr(hashes).hashes
    tree.flush()
    # a fresh reader with only the disk
    disk = TileTree(tmp_path)
    disk.size = size
    for reader in (tree, disk):
        for index in {0, size // 2, size - 1}:
            proof = merkle.inclusion_proof(index, size, reader.read_node)
            merkle.verify_inclusion(index, size, hashes[index], proof, merkle.root_of(hashes))
        first = max(1, size // 3)
        proof = merkle.consistency_proof(first, size, reader.read_node)
        merkle.verify_consistency(
            first, size, proof, merkle.root_of(hashes[:first]), merkle.root_of(hashes)
        )


def _cr(hashes: list[bytes]) -> merkle.CompactRange:
    cr = merkle.CompactRange()
    for h in hashes:
        cr.append(h)
    return cr


def test_missing_tile_is_an_integrity_error(tmp_path: Path) -> None:
    tree = TileTree(tmp_path)
    tree.size = 600
    with pytest.raises(IntegrityError):
        tree.read_node(0, 3)
    with pytest.raises(IntegrityError):
        tree.read_node(0, 600)


def test_segments_rotate_and_read(tmp_path: Path) -> None:
    store = SegmentStore(tmp_path, segment_bytes=100)
    lines = [f'{{"index":{i},"x":"{"y" * 20}"}}'.encode() for i in range(12)]
    store.append(lines[:5])
    store.append(lines[5:])
    assert store.size == 12
    assert len(store.segments) > 3
    assert store.read(0, 12) == lines
    assert store.read(3, 9) == lines[3:9]
    store.close()
    assert next(p.name for _, p in segment_paths(tmp_path)) == "00000000000000000000.jsonl"
    again = SegmentStore(tmp_path, segment_bytes=100)
    seen: list[bytes] = []
    assert again.load(lambda i, line: True, lambda first, ls: seen.extend(ls)) is None
    assert seen == lines
    assert again.read(0, 12) == lines


def test_load_leaves_a_torn_tail_in_place_until_set_aside(tmp_path: Path) -> None:
    store = SegmentStore(tmp_path, segment_bytes=1 << 20)
    store.append([b'{"index":0}', b'{"index":1}'])
    store.close()
    path = segment_paths(tmp_path)[0][1]
    path.write_bytes(path.read_bytes() + b'{"ind')
    again = SegmentStore(tmp_path, segment_bytes=1 << 20)
    torn = again.load(lambda i, line: line.endswith(b"}"), lambda first, ls: None)
    assert torn is not None
    assert (torn.index, torn.offset) == (2, 24)
    assert path.read_bytes().endswith(b'{"ind')  # a refused start changes nothing
    broken = again.set_aside(torn)
    assert broken.broken_file.read_bytes() == b'{"ind'
    assert path.read_bytes() == b'{"index":0}\n{"index":1}\n'


def test_files_are_private_and_links_are_refused(tmp_path: Path) -> None:
    prepare_directory(tmp_path / "log")
    store = SegmentStore(tmp_path / "log", segment_bytes=1 << 20)
    store.append([b'{"index":0}'])
    store.close()
    store_checkpoint(tmp_path / "log", 1, "text\n")
    for path in [tmp_path / "log", *(tmp_path / "log").rglob("*")]:
        assert stat.S_IMODE(path.stat().st_mode) == (0o700 if path.is_dir() else 0o600), path
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("kept\n")
    (tmp_path / "log" / LATEST).unlink()
    (tmp_path / "log" / LATEST).symlink_to(elsewhere)
    with pytest.raises(IntegrityError) as info:
        write_durably(tmp_path / "log" / LATEST, b"new\n")
    assert info.value.reason == "SYMLINK_REFUSED"
    assert elsewhere.read_text() == "kept\n"
