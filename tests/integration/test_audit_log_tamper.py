"""Tamper matrix: a real log written through AuditLog, damaged the ways an insider would,
each caught by `verify_log` with the right first bad index."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit.note import Checkpoint, NoteSigner, NoteVerifier, SignedCheckpoint
from gateway.audit.storage import LATEST, checkpoint_paths, segment_paths
from gateway.audit.verify import (
    BAD_SIGNATURE,
    GAP,
    HASH_MISMATCH,
    INCONSISTENT,
    MISSING,
    TRUNCATED,
    verify_log,
)
from tests.support.auditlog import ORIGIN, access, fill, open_log

N = 700  # spans three level-0 tiles and several segments


@pytest.fixture(scope="module")
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory, key: Ed25519PrivateKey) -> Path:
    directory = tmp_path_factory.mktemp("pristine")
    asyncio.run(fill(directory, key, N, segment_bytes=64 * 1024, checkpoint_every_entries=100))
    return directory


@pytest.fixture
def log_dir(tmp_path: Path, pristine: Path) -> Path:
    target = tmp_path / "log"
    shutil.copytree(pristine, target)
    return target


def _verifier(key: Ed25519PrivateKey) -> NoteVerifier:
    return NoteSigner(ORIGIN, key).verifier


def _segment_of(directory: Path, index: int) -> tuple[Path, int]:
    found = [(first, p) for first, p in segment_paths(directory) if first <= index]
    first, path = found[-1]
    return path, index - first


def _edit_lines(directory: Path, index: int, edit: Callable[[list[bytes], int], None]) -> None:
    path, offset = _segment_of(directory, index)
    lines = path.read_bytes().split(b"\n")[:-1]
    edit(lines, offset)
    path.write_bytes(b"".join(line + b"\n" for line in lines))


def test_pristine_log_verifies(pristine: Path, key: Ed25519PrivateKey) -> None:
    report = verify_log(pristine, _verifier(key))
    assert report.ok, report.lines()
    assert report.entries == report.covered == N
    assert len(report.segments) > 3
    assert report.lines()[-1].endswith("VALID")


def test_one_byte_changed(log_dir: Path, key: Ed25519PrivateKey) -> None:
    def edit(lines: list[bytes], i: int) -> None:
        lines[i] = lines[i].replace(b"birth", b"berth")

    _edit_lines(log_dir, 321, edit)
    report = verify_log(log_dir, _verifier(key))
    assert not report.ok
    assert report.first_bad_index == 321
    assert any(f.reason == HASH_MISMATCH for f in report.segments)


def test_line_deleted(log_dir: Path, key: Ed25519PrivateKey) -> None:
    _edit_lines(log_dir, 400, lambda lines, i: lines.pop(i))
    report = verify_log(log_dir, _verifier(key))
    assert report.first_bad_index == 400
    assert any(f.reason in (GAP, HASH_MISMATCH) for f in report.segments)


def test_line_inserted(log_dir: Path, key: Ed25519PrivateKey) -> None:
    def edit(lines: list[bytes], i: int) -> None:
        # a forged entry that even carries the right index
        lines.insert(i, lines[i].replace(b"birth registration", b"nothing to see"))

    _edit_lines(log_dir, 250, edit)
    report = verify_log(log_dir, _verifier(key))
    assert report.first_bad_index == 250


def test_two_lines_reordered(log_dir: Path, key: Ed25519PrivateKey) -> None:
    def edit(lines: list[bytes], i: int) -> None:
        lines[i], lines[i + 1] = lines[i + 1], lines[i]

    _edit_lines(log_dir, 150, edit)
    report = verify_log(log_dir, _verifier(key))
    assert report.first_bad_index == 150


def test_truncated_mid_line(log_dir: Path, key: Ed25519PrivateKey) -> None:
    path, offset = _segment_of(log_dir, N - 5)
    data = path.read_bytes()
    cut = sum(len(x) + 1 for x in data.split(b"\n")[:offset]) + 10
    path.write_bytes(data[:cut])
    report = verify_log(log_dir, _verifier(key))
    assert report.first_bad_index == N - 5
    assert any(f.reason == TRUNCATED for f in report.segments)


def test_truncated_at_line_boundary(log_dir: Path, key: Ed25519PrivateKey) -> None:
    _edit_lines(log_dir, N - 1, lambda lines, i: lines.__delitem__(slice(i - 3, None)))
    report = verify_log(log_dir, _verifier(key))
    assert report.first_bad_index == N - 4
    assert any(f.reason == MISSING for f in report.checkpoints)


def test_segment_removed(log_dir: Path, key: Ed25519PrivateKey) -> None:
    paths = segment_paths(log_dir)
    first, path = paths[2]
    path.unlink()
    report = verify_log(log_dir, _verifier(key))
    assert report.first_bad_index == first
    assert any(f.reason == GAP for f in report.segments)


def test_checkpoint_forged_with_another_key(log_dir: Path, key: Ed25519PrivateKey) -> None:
    size, path = checkpoint_paths(log_dir)[3]
    forged = SignedCheckpoint.sign(
        Checkpoint(ORIGIN, size, b"\x01" * 32), NoteSigner(ORIGIN, Ed25519PrivateKey.generate())
    )
    path.write_text(forged.text)
    report = verify_log(log_dir, _verifier(key))
    assert not report.ok
    assert report.first_bad_index is None  # the entries are fine; the checkpoint is not
    bad = [f for f in report.checkpoints if f.reason]
    assert [(f.name, f.reason) for f in bad] == [(path.name, BAD_SIGNATURE)]


def test_checkpoint_equivocation_with_the_real_key(log_dir: Path, key: Ed25519PrivateKey) -> None:
    size, path = checkpoint_paths(log_dir)[3]
    forged = SignedCheckpoint.sign(Checkpoint(ORIGIN, size, b"\x01" * 32), NoteSigner(ORIGIN, key))
    path.write_text(forged.text)
    report = verify_log(log_dir, _verifier(key))
    bad = [f for f in report.checkpoints if f.reason]
    assert [(f.name, f.reason) for f in bad] == [(path.name, INCONSISTENT)]


def test_rolled_back_to_an_older_copy(
    tmp_path: Path, pristine: Path, key: Ed25519PrivateKey
) -> None:
    old = tmp_path / "old"
    shutil.copytree(pristine, old)
    new = tmp_path / "new"
    shutil.copytree(pristine, new)

    async def more() -> None:
        log = await open_log(new, key)
        for i in range(N, N + 50):
            await log.append(access(i))
        await log.close()

    asyncio.run(more())
    seen = (new / LATEST).read_text()  # what the auditor (or witness) saw last
    assert verify_log(old, _verifier(key)).ok  # alone, an old copy looks fine...
    report = verify_log(old, _verifier(key), known_checkpoints=[seen])
    assert not report.ok  # ...but not against a checkpoint seen before
    assert report.first_bad_index == N
