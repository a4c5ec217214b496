"""AuditLog: durability, group commit, failing closed, crash recovery, checkpoints, proofs."""

from __future__ import annotations

import asyncio
import errno
import itertools
import json
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit import merkle
from gateway.audit.entry import AuditEntryError, subject_of
from gateway.audit.note import NoteVerifier, SignatureError, SignedCheckpoint
from gateway.audit.storage import checkpoint_paths, segment_paths
from gateway.domain.errors import IntegrityError, InvalidArgument, Unavailable
from tests.support.auditlog import ID_A, PEPPER, access, fill, open_log


async def test_append_reopen_and_prove(tmp_path: Path, note_key: Ed25519PrivateKey) -> None:
    log = await open_log(tmp_path, note_key)
    receipts = [await log.append(access(i)) for i in range(10)]
    assert [r.index for r in receipts] == list(range(10))
    lines = await log.entries(0, 10)
    assert json.loads(lines[3])["index"] == 3
    assert receipts[3].leaf_hash == merkle.leaf_hash(lines[3])
    await log.close()

    log = await open_log(tmp_path, note_key)
    cp = log.latest_checkpoint()
    assert cp.size == 10
    SignedCheckpoint.open(cp.text, NoteVerifier.from_vkey(log.vkey))
    assert (await log.append(access(10))).index == 10
    proof = await log.inclusion_proof(3, 10)
    merkle.verify_inclusion(3, 10, receipts[3].leaf_hash, proof, cp.root)
    await log.close()
    cp2 = (await open_log(tmp_path, note_key)).latest_checkpoint()
    assert cp2.size == 11


async def test_canonical_lines(tmp_path: Path, note_key: Ed25519PrivateKey) -> None:
    log = await open_log(tmp_path, note_key)
    await log.append({"kind": "access", "purpose": "户籍", "b": [1, None, True]})
    await log.close()
    line = segment_paths(tmp_path)[0][1].read_bytes().split(b"\n")[0]
    assert line == '{"b":[1,null,true],"index":0,"kind":"access","purpose":"户籍"}'.encode()


async def test_floats_and_odd_values_refused(tmp_path: Path, note_key: Ed25519PrivateKey) -> None:
    log = await open_log(tmp_path, note_key)
    with pytest.raises(AuditEntryError):
        await log.append({"kind": "access", "latency": 1.5})
    with pytest.raises(AuditEntryError):
        await log.append({"kind": "access", "x": [object()]})
    with pytest.raises(AuditEntryError):
        await log.append({"kind": "access", "x": "\ud800"})
    assert log.tree_size == 0
    await log.close()


async def test_group_commit_batches_fsyncs(
    tmp_path: Path, note_key: Ed25519PrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = await open_log(tmp_path, note_key)
    calls = 0
    real = os.fdatasync

    def counting(fd: int) -> None:
        nonlocal calls
        calls += 1
        real(fd)

    monkeypatch.setattr(os, "fdatasync", counting)
    receipts = await asyncio.gather(*(log.append(access(i)) for i in range(500)))
    assert sorted(r.index for r in receipts) == list(range(500))
    assert [r.index for r in receipts] == list(range(500))  # arrival order
    assert 1 <= calls <= 10
    await log.close()


@pytest.mark.parametrize("target", ["write", "fdatasync"])
async def test_fails_closed_on_write_error(
    tmp_path: Path, note_key: Ed25519PrivateKey, monkeypatch: pytest.MonkeyPatch, target: str
) -> None:
    log = await open_log(tmp_path, note_key)
    await log.append(access(0))

    def full(*args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, target, full)
    results = await asyncio.gather(
        *(log.append(access(i)) for i in range(1, 4)), return_exceptions=True
    )
    assert all(isinstance(r, Unavailable) for r in results)
    assert all(r.reason == "AUDIT_UNAVAILABLE" for r in results if isinstance(r, Unavailable))
    monkeypatch.undo()
    with pytest.raises(Unavailable) as info:
        await log.append(access(9))  # still closed after the disk recovers
    assert info.value.reason == "AUDIT_UNAVAILABLE"
    assert log.tree_size == 1
    await log.close()


@pytest.mark.parametrize(
    "damage",
    [
        b'{"index":5,"kind":"acc',  # torn: no final newline
        b"garbage\n",  # not JSON
        b'{"index":99,"kind":"access"}\n',  # wrong index
        b'{"index":5,"kind":"access"}\n\x00\x00\x00',  # good line then torn garbage
    ],
)
async def test_torn_tail_recovery(
    tmp_path: Path, note_key: Ed25519PrivateKey, damage: bytes
) -> None:
    await fill(tmp_path, note_key, 5)
    segment = segment_paths(tmp_path)[-1][1]
    segment.write_bytes(segment.read_bytes() + damage)
    log = await open_log(tmp_path, note_key)
    kept = 6 if damage.startswith(b'{"index":5,"kind":"access"}\n') else 5
    assert log.tree_size == kept + 1
    recovery = json.loads((await log.entries(kept, kept + 1))[0])
    broken = tmp_path / "entries" / recovery["broken_file"]
    assert recovery["kind"] == "recovery"
    assert recovery["event"] == "torn_tail"
    assert recovery["index"] == kept
    assert broken.exists()
    assert recovery["truncated_bytes"] == broken.stat().st_size > 0
    assert broken.read_bytes() == damage[len(damage) - recovery["truncated_bytes"] :]
    await log.close()
    again = await open_log(tmp_path, note_key)  # clean now: no second recovery
    assert again.tree_size == kept + 1
    await again.close()


async def test_refuses_log_shorter_than_checkpoint(
    tmp_path: Path, note_key: Ed25519PrivateKey
) -> None:
    await fill(tmp_path, note_key, 8)
    segment = segment_paths(tmp_path)[-1][1]
    lines = segment.read_bytes().split(b"\n")
    segment.write_bytes(b"\n".join(lines[:5]) + b"\n")
    with pytest.raises(IntegrityError) as info:
        await open_log(tmp_path, note_key)
    assert info.value.reason == "AUDIT_ROLLED_BACK"


async def test_refuses_log_with_other_root(tmp_path: Path, note_key: Ed25519PrivateKey) -> None:
    await fill(tmp_path, note_key, 8)
    segment = segment_paths(tmp_path)[-1][1]
    segment.write_bytes(segment.read_bytes().replace(b"case-3", b"case-4"))
    with pytest.raises(IntegrityError) as info:
        await open_log(tmp_path, note_key)
    assert info.value.reason == "AUDIT_ROOT_MISMATCH"


async def test_refuses_other_key(tmp_path: Path, note_key: Ed25519PrivateKey) -> None:
    await fill(tmp_path, note_key, 2)
    with pytest.raises(SignatureError):
        await open_log(tmp_path, Ed25519PrivateKey.generate())


async def test_checkpoints_by_count(tmp_path: Path, note_key: Ed25519PrivateKey) -> None:
    log = await open_log(
        tmp_path, note_key, checkpoint_every_entries=10, checkpoint_every_ms=60_000
    )
    for i in range(25):
        await log.append(access(i))
    for _ in range(200):  # let the checkpointer run; no timing assertion
        if log.latest_checkpoint().size >= 20:
            break
        await asyncio.sleep(0.01)
    assert log.latest_checkpoint().size >= 20
    sizes = [s for s, _ in checkpoint_paths(tmp_path)]
    assert sizes[0] == 0
    assert all(b > a for a, b in itertools.pairwise(sizes))
    await log.close()
    assert checkpoint_paths(tmp_path)[-1][0] == 25
    log = await open_log(tmp_path, note_key)
    latest = log.latest_checkpoint()
    for size in sizes[1:]:
        cp = await log.checkpoint_at(size)
        assert cp is not None
        proof = await log.consistency_proof(size, latest.size)
        merkle.verify_consistency(size, latest.size, proof, cp.root, latest.root)
    await log.close()


async def test_checkpoint_by_time(tmp_path: Path, note_key: Ed25519PrivateKey) -> None:
    log = await open_log(
        tmp_path, note_key, checkpoint_every_entries=10_000, checkpoint_every_ms=20
    )
    await log.append(access(0))
    for _ in range(500):
        if log.latest_checkpoint().size == 1:
            break
        await asyncio.sleep(0.01)
    assert log.latest_checkpoint().size == 1
    await log.close()


async def test_segments_rotate(tmp_path: Path, note_key: Ed25519PrivateKey) -> None:
    await fill(tmp_path, note_key, 30, segment_bytes=2000)
    paths = segment_paths(tmp_path)
    assert len(paths) > 3
    log = await open_log(tmp_path, note_key, segment_bytes=2000)
    lines = await log.entries(0, 30)
    assert [json.loads(x)["index"] for x in lines] == list(range(30))
    await log.close()


async def test_subject_index_and_bad_requests(tmp_path: Path, note_key: Ed25519PrivateKey) -> None:
    await fill(tmp_path, note_key, 6)
    log = await open_log(tmp_path, note_key)
    assert await log.accesses(subject_of(PEPPER, ID_A)) == [1, 3, 5]
    await log.append(access(7))
    assert await log.accesses(subject_of(PEPPER, ID_A)) == [1, 3, 5, 6]
    with pytest.raises(InvalidArgument):
        await log.entries(3, 99)
    with pytest.raises(InvalidArgument):
        await log.inclusion_proof(7, 7)
    with pytest.raises(InvalidArgument):
        await log.consistency_proof(0, 3)
    await log.close()
    with pytest.raises(Unavailable):
        await log.append(access(8))


async def test_open_trusts_checkpointed_tiles_and_rehashes_without_them(
    tmp_path: Path, note_key: Ed25519PrivateKey
) -> None:
    await fill(tmp_path, note_key, 600, segment_bytes=20_000)  # many sealed segments
    assert len(segment_paths(tmp_path)) > 5
    log = await open_log(tmp_path, note_key, segment_bytes=20_000)
    root = log.latest_checkpoint().root
    assert log.tree_size == 600
    assert json.loads((await log.entries(7, 8))[0])["index"] == 7  # lazy line offsets
    await log.close()
    # Tiles are derived data: without them (e.g. lost in a power cut) the log rebuilds them.
    for tile in sorted((tmp_path / "tile").rglob("*"), reverse=True):
        tile.rmdir() if tile.is_dir() else tile.unlink()
    log = await open_log(tmp_path, note_key, segment_bytes=20_000)
    assert log.latest_checkpoint().root == root
    proof = await log.inclusion_proof(300, 600)
    merkle.verify_inclusion(
        300, 600, merkle.leaf_hash((await log.entries(300, 301))[0]), proof, root
    )
    await log.close()


async def test_open_catches_a_changed_entry_in_the_last_segment(
    tmp_path: Path, note_key: Ed25519PrivateKey
) -> None:
    await fill(tmp_path, note_key, 600, segment_bytes=20_000)
    segment = segment_paths(tmp_path)[-1][1]
    data = segment.read_bytes()
    segment.write_bytes(data.replace(b"approval-a", b"approval-z", 1))
    with pytest.raises(IntegrityError) as info:
        await open_log(tmp_path, note_key, segment_bytes=20_000)
    assert info.value.reason == "AUDIT_ROOT_MISMATCH"


async def test_subject_index_spans_segments_and_new_appends(
    tmp_path: Path, note_key: Ed25519PrivateKey
) -> None:
    await fill(tmp_path, note_key, 300, segment_bytes=20_000)
    log = await open_log(tmp_path, note_key, segment_bytes=20_000)
    await log.append(access(301))  # may land before the background index is complete
    expected = [*range(1, 300, 2), 300]
    assert await log.accesses(subject_of(PEPPER, ID_A)) == expected
    await log.close()


async def test_a_cancelled_appender_does_not_cancel_its_batch(
    tmp_path: Path, note_key: Ed25519PrivateKey
) -> None:
    log = await open_log(tmp_path, note_key)
    tasks = [asyncio.create_task(log.append(access(i))) for i in range(20)]
    await asyncio.sleep(0)  # all twenty are waiting on one group commit
    tasks[3].cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[3], asyncio.CancelledError)
    assert [r.index for r in results if not isinstance(r, BaseException)] == [
        i for i in range(20) if i != 3
    ]
    assert log.tree_size == 20  # the cancelled caller's entry is on disk all the same
    await log.close()
