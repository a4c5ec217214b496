"""Reads that race the writer (GetEntries, GetInclusionProof under load).

The writer thread extends a segment's line offsets, then its `end`, then its `count`; a
reader thread can see any prefix of that. Each state is built here directly, since the
window is far too narrow to hit reliably with real threads.
"""

from __future__ import annotations

from pathlib import Path

from gateway.audit.storage import SegmentStore


def _store(tmp_path: Path, lines: list[bytes]) -> SegmentStore:
    store = SegmentStore(tmp_path, segment_bytes=1 << 20)
    store.append(lines)
    return store


def test_a_read_during_an_append_returns_exactly_the_lines_asked_for(tmp_path: Path) -> None:
    store = _store(tmp_path, [b'{"index":0}', b'{"index":1}'])
    seg = store.segments[-1]
    old_count = seg.count
    # the writer is half way: bytes on disk, offsets extended and `end` moved, `count` not yet
    extra = b'{"index":2}\n{"index":3}\n'
    with open(seg.path, "ab") as f:
        f.write(extra)
    seg.offsets.append(seg.end)
    seg.offsets.append(seg.end + len(b'{"index":2}\n'))
    seg.end += len(extra)
    assert store.read(old_count - 1, old_count) == [b'{"index":1}']
    assert store.read(0, old_count) == [b'{"index":0}', b'{"index":1}']


def test_a_read_before_end_moves_is_bounded_by_the_next_offset(tmp_path: Path) -> None:
    store = _store(tmp_path, [b'{"index":0}', b'{"index":1}'])
    seg = store.segments[-1]
    with open(seg.path, "ab") as f:
        f.write(b'{"index":2}\n')
    seg.offsets.append(seg.end)  # offsets extended, `end` and `count` not yet
    assert store.read(1, 2) == [b'{"index":1}']
