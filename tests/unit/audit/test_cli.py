"""`proofless audit …` run through argparse on a real log directory."""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit.note import NoteSigner, SignedCheckpoint
from gateway.audit.storage import LATEST, checkpoint_paths, segment_paths
from tests.support.auditlog import ID_A, ORIGIN, PEPPER, access, fill, open_log
from tests.support.auditlog import run_audit_cli as run


@pytest.fixture
def log_dir(tmp_path: Path, note_key: Ed25519PrivateKey) -> Path:
    directory = tmp_path / "log"
    asyncio.run(fill(directory, note_key, 40, checkpoint_every_entries=10))
    return directory


@pytest.fixture
def vkey(note_key: Ed25519PrivateKey) -> str:
    return NoteSigner(ORIGIN, note_key).vkey


def _pem(tmp_path: Path, name: str, key: Ed25519PrivateKey) -> Path:
    path = tmp_path / name
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def test_key(note_key_file: Path, vkey: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("key", "--note-key", note_key_file, "--origin", ORIGIN) == 0
    assert capsys.readouterr().out.strip() == vkey


def test_verify_valid_and_invalid(
    log_dir: Path, vkey: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("verify", log_dir, "--key", vkey) == 0
    out = capsys.readouterr().out
    assert "segment 00000000000000000000.jsonl: valid" in out
    assert out.strip().endswith("VALID")
    segment = segment_paths(log_dir)[0][1]
    segment.write_bytes(segment.read_bytes().replace(b"case-7", b"case-8"))
    assert run("verify", log_dir, "--key", vkey) == 1
    out = capsys.readouterr().out
    assert "INVALID (hash mismatch)" in out
    assert "first bad index: 7" in out


def test_verify_bad_key_is_a_diagnostic(log_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("verify", log_dir, "--key", "not-a-key") == 1
    assert "NOTE_MALFORMED" in capsys.readouterr().err


def test_replay_filters(log_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("replay", log_dir, "--caller", "approval-b", "--outcome", "granted") == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert rows
    assert all(r["caller"] == "approval-b" and r["outcome"] == "granted" for r in rows)
    pepper = tmp_path / "pepper"
    pepper.write_bytes(PEPPER)  # raw, as the gateway reads it
    assert run("replay", log_dir, "--id-number", ID_A, "--pepper-file", pepper) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [r["index"] for r in rows] == list(range(1, 40, 2))
    args = ("--since", "2026-11-21T10:00:10", "--until", "2026-11-21T10:00:20", "--format", "csv")
    assert run("replay", log_dir, *args) == 0
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [int(r["index"]) for r in table] == list(range(10, 20))
    assert run("replay", log_dir, "--id-number", ID_A) == 2


def test_stats(log_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("stats", log_dir) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["entries"] == 40
    assert stats["callers"] == {"approval-a": 20, "approval-b": 20}
    assert stats["outcomes"]["denied"] == 14
    assert stats["denials_by_reason"] == {"FIELD_NOT_ALLOWED": 14}
    assert stats["departments"] == {"public-security": 40}
    assert stats["latency_us"] == {"p50": 1019, "p90": 1035, "p99": 1039}


def test_prove_index_and_proof_file(
    log_dir: Path, tmp_path: Path, vkey: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("prove", log_dir, "17", "--key", vkey) == 0
    proof = json.loads(capsys.readouterr().out)
    assert proof["verified"] is True
    assert proof["tree_size"] == 40
    size = next(s for s, _ in checkpoint_paths(log_dir) if s > 17)
    assert run("prove", log_dir, "17", "--size", str(size)) == 0
    assert json.loads(capsys.readouterr().out)["tree_size"] == size

    def b64url(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    jws = tmp_path / "proof.jws"
    jws.write_text(f"{b64url({'alg': 'EdDSA'})}.{b64url({'audit_index': 5})}.c2ln")
    assert run("prove", log_dir, "--proof", jws) == 0
    assert json.loads(capsys.readouterr().out)["index"] == 5
    assert run("prove", log_dir, "99") == 1
    jws.write_text("garbage")
    assert run("prove", log_dir, "--proof", jws) == 2


def test_merge(
    tmp_path: Path, log_dir: Path, vkey: str, capsys: pytest.CaptureFixture[str]
) -> None:
    other_key = Ed25519PrivateKey.generate()
    other = tmp_path / "r2"

    async def write() -> None:
        log = await open_log(other, other_key)  # same origin name is fine for the test
        await log.append(access(3, time="2026-11-21T10:00:03.500000Z", caller="replica-2"))
        await log.close()

    asyncio.run(write())
    other_vkey = NoteSigner(ORIGIN, other_key).vkey
    assert run("merge", log_dir, other, "--key", vkey, "--key", other_vkey) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(rows) == 41
    assert [r["caller"] for r in rows[3:5]] == ["approval-b", "replica-2"]
    assert run("merge", log_dir, other, "--key", vkey, "--key", vkey) == 1


def test_witness_then_verify_requires_it(
    log_dir: Path, tmp_path: Path, vkey: str, note_key: Ed25519PrivateKey,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    witness_key = Ed25519PrivateKey.generate()
    wpem = _pem(tmp_path, "witness.pem", witness_key)
    wvkey = NoteSigner("witness.test", witness_key).vkey
    state = tmp_path / "witness.state"
    assert run("verify", log_dir, "--key", vkey, "--witness", wvkey) == 1
    capsys.readouterr()
    base = (
        "witness",
        "cosign",
        log_dir,
        "--log-key",
        vkey,
        "--key",
        wpem,
        "--name",
        "witness.test",
    )
    assert run(*base, "--state", state) == 0
    cosigned = SignedCheckpoint.parse(capsys.readouterr().out)
    assert len(cosigned.note.signatures) == 2
    assert run("verify", log_dir, "--key", vkey, "--witness", wvkey) == 0

    async def grow() -> None:
        log = await open_log(log_dir, note_key)
        await log.append(access(40))
        await log.close()

    asyncio.run(grow())
    assert run(*base, "--state", state) == 0  # consistent growth: cosigned again
    assert SignedCheckpoint.parse((log_dir / LATEST).read_text()).size == 41
    # a rolled-back checkpoint is refused
    old = tmp_path / "old.cp"
    old.write_text(cosigned.text)
    capsys.readouterr()
    assert run(*base, "--state", state, "--checkpoint", old, "--out", tmp_path / "x") == 1
    assert "rollback" in capsys.readouterr().err
