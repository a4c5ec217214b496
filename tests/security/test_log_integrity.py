"""Red-team item 8: the gateway re-signed a rewritten log.

Reproduced against `make run`: stop the gateway, delete `var/audit/checkpoint*`, edit an
entry's `case_id`, restart. The gateway rebuilt the tree from the edited entries, signed a
fresh checkpoint over them, and `proofless audit verify` reported VALID: the rewrite left no
trace. The log now refuses to start when its entries are not covered by a checkpoint it signed
(beyond the unsigned tail a crash can leave), names the directory and what is missing, and
changes nothing on disk; `proofless audit recover DIR --reason TEXT` is the explicit way out,
and it writes a recovery entry before signing anything. A rollback behind a checkpoint a
witness cosigned (kept outside the log directory) is refused too.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from adapters.simulators.datagen import generate
from gateway.audit.note import NoteSigner, SignedCheckpoint
from gateway.audit.storage import CHECKPOINTS, LATEST, checkpoint_paths, segment_paths
from gateway.domain.errors import ConfigError, IntegrityError
from gateway.ops.logging import PERSONAL_NUMBER
from proofless.v1 import verification_pb2 as pb
from proofless.v1 import verification_pb2_grpc as pb_grpc
from tests.support.auditlog import ORIGIN, access, fill, open_log, run_audit_cli
from tests.support.processes import POPULATION, ROOT, SEED, ProcessStack, write_config

_PERSONAL = re.compile(PERSONAL_NUMBER)


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def rewrite_case_id(directory: Path) -> int:
    """Change the case id of the first access entry that has one, as an insider would (the
    line stays valid JSON with its index). Returns the entry's index."""
    path = segment_paths(directory)[0][1]
    lines = path.read_bytes().split(b"\n")
    for n, line in enumerate(lines):
        entry = json.loads(line)
        if entry.get("case_id"):
            entry["case_id"] = "REWRITTEN-1"
            lines[n] = json.dumps(entry, sort_keys=True, separators=(",", ":")).encode()
            path.write_bytes(b"\n".join(lines))
            return int(entry["index"])
    raise AssertionError("no entry with a case id")


def delete_checkpoints(directory: Path) -> None:
    shutil.rmtree(directory / CHECKPOINTS)
    (directory / LATEST).unlink()


def snapshot(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


async def _calls(stack: ProcessStack, n: int) -> None:
    """`n` calls; whatever they answer (a department may be down), each leaves an entry."""
    ids = sorted(generate(SEED, POPULATION).people)
    async with stack.channel("quangang-window") as channel:
        stub = pb_grpc.VerificationServiceStub(channel)
        for i in range(n):
            req = pb.RecordRequest(
                context=pb.RequestContext(
                    service_item="housing-transfer", case_id=f"QG-2026-{i:06d}", purpose="transfer"
                ),
                applicant=pb.Applicant(id_number=ids[i]),
            )
            with contextlib.suppress(grpc.aio.AioRpcError):
                await stub.GetHouseholdRecord(req, timeout=10)


def _refused_start(stack: ProcessStack) -> str:
    """Start `proofless serve` again; it must exit instead of becoming ready. Its output."""
    proc = stack.gateway = stack._spawn("serve", "gateway")
    output = stack.logs / f"gateway-{stack._starts}.log"
    until = time.monotonic() + 60
    while proc.poll() is None:
        assert stack.ops_status("/readyz") != 200, "the gateway started on a rewritten log"
        assert time.monotonic() < until, "the gateway neither started nor exited"
        time.sleep(0.05)
    assert proc.returncode != 0
    return output.read_text()


def test_the_reproduction_against_a_gateway_process(tmp_path: Path) -> None:
    """Stop the gateway, delete checkpoint*, edit a case_id, restart: refused; then recover."""
    stack = write_config(tmp_path)
    audit = stack.audit_dir
    origin = stack.raw["audit"]["origin"]
    vkey = cli("audit", "key", "--note-key", stack.pki.audit_note_key, "--origin", origin)
    assert vkey.returncode == 0, vkey.stderr
    stack.start_simulators()
    try:
        stack.start_gateway()
        asyncio.run(_calls(stack, 5))
        assert stack.kill_gateway(signal.SIGTERM) == 0  # a clean stop, final checkpoint
        size = SignedCheckpoint.parse((audit / LATEST).read_bytes()).size
        assert size >= 5

        delete_checkpoints(audit)
        edited = rewrite_case_id(audit)
        before = snapshot(audit)

        out = _refused_start(stack)
        assert "AUDIT_UNCHECKPOINTED" in out
        assert str(audit) in out
        assert f"no signed checkpoint covers its {size} entries" in out
        assert "Traceback" not in out
        assert not _PERSONAL.search(out)
        assert snapshot(audit) == before, "a refused start must change nothing on disk"

        # the auditor is not told VALID either: nothing signed covers the entries
        verified = cli("audit", "verify", audit, "--key", vkey.stdout.strip())
        assert verified.returncode == 1, verified.stdout

        # the explicit, audited way out
        reason = "checkpoints lost in incident INC-2026-17; entries restored from backup"
        recovered = cli(
            "audit", "recover", audit, "--reason", reason,
            "--note-key", stack.pki.audit_note_key, "--origin", origin,
        )  # fmt: skip
        assert recovered.returncode == 0, recovered.stderr
        assert f"old size: none, new size: {size}" in recovered.stdout

        stack.start_gateway()
        assert stack.kill_gateway(signal.SIGTERM) == 0
    finally:
        stack.stop()

    verified = cli("audit", "verify", audit, "--key", vkey.stdout.strip())
    assert verified.returncode == 0, verified.stdout
    lines = [json.loads(x) for _, p in segment_paths(audit) for x in p.read_bytes().splitlines()]
    recovery = lines[size]
    assert recovery["kind"] == "recovery"
    assert recovery["event"] == "operator_recovery"
    assert recovery["found"] == "AUDIT_UNCHECKPOINTED"
    assert (recovery["old_size"], recovery["new_size"]) == (None, size)
    assert recovery["reason"] == reason
    assert lines[edited]["case_id"] == "REWRITTEN-1"  # signed now, but after the record of it


# ---- AuditLog.open on real directories ---------------------------------------------------------


async def test_deleted_checkpoints_and_an_edited_entry_are_refused(
    tmp_path: Path, note_key: Ed25519PrivateKey
) -> None:
    await fill(tmp_path, note_key, 30)
    delete_checkpoints(tmp_path)
    rewrite_case_id(tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(IntegrityError) as info:
        await open_log(tmp_path, note_key)
    assert info.value.reason == "AUDIT_UNCHECKPOINTED"
    assert str(tmp_path) in info.value.message
    assert "30 entries" in info.value.message
    assert snapshot(tmp_path) == before


async def test_deleted_checkpoints_alone_are_refused(
    tmp_path: Path, note_key: Ed25519PrivateKey
) -> None:
    await fill(tmp_path, note_key, 3)
    delete_checkpoints(tmp_path)
    with pytest.raises(IntegrityError) as info:
        await open_log(tmp_path, note_key)
    assert info.value.reason == "AUDIT_UNCHECKPOINTED"


def _crash_at(directory: Path, size: int) -> None:
    """The disk as a crash leaves it when the last checkpoint stored was the one of `size`:
    later checkpoints were never written, the entries after it are durable."""
    for n, path in checkpoint_paths(directory):
        if n > size:
            path.unlink()
    shutil.copyfile(directory / CHECKPOINTS / f"{size:020d}", directory / LATEST)


async def test_a_crash_tail_is_still_recovered(tmp_path: Path, note_key: Ed25519PrivateKey) -> None:
    await fill(tmp_path, note_key, 200, checkpoint_every_entries=16)
    sizes = [n for n, _ in checkpoint_paths(tmp_path)]
    log = await open_log(tmp_path, note_key, checkpoint_every_entries=16)
    limit = log.unsigned_limit
    await log.close()
    last = max(n for n in sizes if 200 - n <= limit)
    _crash_at(tmp_path, last)
    segment = segment_paths(tmp_path)[-1][1]
    segment.write_bytes(segment.read_bytes() + b'{"index":2')  # and a torn line
    log = await open_log(tmp_path, note_key, checkpoint_every_entries=16)
    assert log.tree_size == 201  # the unsigned tail kept, the torn line set aside and logged
    assert json.loads((await log.entries(200, 201))[0])["event"] == "torn_tail"
    assert log.latest_checkpoint().size == 201
    await log.close()


async def test_an_unsigned_tail_longer_than_a_crash_leaves_is_refused(
    tmp_path: Path, note_key: Ed25519PrivateKey
) -> None:
    await fill(tmp_path, note_key, 200, checkpoint_every_entries=16)
    log = await open_log(tmp_path, note_key, checkpoint_every_entries=16)
    limit = log.unsigned_limit
    await log.close()
    first = min(n for n, _ in checkpoint_paths(tmp_path) if n > 0)
    assert 200 - first > limit
    _crash_at(tmp_path, first)  # the later checkpoints deleted, the entries after `first` edited
    segment = segment_paths(tmp_path)[-1][1]
    segment.write_bytes(segment.read_bytes().replace(b'"case-150"', b'"case-999"'))
    with pytest.raises(IntegrityError) as info:
        await open_log(tmp_path, note_key, checkpoint_every_entries=16)
    assert info.value.reason == "AUDIT_UNCHECKPOINTED"
    assert f"covers {first} of its 200 entries" in info.value.message


async def test_appends_never_run_further_ahead_of_checkpoints_than_opening_accepts(
    tmp_path: Path, note_key: Ed25519PrivateKey
) -> None:
    log = await open_log(
        tmp_path, note_key, checkpoint_every_entries=16, checkpoint_every_ms=600_000
    )
    limit = log.unsigned_limit
    # 500 appends in one loop turn: without the wait they landed in two group commits
    await asyncio.gather(*(log.append(access(i)) for i in range(500)))
    await log.close()
    sizes = [n for n, _ in checkpoint_paths(tmp_path)]
    assert sizes[-1] == 500
    assert max(b - a for a, b in itertools.pairwise(sizes)) <= limit


# ---- rollback behind a witnessed checkpoint ----------------------------------------------------


async def _witnessed(tmp_path: Path, note_key: Ed25519PrivateKey) -> tuple[Path, Path, Path]:
    """A log of 20 entries, a copy taken at 12, and a witness's state file cosigned at 20."""
    log_dir, backup = tmp_path / "log", tmp_path / "backup"
    await fill(log_dir, note_key, 12)
    shutil.copytree(log_dir, backup)
    log = await open_log(log_dir, note_key)
    for i in range(12, 20):
        await log.append(access(i))
    await log.close()
    witness = NoteSigner("witness.test", Ed25519PrivateKey.generate())
    state = tmp_path / "witness" / "state"
    state.parent.mkdir()
    cosigned = SignedCheckpoint.parse((log_dir / LATEST).read_bytes()).cosigned(witness)
    state.write_text(cosigned.text)
    return log_dir, backup, state


async def test_a_rollback_behind_the_witnessed_size_is_refused(
    tmp_path: Path, note_key: Ed25519PrivateKey
) -> None:
    log_dir, backup, state = await _witnessed(tmp_path, note_key)
    shutil.rmtree(log_dir)
    shutil.copytree(backup, log_dir)  # the older copy is consistent with itself
    await (await open_log(log_dir, note_key)).close()  # consistent with itself: it opens
    with pytest.raises(IntegrityError) as info:
        await open_log(log_dir, note_key, witnessed=[state])
    assert info.value.reason == "AUDIT_ROLLED_BACK"
    assert "witnessed checkpoint covers 20" in info.value.message


async def test_a_fork_from_the_witnessed_checkpoint_is_refused(
    tmp_path: Path, note_key: Ed25519PrivateKey
) -> None:
    log_dir, backup, state = await _witnessed(tmp_path, note_key)
    shutil.rmtree(log_dir)
    shutil.copytree(backup, log_dir)
    log = await open_log(log_dir, note_key)  # the older copy grows a different history
    for i in range(12, 25):
        await log.append(access(i, case_id=f"other-{i}"))
    await log.close()
    with pytest.raises(IntegrityError) as info:
        await open_log(log_dir, note_key, witnessed=[state])
    assert info.value.reason == "AUDIT_ROOT_MISMATCH"


async def test_the_witnessed_log_opens_and_extends(
    tmp_path: Path, note_key: Ed25519PrivateKey
) -> None:
    log_dir, _, state = await _witnessed(tmp_path, note_key)
    log = await open_log(log_dir, note_key, witnessed=[state, tmp_path / "not-yet"])
    await log.append(access(20))
    await log.close()
    other = tmp_path / "other"
    other.write_text(
        SignedCheckpoint.sign(
            SignedCheckpoint.parse(state.read_text()).checkpoint,
            NoteSigner(ORIGIN, Ed25519PrivateKey.generate()),
        ).text
    )
    with pytest.raises(ConfigError):  # a note this log never signed proves nothing
        await open_log(log_dir, note_key, witnessed=[other])


# ---- proofless audit recover ---------------------------------------------------------------------


async def _recover(directory: Path, key_file: Path, *extra: str) -> int:
    """`proofless audit recover` in process (in a thread: it runs its own event loop)."""
    args = ("recover", directory, "--note-key", key_file, "--origin", ORIGIN, *extra)
    return await asyncio.to_thread(run_audit_cli, *args)


async def test_recover_a_rolled_back_log_records_and_sets_aside(
    tmp_path: Path, note_key: Ed25519PrivateKey, note_key_file: Path, capsys: Any
) -> None:
    log_dir = tmp_path / "log"
    await fill(log_dir, note_key, 20)
    segment = segment_paths(log_dir)[-1][1]
    lines = segment.read_bytes().split(b"\n")
    segment.write_bytes(b"\n".join(lines[:15]) + b"\n")  # the last five entries lost
    with pytest.raises(IntegrityError):
        await open_log(log_dir, note_key)
    assert await _recover(log_dir, note_key_file, "--reason", "disk replaced; restored") == 0
    out = capsys.readouterr().out
    assert "old size: 20, new size: 15" in out
    log = await open_log(log_dir, note_key)
    entry = json.loads((await log.entries(15, 16))[0])
    await log.close()
    assert entry["found"] == "AUDIT_ROLLED_BACK"
    assert (entry["old_size"], entry["new_size"]) == (20, 15)
    assert entry["superseded"]  # the checkpoints of 20 kept aside as evidence, not deleted
    assert (log_dir / CHECKPOINTS / "superseded" / f"{20:020d}").exists()
    key = NoteSigner(ORIGIN, note_key).vkey
    assert run_audit_cli("verify", log_dir, "--key", key) == 0


async def test_recover_refuses_a_sound_log_and_a_bad_reason(
    tmp_path: Path, note_key: Ed25519PrivateKey, note_key_file: Path, capsys: Any
) -> None:
    log_dir = tmp_path / "log"
    await fill(log_dir, note_key, 5)
    assert await _recover(log_dir, note_key_file, "--reason", "just because") == 2
    assert "needs no recovery" in capsys.readouterr().err
    delete_checkpoints(log_dir)
    for bad in ("", "holder 11010519491231002X asked", "two\nlines"):
        assert await _recover(log_dir, note_key_file, "--reason", bad) == 2
        err = capsys.readouterr().err
        assert "11010519491231002X" not in err
    assert not (log_dir / LATEST).exists()
