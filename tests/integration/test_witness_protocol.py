"""C2SP tlog-witness both ways, as processes and over HTTP.

`proofless audit witness serve` is run as its own process and spoken to with plain HTTP
requests built from the spec: the transparency-dev/witness test log ("monkeys") and keys
(tests/vectors/tlog-cosignature) exercise every answer (200, 400, 403, 404, 409, 422), and
the cosignatures it returns are checked byte by byte from tlog-cosignature (key id type
0x04, big-endian timestamp, the `cosignature/v1` message) without the gateway's code. Then a
gateway configured with the witness pushes its checkpoints, keeps the cosigned ones, and
`proofless audit verify --witness` accepts them; a forked log is refused with 409/422.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.devtools.pki import DevPki
from gateway.domain.errors import IntegrityError
from tests.support.auditlog import access
from tests.support.processes import free_port
from tests.support.stack import Stack, poll, running_stack, stack_config

ROOT = Path(__file__).resolve().parents[2]
VECTORS: dict[str, Any] = json.loads(
    (ROOT / "tests" / "vectors" / "tlog-cosignature" / "vectors.json").read_text()
)["witness"]
START_TIMEOUT_S = 30.0


# ---- the witness as a process ----------------------------------------------------------------


@dataclass
class WitnessProcess:
    proc: subprocess.Popen[bytes]
    url: str
    vkey: str

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=START_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def proofless(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "gateway.cli", *map(str, args)]


async def run_cli(*args: str | Path) -> tuple[int, str]:
    """`proofless ...` as a process (the gateway in this loop keeps serving meanwhile)."""
    proc = await asyncio.create_subprocess_exec(
        *proofless(*args), cwd=ROOT, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


def start_witness(
    key: Path, state: Path, *log_keys: str, name: str | None = None
) -> WitnessProcess:
    args: list[str | Path] = ["audit", "witness", "serve", "--key", key, "--state", state]
    args += ["--listen", "127.0.0.1:0", "--log-level", "WARNING"]
    if name:
        args += ["--name", name]
    for vkey in log_keys:
        args += ["--log-key", vkey]
    proc = subprocess.Popen(
        proofless(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], START_TIMEOUT_S)
    line = proc.stdout.readline().decode() if ready else ""
    if not line.startswith("witness "):
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"the witness did not start: {line!r} {err.decode()[-2000:]}")
    _, vkey, _, url, *_ = line.split()
    return WitnessProcess(proc, url.rstrip("/"), vkey)


@pytest.fixture
def skey_file(tmp_path: Path) -> Path:
    path = tmp_path / "witness.skey"
    path.write_text(VECTORS["witness_skey"] + "\n")
    return path


@pytest.fixture
def witness(tmp_path: Path, skey_file: Path) -> Iterator[WitnessProcess]:
    w = start_witness(skey_file, tmp_path / "state", VECTORS["log_vkey"])
    try:
        yield w
    finally:
        w.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


# ---- the spec, independently ---------------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def body(old: int, proof: list[bytes], checkpoint: str) -> bytes:
    """tlog-witness: `old <size>`, the proof lines, an empty line, the checkpoint."""
    return (f"old {old}\n" + "".join(b64(h) + "\n" for h in proof) + "\n" + checkpoint).encode()


def vkey_key(vkey: str) -> bytes:
    return base64.b64decode(vkey.split("+", 2)[2])[1:]


def check_cosignature(line: str, checkpoint: str, name: str, public: bytes) -> int:
    """tlog-cosignature/v1, from the spec: `— <name> base64(key id || u64 time || sig)`,
    key id SHA-256(name || 0x0A || 0x04 || key)[:4], the signature over
    `cosignature/v1\\ntime <t>\\n` and the checkpoint's note text. Returns the time."""
    assert line.startswith("\u2014 ")
    assert line.endswith("\n")
    signer, sig64 = line[2:-1].split(" ")
    assert signer == name
    raw = base64.b64decode(sig64)
    assert len(raw) == 4 + 8 + 64
    assert raw[:4] == hashlib.sha256(name.encode() + b"\n\x04" + public).digest()[:4]
    t = int.from_bytes(raw[4:12], "big")
    text = checkpoint[: checkpoint.index("\n\n") + 1]
    message = f"cosignature/v1\ntime {t}\n{text}".encode()
    Ed25519PublicKey.from_public_bytes(public).verify(raw[12:], message)
    return t


def sign_note(text: str, name: str, key: Ed25519PrivateKey) -> str:
    """signed-note: `— <name> base64(SHA-256(name || 0x0A || 0x01 || key)[:4] || sig)`."""
    public = key.public_key().public_bytes_raw()
    kid = hashlib.sha256(name.encode() + b"\n\x01" + public).digest()[:4]
    return f"{text}\n\u2014 {name} {b64(kid + key.sign(text.encode()))}\n"


def monkeys_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(
        base64.b64decode(VECTORS["log_skey"].split("+", 4)[4])[1:]
    )


async def post(http: aiohttp.ClientSession, w: WitnessProcess, data: bytes) -> tuple[int, str, str]:
    async with http.post(w.url + "/add-checkpoint", data=data) as r:
        return r.status, await r.text(), r.headers.get("Content-Type", "")


PROOF = [bytes.fromhex(h) for h in VECTORS["proof_5_to_8_hex"]]
CP5, CP8 = VECTORS["checkpoint_5"], VECTORS["checkpoint_8"]


# ---- the witness server, answer by answer ----------------------------------------------------


async def test_the_witness_cosigns_and_answers_as_the_spec_says(
    witness: WitnessProcess, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    name, public = "witness", vkey_key(VECTORS["witness_vkey"])
    # its published vkey is the cosignature/v1 form of the test witness key
    assert witness.vkey.startswith("witness+")
    assert base64.b64decode(witness.vkey.split("+")[2]) == b"\x04" + public

    status, text, _ = await post(http, witness, body(0, [], CP5))
    assert status == 200
    t5 = check_cosignature(text, CP5, name, public)

    # the old size must be the one it holds: 409 with its size as text/x.tlog.size
    status, text, ctype = await post(http, witness, body(0, [], CP8))
    assert (status, text) == (409, "5\n")
    assert ctype.startswith("text/x.tlog.size")
    # a proof that does not verify: 422; a proof given from 0 is refused too
    assert (await post(http, witness, body(5, PROOF[::-1], CP8)))[0] == 422
    assert (await post(http, witness, body(5, PROOF[:-1], CP8)))[0] == 422
    # an old size beyond the checkpoint: 400; not a body: 400
    assert (await post(http, witness, body(9, [], CP8)))[0] == 400
    assert (await post(http, witness, b"old 5\n" + CP8.encode()))[0] == 400
    assert (await post(http, witness, b"old 05\n\n" + CP8.encode()))[0] == 400
    assert (await post(http, witness, body(5, [b"\x00" * 31], CP8)))[0] == 400

    status, text, _ = await post(http, witness, body(5, PROOF, CP8))
    assert status == 200
    assert check_cosignature(text, CP8, name, public) >= t5

    # the same size with another root (signed by the log's own key): 422
    forked = sign_note("monkeys\n8\n" + b64(b"\x01" * 32) + "\n", "monkeys", monkeys_key())
    assert (await post(http, witness, body(8, [], forked)))[0] == 422
    # the same checkpoint again is cosigned again (a fresh statement, never an older time)
    status, text, _ = await post(http, witness, body(8, [], CP8))
    assert status == 200
    assert check_cosignature(text, CP8, name, public) >= t5


async def test_unknown_logs_and_bad_signatures(
    witness: WitnessProcess, http: aiohttp.ClientSession
) -> None:
    # an origin it does not follow: 404
    bananas = CP5.replace("monkeys", "bananas")
    assert (await post(http, witness, body(0, [], bananas)))[0] == 404
    # the log's name and key id with a signature that fails: 403
    sig_line = CP5.split("\n\n")[1]
    raw = bytearray(base64.b64decode(sig_line.split(" ")[2]))
    raw[-1] ^= 1
    tampered = CP5.split("\n\n")[0] + "\n\n" + f"\u2014 monkeys {b64(bytes(raw))}\n"
    assert (await post(http, witness, body(0, [], tampered)))[0] == 403
    # signed by another key under the log's name: no trusted signature, 403
    other = sign_note(CP5.split("\n\n")[0] + "\n", "monkeys", Ed25519PrivateKey.generate())
    assert (await post(http, witness, body(0, [], other)))[0] == 403
    # a checkpoint of size 0 must carry the empty tree's root
    empty = sign_note("monkeys\n0\n" + b64(b"\x02" * 32) + "\n", "monkeys", monkeys_key())
    assert (await post(http, witness, body(0, [], empty)))[0] == 422
    # an unknown key's line beside the log's is ignored
    both = CP5 + other.split("\n\n")[1].replace("monkeys", "someone.else")
    assert (await post(http, witness, body(0, [], both)))[0] == 200


async def test_state_survives_restarts_and_is_kept_safely(
    tmp_path: Path, skey_file: Path, http: aiohttp.ClientSession
) -> None:
    state = tmp_path / "state"
    w = start_witness(skey_file, state, VECTORS["log_vkey"])
    try:
        assert (await post(http, w, body(0, [], CP5)))[0] == 200
        # a second witness on the same state is refused
        with pytest.raises(BaseException, match="did not start"):
            start_witness(skey_file, state, VECTORS["log_vkey"])
    finally:
        w.stop()
    origin_hash = hashlib.sha256(b"monkeys").hexdigest()
    assert (state / origin_hash).stat().st_mode & 0o777 == 0o600
    assert state.stat().st_mode & 0o777 == 0o700
    w = start_witness(skey_file, state, VECTORS["log_vkey"])
    try:
        assert (await post(http, w, body(0, [], CP8)))[:2] == (409, "5\n")
        # the monitoring retrieval: the latest cosigned checkpoint, log and witness lines
        async with http.get(f"{w.url}/{origin_hash}/checkpoint") as r:
            assert r.status == 200
            kept = await r.text()
        assert kept.startswith(CP5.split("\n\n")[0] + "\n\n\u2014 monkeys ")
        check_cosignature(
            kept.split("\n")[-2] + "\n", CP5, "witness", vkey_key(VECTORS["witness_vkey"])
        )
        async with http.get(f"{w.url}/{'0' * 64}/checkpoint") as r:
            assert r.status == 404
        # a symbolic link planted as the state file is never followed
        elsewhere = tmp_path / "elsewhere"
        elsewhere.write_text("untouched")
        (state / origin_hash).unlink()
        os.symlink(elsewhere, state / origin_hash)
        status, _, _ = await post(http, w, body(0, [], CP5))
        assert status == 500
        assert elsewhere.read_text() == "untouched"
    finally:
        w.stop()
    shutil.rmtree(state)
    os.symlink(tmp_path, state)  # nor a state directory that is a link
    with pytest.raises(BaseException, match="did not start"):
        start_witness(skey_file, state, VECTORS["log_vkey"])


async def test_racing_requests_never_roll_the_witness_back(
    witness: WitnessProcess, http: aiohttp.ClientSession
) -> None:
    """The spec's race: old 0 for size 5 and old 0 for size 8 at once: exactly one is
    cosigned, and the other learns the size the winner left."""
    answers = await asyncio.gather(
        *(post(http, witness, body(0, [], cp)) for cp in (CP5, CP8, CP5, CP8))
    )
    statuses = sorted(a[0] for a in answers)
    assert statuses == [200, 409, 409, 409]
    winner = next(cp for cp, a in zip((CP5, CP8, CP5, CP8), answers, strict=True) if a[0] == 200)
    size = winner.split("\n")[1]
    assert all(a[1] == f"{size}\n" for a in answers if a[0] == 409)


# ---- the gateway pushes its checkpoints ------------------------------------------------------


def gateway_vkey(pki: DevPki, state: Path) -> tuple[str, str]:
    """The origin and note vkey the stack's gateway signs with (signed-note, type 0x01)."""
    raw = stack_config(pki, state)
    key = serialization.load_pem_private_key(Path(raw["audit"]["note_key"]).read_bytes(), None)
    assert isinstance(key, Ed25519PrivateKey)
    origin = raw["audit"]["origin"]
    public = key.public_key().public_bytes_raw()
    kid = hashlib.sha256(origin.encode() + b"\n\x01" + public).digest()[:4]
    encoded = b64(b"\x01" + public)
    return origin, f"{origin}+{kid.hex()}+{encoded}"


def pem_key(path: Path) -> Path:
    path.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def pushes(stack: Stack, name: str, outcome: str) -> float:
    labels = {"witness": name, "outcome": outcome}
    return stack.registry.get_sample_value("proofless_witness_requests_total", labels) or 0.0


async def fill(stack: Stack, count: int) -> int:
    log = stack.gateway.audit
    first = log.tree_size
    await asyncio.gather(*(log.append(access(first + i)) for i in range(count)))
    return log.tree_size


def kept(stack: Stack, vkey: str) -> Path:
    kid = vkey.split("+")[1]
    return stack.config.audit.dir / "witnessed" / kid


async def test_the_gateway_s_checkpoints_are_cosigned_through_the_protocol(
    pki: DevPki, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    name = "witness.test/w1"
    origin, log_vkey = gateway_vkey(pki, tmp_path / "a")
    w = start_witness(pem_key(tmp_path / "w.pem"), tmp_path / "wstate", log_vkey, name=name)
    public = base64.b64decode(w.vkey.split("+", 2)[2])[1:]
    configured = {"audit": {"witnesses": [{"url": w.url, "key": w.vkey}]}}
    try:
        async with running_stack(pki, tmp_path / "a", configured) as a:
            size = await fill(a, 40)

            async def cosigned_there() -> bool:
                async with http.get(f"http://127.0.0.1:{a.gateway.ops_port}/checkpoint") as r:
                    note = await r.text()
                lines = [ln for ln in note.split("\n") if ln.startswith(f"\u2014 {name} ")]
                if not lines or int(note.split("\n")[1]) < size:
                    return False
                check_cosignature(lines[0] + "\n", note, name, public)  # from the spec
                return True

            await poll(cosigned_there, "the witness's cosignature on /checkpoint")
            assert kept(a, w.vkey).stat().st_mode & 0o777 == 0o600
            assert pushes(a, name, "cosigned") >= 1
            assert pushes(a, name, "inconsistent") == 0
            witnessed = a.registry.get_sample_value(
                "proofless_witness_cosigned_size", {"witness": name}
            )
            assert witnessed is not None
            assert witnessed >= size
            ops = f"http://127.0.0.1:{a.gateway.ops_port}/"
            rc, out = await run_cli("audit", "verify", ops, "--key", log_vkey, "--witness", w.vkey)
            assert rc == 0, out
            assert f"witness {name}: valid" in out
        audit_dir = tmp_path / "a" / "audit"
        rc, out = await run_cli(
            "audit", "verify", audit_dir, "--key", log_vkey, "--witness", w.vkey
        )
        assert rc == 0, out
        other = start_witness(pem_key(tmp_path / "o.pem"), tmp_path / "ostate", log_vkey, name="o")
        other.stop()
        rc, out = await run_cli(
            "audit", "verify", audit_dir, "--key", log_vkey, "--witness", other.vkey
        )
        assert rc == 1, out
        assert "witness o: INVALID (missing cosignature)" in out

        # restarted, the gateway carries on from the cosigned checkpoint it kept: no conflict
        async with running_stack(pki, tmp_path / "a", configured) as a:
            size = await fill(a, 10)

            async def caught_up() -> bool:
                witnessed = a.registry.get_sample_value(
                    "proofless_witness_cosigned_size", {"witness": name}
                )
                return witnessed is not None and witnessed >= size

            await poll(caught_up, "the witness cosigning the restarted log")
            assert pushes(a, name, "conflict") == 0
        async with http.get(
            f"{w.url}/{hashlib.sha256(origin.encode()).hexdigest()}/checkpoint"
        ) as r:
            held = await r.text()
        held_size, held_root = int(held.split("\n")[1]), held.split("\n")[2]
        assert held_size >= size

        # another log under the same origin and key — a fork — is refused: first the witness
        # is ahead of it (409, then no push it could accept), then its proof fails (422)
        async with running_stack(pki, tmp_path / "b", configured) as b:

            async def ahead() -> bool:
                return pushes(b, name, "ahead") >= 1

            await poll(ahead, "the fork told the witness holds a larger tree")
            assert pushes(b, name, "conflict") >= 1
            await fill(b, held_size + 5)

            async def refused() -> bool:
                return pushes(b, name, "inconsistent") >= 1

            await poll(refused, "the witness refusing the forked log (422)")
            assert pushes(b, name, "cosigned") == 0
            assert not kept(b, w.vkey).exists()
        async with http.get(
            f"{w.url}/{hashlib.sha256(origin.encode()).hexdigest()}/checkpoint"
        ) as r:
            assert (await r.text()).split("\n")[1:3] == [str(held_size), held_root]
        rc, out = await run_cli(
            "audit", "verify", tmp_path / "b" / "audit", "--key", log_vkey, "--witness", w.vkey
        )
        assert rc == 1, out
    finally:
        w.stop()


async def test_an_absent_witness_never_holds_up_the_gateway(pki: DevPki, tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    vkey = start_witness(
        pem_key(tmp_path / "w.pem"), tmp_path / "ws", VECTORS["log_vkey"], name="gone"
    )
    vkey.stop()
    configured = {"audit": {"witnesses": [{"url": dead, "key": vkey.vkey}]}}
    async with running_stack(pki, tmp_path, configured) as s:
        size = await fill(s, 50)

        async def signed_and_tried() -> bool:
            cp = s.gateway.audit.latest_checkpoint()
            return cp.size >= size and pushes(s, "gone", "error") >= 1

        await poll(signed_and_tried, "checkpoints signed while the witness is unreachable")
        assert pushes(s, "gone", "cosigned") == 0


async def test_a_log_restored_behind_its_witnessed_checkpoint_does_not_start(
    pki: DevPki, tmp_path: Path
) -> None:
    name = "witness.test/w2"
    _, log_vkey = gateway_vkey(pki, tmp_path)
    w = start_witness(pem_key(tmp_path / "w.pem"), tmp_path / "wstate", log_vkey, name=name)
    configured = {"audit": {"witnesses": [{"url": w.url, "key": w.vkey}]}}
    audit_dir, backup = tmp_path / "audit", tmp_path / "backup"
    try:
        async with running_stack(pki, tmp_path, configured) as s:
            await fill(s, 5)
        shutil.copytree(audit_dir, backup)
        async with running_stack(pki, tmp_path, configured) as s:
            size = await fill(s, 30)

            async def witnessed() -> bool:
                got = s.registry.get_sample_value(
                    "proofless_witness_cosigned_size", {"witness": name}
                )
                return got is not None and got >= size

            await poll(witnessed, "the witness cosigning the grown log")
    finally:
        w.stop()
    # the entries and checkpoints restored from the backup; the cosigned checkpoint stays
    for part in ("entries", "checkpoints", "tile"):
        shutil.rmtree(audit_dir / part)
        shutil.copytree(backup / part, audit_dir / part)
    shutil.copy2(backup / "checkpoint", audit_dir / "checkpoint")
    with pytest.raises(IntegrityError) as refused:
        async with running_stack(pki, tmp_path, configured):
            pass
    assert refused.value.reason == "AUDIT_ROLLED_BACK"
