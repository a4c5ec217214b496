"""The audit log read over HTTP as C2SP tlog-tiles, by a client written from the specs.

The client below shares no code with gateway.audit: tile paths, partial widths, entry
bundles (tlog-tiles), note signatures (signed-note), checkpoints (tlog-checkpoint), and
Merkle hashes, inclusion and consistency proofs built from the tiles and verified step by
step (RFC 9162 §2.1) are all written here from the documents. It reads a running gateway:
checkpoint and hash tiles on the public ops port, entry bundles over mutual TLS on
`[audit] tiles_listen` with an auditor's certificate. Then `proofless audit verify URL`,
run as a process, checks the same log, across two checkpoints and against a forged one.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import ssl
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
import yarl
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.devtools.pki import DevPki
from tests.support.auditlog import access
from tests.support.stack import Stack, poll, running_stack

pytestmark = pytest.mark.asyncio(loop_scope="module")
ROOT = Path(__file__).resolve().parents[2]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def stack(pki: DevPki, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    overrides = {"audit": {"tiles_listen": "127.0.0.1:0", "checkpoint_every_ms": 100}}
    async with running_stack(pki, tmp_path_factory.mktemp("state"), overrides) as s:
        yield s


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


# ---- the specs, independently ----------------------------------------------------------------


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def node(left: bytes, right: bytes) -> bytes:
    return sha256(b"\x01" + left + right)


def tile_path(level: str, n: int, width: int) -> str:
    """tlog-tiles: `tile/<L>/<N>[.p/<W>]`, N in 3-digit groups, all but the last `x`-led."""
    groups = [f"{n % 1000:03d}"]
    while n >= 1000:
        n //= 1000
        groups.insert(0, f"x{n % 1000:03d}")
    path = f"tile/{level}/" + "/".join(groups)
    return path if width == 256 else f"{path}.p/{width}"


def open_note(note: str, vkey: str) -> tuple[str, int, bytes]:
    """signed-note + tlog-checkpoint: (origin, size, root) if the vkey's signature verifies."""
    name, hexid, b64 = vkey.split("+", 2)
    raw = base64.b64decode(b64)
    assert raw[0] == 1
    kid = sha256(name.encode() + b"\n" + raw)[:4]
    assert kid.hex() == hexid
    text, _, block = note.rpartition("\n\n")
    text += "\n"
    for line in block.splitlines():
        signer, sig = line.removeprefix("\u2014 ").split(" ")
        sig_raw = base64.b64decode(sig)
        if signer == name and sig_raw[:4] == kid:
            Ed25519PublicKey.from_public_bytes(raw[1:]).verify(sig_raw[4:], text.encode())
            origin, size, root = text.split("\n")[:3]
            return origin, int(size), base64.b64decode(root)
    raise AssertionError("no signature by the log's key")


class TileClient:
    """Reads the tree of `size` from its tiles and builds RFC 9162 proofs from them."""

    def __init__(self, http: aiohttp.ClientSession, base: str, size: int) -> None:
        self.http, self.base, self.size = http, base, size
        self.tiles: dict[tuple[int, int], list[bytes]] = {}

    def width(self, level: int, n: int) -> int:
        return min(256, (self.size >> (8 * level)) - n * 256)

    async def tile(self, level: int, n: int) -> list[bytes]:
        if (level, n) not in self.tiles:
            width = self.width(level, n)
            async with self.http.get(self.base + tile_path(str(level), n, width)) as r:
                assert r.status == 200, await r.text()
                data = await r.read()
            assert len(data) == 32 * width
            self.tiles[(level, n)] = [data[i : i + 32] for i in range(0, len(data), 32)]
        return self.tiles[(level, n)]

    async def perfect(self, height: int, index: int) -> bytes:
        """MTH of the 2**height leaves from index * 2**height: 2**(height % 8) hashes of one
        tile, hashed up."""
        level, sub = divmod(height, 8)
        first = index << sub
        hashes = (await self.tile(level, first // 256))[first % 256 : first % 256 + (1 << sub)]
        while len(hashes) > 1:
            hashes = [node(a, b) for a, b in zip(hashes[::2], hashes[1::2], strict=True)]
        return hashes[0]

    async def mth(self, lo: int, hi: int) -> bytes:
        """RFC 9162 §2.1.1 MTH(D[lo:hi]), the recursion reaching perfect subtrees."""
        n = hi - lo
        if n == 0:
            return sha256(b"")
        if n & (n - 1) == 0 and lo % n == 0:
            return await self.perfect(n.bit_length() - 1, lo // n)
        k = 1 << ((n - 1).bit_length() - 1)
        return node(await self.mth(lo, lo + k), await self.mth(lo + k, hi))

    async def path(self, m: int, lo: int, hi: int) -> list[bytes]:
        """RFC 9162 §2.1.3.1 PATH(m, D[lo:hi])."""
        n = hi - lo
        if n == 1:
            return []
        k = 1 << ((n - 1).bit_length() - 1)
        if m < k:
            return [*await self.path(m, lo, lo + k), await self.mth(lo + k, hi)]
        return [*await self.path(m - k, lo + k, hi), await self.mth(lo, lo + k)]

    async def subproof(self, m: int, lo: int, hi: int, b: bool) -> list[bytes]:
        """RFC 9162 §2.1.4.1 SUBPROOF(m, D[lo:hi], b)."""
        n = hi - lo
        if m == n:
            return [] if b else [await self.mth(lo, hi)]
        k = 1 << ((n - 1).bit_length() - 1)
        if m <= k:
            return [*await self.subproof(m, lo, lo + k, b), await self.mth(lo + k, hi)]
        return [*await self.subproof(m - k, lo + k, hi, False), await self.mth(lo, lo + k)]


def root_from_inclusion(m: int, n: int, leaf_hash: bytes, path: list[bytes]) -> bytes:
    """RFC 9162 §2.1.3.2."""
    fn, sn, r = m, n - 1, leaf_hash
    for p in path:
        assert sn != 0
        if fn & 1 or fn == sn:
            r = node(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node(r, p)
        fn >>= 1
        sn >>= 1
    assert sn == 0
    return r


def verify_consistency(m: int, n: int, proof: list[bytes], first: bytes, second: bytes) -> None:
    """RFC 9162 §2.1.4.2, 0 < m < n."""
    path = [first, *proof] if m & (m - 1) == 0 else list(proof)
    fn, sn = m - 1, n - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        assert sn != 0
        if fn & 1 or fn == sn:
            fr, sr = node(c, fr), node(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node(sr, c)
        fn >>= 1
        sn >>= 1
    assert sn == 0
    assert fr == first
    assert sr == second


def parse_bundle(data: bytes) -> list[bytes]:
    """tlog-tiles entry bundle: big-endian uint16 length-prefixed entries."""
    out, i = [], 0
    while i < len(data):
        n = int.from_bytes(data[i : i + 2], "big")
        out.append(data[i + 2 : i + 2 + n])
        i += 2 + n
    assert i == len(data)
    return out


def client_ssl(pki: DevPki, caller: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca_pem))
    if caller is not None:
        ctx.load_cert_chain(pki.client_pem(caller), pki.client_key(caller))
    return ctx


# ---- helpers -----------------------------------------------------------------------------


def public(stack: Stack) -> str:
    return f"http://127.0.0.1:{stack.gateway.ops_port}/"


def tiles_url(stack: Stack) -> str:
    return f"https://127.0.0.1:{stack.gateway.tiles_port}/"


async def grow(stack: Stack, http: aiohttp.ClientSession, count: int) -> tuple[str, int, bytes]:
    """Append `count` entries; the first published checkpoint that covers them."""
    log = stack.gateway.audit
    first = log.tree_size
    await asyncio.gather(*(log.append(access(first + i)) for i in range(count)))
    target = log.tree_size
    seen: list[str] = []

    async def covered() -> bool:
        async with http.get(public(stack) + "checkpoint") as r:
            seen[:] = [await r.text()]
        return open_note(seen[0], log.vkey)[1] >= target

    await poll(covered, f"a checkpoint of {target}")
    return seen[0], *open_note(seen[0], log.vkey)[1:]


async def proofless(*args: str | Path) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", *map(str, args), cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


# ---- the tests -------------------------------------------------------------------------------


async def test_a_spec_client_checks_consistency_and_inclusion_over_http(
    stack: Stack, http: aiohttp.ClientSession, pki: DevPki
) -> None:
    note1, size1, root1 = await grow(stack, http, 300)
    assert note1.startswith(stack.gateway.audit.origin + "\n")
    async with http.get(public(stack) + "checkpoint") as r:
        assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert r.headers["Cache-Control"] == "public, max-age=2"
    t1 = TileClient(http, public(stack), size1)
    assert await t1.mth(0, size1) == root1

    _, size2, root2 = await grow(stack, http, 400)
    assert size2 > size1 + 256  # a new full level-0 tile, a partial one, a level-1 tile
    t2 = TileClient(http, public(stack), size2)
    assert await t2.mth(0, size2) == root2
    proof = await t2.subproof(size1, 0, size2, True)
    verify_consistency(size1, size2, proof, root1, root2)
    with pytest.raises(AssertionError):  # the proof does not connect another first root
        verify_consistency(size1, size2, proof, sha256(b"forged"), root2)
    async with http.get(public(stack) + tile_path("0", 0, 256)) as r:
        assert r.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert r.headers["Content-Type"] == "application/octet-stream"

    # the entries, over mutual TLS with an auditor's certificate: each hashes to its leaf,
    # and an inclusion proof built from the tiles leads to the signed root
    auditor = client_ssl(pki, "auditor")
    index = size1 - 1
    n = index // 256
    width = min(256, size2 - n * 256)
    async with http.get(tiles_url(stack) + tile_path("entries", n, width), ssl=auditor) as r:
        assert r.status == 200
        assert r.headers["Content-Type"] == "application/octet-stream"
        assert "private" in r.headers["Cache-Control"]
        entries = parse_bundle(await r.read())
    assert len(entries) == width
    leaves = await t2.tile(0, n)
    assert [sha256(b"\x00" + e) for e in entries] == leaves
    assert b'"index":%d' % index in entries[index % 256]
    path = await t2.path(index, 0, size2)
    assert root_from_inclusion(index, size2, sha256(b"\x00" + entries[index % 256]), path) == root2
    # the listener serves the public resources too, to any certificate of the CA
    async with http.get(
        tiles_url(stack) + "checkpoint", ssl=client_ssl(pki, "quangang-window")
    ) as r:
        assert open_note(await r.text(), stack.gateway.audit.vkey)[1] >= size2


async def test_entries_are_for_auditors_only(
    stack: Stack, http: aiohttp.ClientSession, pki: DevPki
) -> None:
    bundle = tile_path("entries", 0, 256)
    async with http.get(public(stack) + bundle) as r:
        assert r.status == 403  # the public port never serves entries
        assert b'"caller"' not in await r.read()
    async with http.get(tiles_url(stack) + bundle, ssl=client_ssl(pki, "quangang-window")) as r:
        assert r.status == 403  # a certificate of the CA, but not an auditor
        assert "auditor" in await r.text()
    with pytest.raises(aiohttp.ClientError):  # no client certificate: no TLS session
        async with http.get(tiles_url(stack) + bundle, ssl=client_ssl(pki, None)) as r:
            await r.read()


async def test_only_the_published_tree_is_served(stack: Stack, http: aiohttp.ClientSession) -> None:
    async with http.get(public(stack) + "checkpoint") as r:
        size = open_note(await r.text(), stack.gateway.audit.vkey)[1]
    beyond = size // 256 + 1
    for path in [
        tile_path("0", beyond, 256),  # past the tree
        tile_path("0", size // 256, min(255, size % 256 + 1)),  # wider than published
        "tile/0/x000/000",  # another spelling of tile 0
        "tile/00/000",
        "tile/0/000.p/256",
        "tile/../checkpoint",
        "tile/0/%2e%2e/%2e%2e/checkpoint",
    ]:
        # sent as written (the client would fold "..")
        async with http.get(yarl.URL(public(stack) + path, encoded=True)) as r:
            assert r.status == 404, path
    async with http.post(public(stack) + "checkpoint", data=b"x") as r:
        assert r.status == 405


async def test_proofless_audit_verify_reads_the_log_by_url(
    stack: Stack, http: aiohttp.ClientSession, pki: DevPki, tmp_path: Path
) -> None:
    vkey = stack.gateway.audit.vkey
    await grow(stack, http, 10)
    saved = tmp_path / "seen.cp"
    rc, out = await proofless("audit", "verify", public(stack), "--key", vkey, "--out", saved)
    assert rc == 0, out
    assert "tiles: valid" in out
    assert "VALID" in out.splitlines()[-1]
    _, seen_size, _ = open_note(saved.read_text(), vkey)

    await grow(stack, http, 300)
    rc, out = await proofless(
        "audit", "verify", public(stack), "--key", vkey, "--checkpoint", saved
    )
    assert rc == 0, out
    assert f"of {seen_size}: valid" in out

    # a checkpoint the log signed for another tree at that size: a fork, INVALID
    key = serialization.load_pem_private_key(stack.config.audit.note_key.read_bytes(), None)
    assert isinstance(key, Ed25519PrivateKey)
    origin = stack.gateway.audit.origin
    text = f"{origin}\n{seen_size}\n{base64.b64encode(sha256(b'fork')).decode()}\n"
    kid = sha256(origin.encode() + b"\n" + base64.b64decode(vkey.split("+", 2)[2]))[:4]
    forged = tmp_path / "forged.cp"
    forged.write_text(
        f"{text}\n\u2014 {origin} {base64.b64encode(kid + key.sign(text.encode())).decode()}\n"
    )
    rc, out = await proofless(
        "audit", "verify", public(stack), "--key", vkey, "--checkpoint", forged
    )
    assert rc == 1, out
    assert "INVALID (inconsistent checkpoint)" in out

    # the whole log, entries included, from the tiles listener with an auditor's certificate
    rc, out = await proofless(
        "audit", "verify", tiles_url(stack), "--key", vkey, "--ca", pki.ca_pem,
        "--cert", pki.client_pem("auditor"), "--cert-key", pki.client_key("auditor"),
    )  # fmt: skip
    assert rc == 0, out
    assert "entries: valid" in out
    # another caller's certificate: the entries are refused, and the run says so
    rc, out = await proofless(
        "audit", "verify", tiles_url(stack), "--key", vkey, "--ca", pki.ca_pem,
        "--cert", pki.client_pem("quangang-window"),
        "--cert-key", pki.client_key("quangang-window"),
    )  # fmt: skip
    assert rc == 1, out
    assert "HTTP 403" in out
