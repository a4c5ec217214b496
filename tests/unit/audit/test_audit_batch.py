"""AuditLog.append_many, and appends held back under the unsigned limit: order, receipts,
durability, failing closed, the limit itself."""

from __future__ import annotations

import asyncio
import errno
import itertools
import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit import merkle
from gateway.audit.entry import AuditEntryError
from gateway.audit.log import AppendReceipt, AuditLog
from gateway.audit.storage import checkpoint_paths
from gateway.domain.errors import Unavailable
from tests.support.auditlog import access, open_log

#: checkpoint_every_entries=16: an unsigned limit of 64; no checkpoint by time during a test
SMALL = {"checkpoint_every_entries": 16, "checkpoint_every_ms": 600_000}


async def _check_receipts(log: AuditLog, receipts: list[AppendReceipt]) -> None:
    """Each receipt's index holds the entry it was given for, under its leaf hash."""
    lines = await log.entries(0, log.tree_size)
    for receipt in receipts:
        line = lines[receipt.index]
        assert json.loads(line)["index"] == receipt.index
        assert receipt.leaf_hash == merkle.leaf_hash(line)


def _signed_steps(directory: Path) -> list[int]:
    sizes = [n for n, _ in checkpoint_paths(directory)]
    return [b - a for a, b in itertools.pairwise(sizes)]


async def test_append_many_gives_consecutive_indexes_and_leaf_hashes(
    tmp_path: Path, note_key: Ed25519PrivateKey
) -> None:
    log = await open_log(tmp_path, note_key)
    receipts = await log.append_many([access(i) for i in range(50)])
    assert [r.index for r in receipts] == list(range(50))
    await _check_receipts(log, receipts)
    lines = await log.entries(0, 50)
    assert [json.loads(x)["request_id"] for x in lines] == [f"req-{i}" for i in range(50)]
    assert await log.append_many([]) == []
    assert (await log.append(access(50))).index == 50
    await log.close()


async def test_appends_and_groups_are_indexed_in_call_order(
    tmp_path: Path, note_key: Ed25519PrivateKey
) -> None:
    log = await open_log(tmp_path, note_key)
    one, group, two = await asyncio.gather(
        log.append(access(0)),
        log.append_many([access(1), access(2), access(3)]),
        log.append(access(4)),
    )
    assert [one.index, *(r.index for r in group), two.index] == [0, 1, 2, 3, 4]
    await _check_receipts(log, [one, *group, two])
    await log.close()


async def test_append_many_answers_only_once_its_batch_is_fdatasynced(
    tmp_path: Path, note_key: Ed25519PrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = await open_log(tmp_path, note_key)
    gate = threading.Event()
    synced: list[int] = []
    real = os.fdatasync

    def held_back(fd: int) -> None:
        gate.wait(10)
        real(fd)
        synced.append(fd)

    monkeypatch.setattr(os, "fdatasync", held_back)
    task = asyncio.create_task(log.append_many([access(i) for i in range(5)]))
    await asyncio.sleep(0.05)
    assert not task.done()  # written, perhaps, but not yet fdatasynced
    assert log.tree_size == 0
    gate.set()
    receipts = await task
    assert synced
    assert [r.index for r in receipts] == list(range(5))
    assert log.tree_size == 5
    await log.close()


async def test_a_refused_entry_refuses_its_whole_group(
    tmp_path: Path, note_key: Ed25519PrivateKey
) -> None:
    log = await open_log(tmp_path, note_key)
    bad_groups: list[list[dict[Any, Any]]] = [
        [access(0), {"kind": "access", "latency": 1.5}],
        [access(0), {"kind": "access", "x": "\ud800"}],  # a lone surrogate: found encoding it
        [access(0), {1: "key that is not a string"}],
        [access(0), {"kind": "access", "claims": [{"a": 1.0}]}],
    ]
    for group in bad_groups:
        with pytest.raises(AuditEntryError):
            await log.append_many(group)
    with pytest.raises(AuditEntryError):
        await log.append({1: "key that is not a string"})  # type: ignore[dict-item]
    assert log.tree_size == 0
    assert (await log.append(access(0))).index == 0  # no index was used up
    await log.close()


@pytest.mark.parametrize("target", ["write", "fdatasync"])
async def test_append_many_fails_closed(
    tmp_path: Path, note_key: Ed25519PrivateKey, monkeypatch: pytest.MonkeyPatch, target: str
) -> None:
    log = await open_log(tmp_path, note_key, **SMALL)
    await log.append(access(0))

    def full(*args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, target, full)
    # groups and appends past the unsigned limit too: held back, then refused with the rest
    results = await asyncio.gather(
        log.append_many([access(i) for i in range(1, 41)]),
        *(log.append(access(i)) for i in range(41, 101)),
        log.append_many([access(i) for i in range(101, 301)]),
        return_exceptions=True,
    )
    assert all(isinstance(r, Unavailable) for r in results), results
    assert {r.reason for r in results if isinstance(r, Unavailable)} == {"AUDIT_UNAVAILABLE"}
    monkeypatch.undo()
    with pytest.raises(Unavailable):
        await log.append_many([access(400)])
    assert log.tree_size == 1
    await log.close()


async def test_groups_past_the_room_wait_for_a_checkpoint(
    tmp_path: Path, note_key: Ed25519PrivateKey
) -> None:
    log = await open_log(tmp_path, note_key, **SMALL)
    limit = log.unsigned_limit
    assert limit == 64
    # 20 groups of 40 in one loop turn: at most one fits at a time
    groups = await asyncio.gather(
        *(log.append_many([access(40 * g + i) for i in range(40)]) for g in range(20))
    )
    receipts = [r for group in groups for r in group]
    assert [r.index for r in receipts] == list(range(800))
    await _check_receipts(log, receipts)
    await log.close()
    assert checkpoint_paths(tmp_path)[-1][0] == 800
    assert max(_signed_steps(tmp_path)) <= limit


async def test_a_group_larger_than_the_limit_goes_in_pieces(
    tmp_path: Path, note_key: Ed25519PrivateKey
) -> None:
    log = await open_log(tmp_path, note_key, **SMALL)
    first = await log.append(access(0))
    group, after = await asyncio.gather(
        log.append_many([access(i) for i in range(1, 301)]), log.append(access(301))
    )
    assert first.index == 0
    assert [r.index for r in group] == list(range(1, 301))
    assert after.index == 301  # behind the whole group, though it would have fitted first
    await _check_receipts(log, [first, *group, after])
    await log.close()
    assert max(_signed_steps(tmp_path)) <= log.unsigned_limit


async def test_held_appends_keep_call_order(tmp_path: Path, note_key: Ed25519PrivateKey) -> None:
    log = await open_log(tmp_path, note_key, **SMALL)
    calls: list[Any] = []
    for i in range(300):  # singles and groups, most of them held back for room
        if i % 7 == 3:
            calls.append(log.append_many([access(i), access(i)]))
        else:
            calls.append(log.append(access(i)))
    results = await asyncio.gather(*calls)
    indexes = [
        r.index if isinstance(r, AppendReceipt) else r[0].index for r in results
    ]  # in call order
    assert indexes == sorted(indexes)
    assert len(set(indexes)) == len(indexes)
    assert log.tree_size == 300 + sum(1 for i in range(300) if i % 7 == 3)
    await log.close()
    assert max(_signed_steps(tmp_path)) <= log.unsigned_limit


async def test_a_held_append_cancelled_is_still_logged(
    tmp_path: Path, note_key: Ed25519PrivateKey
) -> None:
    log = await open_log(tmp_path, note_key, **SMALL)
    tasks = [asyncio.create_task(log.append(access(i))) for i in range(200)]
    await asyncio.sleep(0)  # all have their indexes; past the 64th they are held back
    tasks[150].cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[150], asyncio.CancelledError)
    assert [r.index for r in results if isinstance(r, AppendReceipt)] == [
        i for i in range(200) if i != 150
    ]
    assert log.tree_size == 200  # index 150 given at the call: written, no gap
    assert json.loads((await log.entries(150, 151))[0])["request_id"] == "req-150"
    await log.close()


async def test_closing_refuses_held_appends(tmp_path: Path, note_key: Ed25519PrivateKey) -> None:
    log = await open_log(tmp_path, note_key, **SMALL)
    gate = threading.Event()
    store = log._store_checkpoint

    def slow_store(*args: Any) -> None:
        gate.wait(10)
        store(*args)

    log._store_checkpoint = slow_store  # type: ignore[method-assign]
    tasks = [asyncio.create_task(log.append(access(i))) for i in range(100)]
    for _ in range(500):  # the first 64 land; their checkpoint is being stored
        if log.tree_size == 64:
            break
        await asyncio.sleep(0.01)
    assert log.tree_size == 64
    closing = asyncio.create_task(log.close())
    await asyncio.sleep(0.01)
    gate.set()
    await closing
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert [r.index for r in results[:64] if isinstance(r, AppendReceipt)] == list(range(64))
    assert all(isinstance(r, Unavailable) for r in results[64:])
    log = await open_log(tmp_path, note_key, **SMALL)
    assert log.tree_size == 64  # and it opens: nothing past the limit was written
    await log.close()
