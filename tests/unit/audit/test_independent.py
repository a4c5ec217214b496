"""Our checkpoints and proofs checked by a from-scratch verifier written from the specs alone
(C2SP signed-note and tlog-checkpoint, RFC 9162 §2.1), sharing no code with gateway.audit:
only `cryptography`'s Ed25519, hashlib and base64."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from tests.support.auditlog import access, open_log


def parse_vkey(vkey: str) -> tuple[str, bytes, bytes]:
    """signed-note: `<name>+<hex key id>+<base64(0x01 || 32-byte Ed25519 key)>`."""
    name, hexid, b64 = vkey.split("+", 2)
    raw = base64.b64decode(b64)
    assert raw[0] == 0x01  # Ed25519
    assert len(raw) == 33
    key_id = hashlib.sha256(name.encode() + b"\x0a" + raw).digest()[:4]  # name \n 0x01 key
    assert key_id.hex() == hexid
    return name, key_id, raw[1:]


def open_note(note: str, vkey: str) -> str:
    """The note text if a signature line `— <name> <base64(key id || sig)>` by vkey verifies."""
    name, key_id, public = parse_vkey(vkey)
    text, _, block = note.rpartition("\n\n")
    text += "\n"
    for line in block.splitlines():
        assert line.startswith("\u2014 ")
        signer, b64 = line[2:].split(" ")
        raw = base64.b64decode(b64)
        if signer == name and raw[:4] == key_id:
            Ed25519PublicKey.from_public_bytes(public).verify(raw[4:], text.encode())
            return text
    raise AssertionError("no signature by the vkey")


def mth(leaves: list[bytes]) -> bytes:
    """RFC 9162 §2.1.1, recursively."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + mth(leaves[:k]) + mth(leaves[k:])).digest()


def root_from_path(m: int, n: int, leaf: bytes, path: list[bytes]) -> bytes:
    """RFC 9162 §2.1.3.2 inclusion verification, step by step."""
    fn, sn, r = m, n - 1, hashlib.sha256(b"\x00" + leaf).digest()
    for p in path:
        assert sn != 0
        if fn & 1 or fn == sn:
            r = hashlib.sha256(b"\x01" + p + r).digest()
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = hashlib.sha256(b"\x01" + r + p).digest()
        fn >>= 1
        sn >>= 1
    assert sn == 0
    return r


def test_checkpoint_and_proofs_check_out_independently(
    tmp_path: Path, note_key: Ed25519PrivateKey
) -> None:
    async def scenario() -> tuple[str, str, list[bytes], dict[int, list[bytes]]]:
        log = await open_log(tmp_path, note_key)
        for i in range(37):
            await log.append(access(i))
        await log.close()
        log = await open_log(tmp_path, note_key)  # a checkpoint of all 37 is signed at close
        cp = log.latest_checkpoint()
        leaves = await log.entries(0, cp.size)
        proofs = {i: await log.inclusion_proof(i, cp.size) for i in (0, 5, 31, 32, 36)}
        await log.close()
        return log.vkey, cp.text, leaves, proofs

    vkey, note, leaves, proofs = asyncio.run(scenario())
    origin, size, root_b64, *extensions = open_note(note, vkey).splitlines()
    assert origin == vkey.split("+")[0]
    assert extensions == []
    size_n, root = int(size), base64.b64decode(root_b64)
    assert size_n == len(leaves) == 37
    assert [json.loads(x)["index"] for x in leaves] == list(range(37))
    assert mth(leaves) == root
    for i, path in proofs.items():
        assert root_from_path(i, size_n, leaves[i], path) == root
