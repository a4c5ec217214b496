"""A transparency-log witness speaking C2SP tlog-witness (`proofless audit witness serve`).

https://c2sp.org/tlog-witness: a log POSTs `<prefix>/add-checkpoint` with a body of

    old <size>\\n
    <base64 hash>\\n        (a consistency proof from <size>, at most 63 lines)
    \\n
    <checkpoint note>

and the witness answers, in the spec's order of checks:

- 400 a body that does not parse, or an old size larger than the checkpoint's;
- 404 an origin it does not know; 403 no valid signature by a key it trusts for that origin,
  or a line with a trusted key's name and id whose signature fails;
- 409 the old size is not the size it last cosigned for the origin (0 if never): the body is
  that size and a newline, `Content-Type: text/x.tlog.size`;
- 422 a size-0 checkpoint whose root is not the empty tree's, a proof given from size 0, a
  proof that does not verify (RFC 6962 §2.1.2), or the same size with another root;
- 200 otherwise: the checkpoint is stored as this origin's latest cosigned state (before
  answering, atomically with the check of the old size) and the answer is its cosignature
  line in the tlog-cosignature/v1 format.

`GET <prefix>/<hex SHA-256 of the origin>/checkpoint` serves the latest cosigned checkpoint
(the log's signature and the witness's cosignature), 404 if there is none: the spec's
monitoring retrieval.

State: one file per origin, named by the hex SHA-256 of the origin, in a directory of its own
(0700). It is read and replaced only through a descriptor of that directory opened without
following a symbolic link: a file is replaced by writing a fresh temporary name (O_EXCL |
O_NOFOLLOW), fsync, rename over the old name, fsync the directory; a state file that is a
symbolic link is refused. A lock file keeps a second witness process off the same directory.
Checks and updates of one origin run under one lock, so two racing requests cannot roll the
stored size back (the race the spec describes).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import fcntl
import hashlib
import logging
import os
import re
import stat
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from aiohttp import web

from gateway.audit import merkle
from gateway.audit.cosignature import Cosigner
from gateway.audit.note import (
    Checkpoint,
    Note,
    NoteError,
    NoteVerifier,
    SignatureError,
    SignedCheckpoint,
)
from gateway.audit.storage import write_durably_at
from gateway.audit.tiles import TileTree
from gateway.audit.witnessing import add_checkpoint_body
from gateway.domain.errors import ConfigError, IntegrityError

log = logging.getLogger("proofless.witness")

ADD_CHECKPOINT: Final = "/add-checkpoint"
SIZE_CONTENT_TYPE: Final = "text/x.tlog.size"
#: as transparency-dev/witness: a checkpoint with its signatures and 63 proof lines fit
MAX_BODY_BYTES: Final = 16 << 10
MAX_PROOF_LINES: Final = 63
LOCK_FILE: Final = ".lock"
_OLD = re.compile(rb"old (0|[1-9][0-9]{0,19})")
_ORIGIN_HASH = re.compile(r"[0-9a-f]{64}")
FILE_MODE: Final = 0o600


class BadRequest(ValueError):
    """An add-checkpoint body that does not follow the spec (400)."""


@dataclass(frozen=True)
class AddCheckpoint:
    old: int
    proof: list[bytes]
    checkpoint: bytes


def parse_add_checkpoint(body: bytes) -> AddCheckpoint:
    """The old size, proof hashes and checkpoint of an add-checkpoint body; BadRequest if it
    is not one."""
    head, sep, rest = body.partition(b"\n")
    m = _OLD.fullmatch(head)
    if not sep or m is None or int(m.group(1)) >= 1 << 64:
        raise BadRequest("the first line must be `old <size>`")
    proof: list[bytes] = []
    while True:
        line, sep, rest = rest.partition(b"\n")
        if not sep:
            raise BadRequest("the proof must end in an empty line")
        if not line:
            break
        if len(proof) == MAX_PROOF_LINES:
            raise BadRequest(f"at most {MAX_PROOF_LINES} consistency proof lines")
        try:
            digest = base64.b64decode(line, validate=True)
        except binascii.Error:
            raise BadRequest("a proof line must be one base64 hash") from None
        if len(digest) != merkle.HASH_SIZE:
            raise BadRequest("a proof line must be one base64 SHA-256 hash")
        proof.append(digest)
    return AddCheckpoint(int(m.group(1)), proof, rest)


def origin_hash(origin: str) -> str:
    """The origin's name in the monitoring path and the state directory: hex SHA-256."""
    return hashlib.sha256(origin.encode()).hexdigest()


class WitnessState:
    """The latest cosigned checkpoint per origin, in files of one directory (see module)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        try:
            st = os.lstat(directory)
        except FileNotFoundError:
            directory.mkdir(mode=0o700, parents=True)
        else:
            if stat.S_ISLNK(st.st_mode):
                raise ConfigError(f"{directory}: the witness state directory is a symbolic link")
        try:
            self._dir = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError as exc:
            raise ConfigError(f"{directory}: cannot open the state directory: {exc}") from exc
        os.fchmod(self._dir, stat.S_IMODE(os.fstat(self._dir).st_mode) & ~0o077)
        try:
            self._lock = os.open(
                LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, FILE_MODE, dir_fd=self._dir
            )
        except OSError as exc:
            os.close(self._dir)
            raise ConfigError(f"{directory}: cannot open the state lock: {exc}") from exc
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.close()
            raise ConfigError(f"{directory}: another witness is using this state") from None

    def close(self) -> None:
        for fd in (self._lock, self._dir):
            with contextlib.suppress(OSError):
                os.close(fd)

    def read(self, name: str) -> bytes | None:
        """The bytes of state file `name` (an origin hash), or None; a link is refused."""
        if not _ORIGIN_HASH.fullmatch(name):
            return None
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=self._dir)
        except FileNotFoundError:
            return None
        except OSError as exc:  # ELOOP: a symbolic link planted there
            raise IntegrityError(
                f"witness state {name} cannot be read safely: {exc.strerror}",
                reason="SYMLINK_REFUSED",
            ) from exc
        with os.fdopen(fd, "rb") as f:
            return f.read()

    def load(self, origin: str) -> SignedCheckpoint | None:
        data = self.read(origin_hash(origin))
        if data is None:
            return None
        stored = SignedCheckpoint.parse(data)  # the state is trusted: written only here
        if stored.origin != origin:
            raise IntegrityError(f"witness state for {origin!r} holds another origin")
        return stored

    def store(self, cp: SignedCheckpoint) -> None:
        """Replace the origin's state durably and atomically (see the module docstring)."""
        name = origin_hash(cp.origin)
        write_durably_at(self._dir, name, cp.text.encode(), f"witness state {name}")


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"


def _refused(status: int, why: str) -> Answer:
    return Answer(status, why.encode() + b"\n")


class Witness:
    """Checks add-checkpoint requests against the logs it knows and cosigns (see module)."""

    def __init__(
        self,
        cosigner: Cosigner,
        logs: Sequence[NoteVerifier],
        state: WitnessState,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not logs:
            raise ConfigError("a witness needs the key of at least one log (--log-key)")
        self.cosigner = cosigner
        self.state = state
        self._logs: dict[str, list[NoteVerifier]] = {}
        for key in logs:
            self._logs.setdefault(key.name, []).append(key)
        self._locks = {origin: asyncio.Lock() for origin in self._logs}
        self._clock = clock

    @property
    def origins(self) -> list[str]:
        return sorted(self._logs)

    async def add_checkpoint(self, body: bytes) -> Answer:
        try:
            request = parse_add_checkpoint(body)
            note = Note.parse(request.checkpoint)
            cp = Checkpoint.parse(note.text)
        except (BadRequest, NoteError) as exc:
            return _refused(400, str(exc))
        keys = self._logs.get(cp.origin)
        if keys is None:
            return _refused(404, "unknown log origin")
        trusted = []
        try:
            for key in keys:
                if key.signed(note, strict=True):
                    trusted.append(key)
        except SignatureError:
            log.warning("a bad signature by a trusted key", extra={"origin": cp.origin})
            return _refused(403, "a signature by the log's key does not verify")
        if not trusted:
            return _refused(403, "no signature by a key this witness trusts for the origin")
        if request.old > cp.size:
            return _refused(400, "the old size is larger than the checkpoint's")
        async with self._locks[cp.origin]:
            return await self._update(cp, note, request, trusted)

    async def _update(
        self, cp: Checkpoint, note: Note, request: AddCheckpoint, trusted: list[NoteVerifier]
    ) -> Answer:
        stored = await asyncio.to_thread(self.state.load, cp.origin)
        size = stored.size if stored is not None else 0
        if request.old != size:
            return Answer(409, f"{size}\n".encode(), SIZE_CONTENT_TYPE)
        why = self._inconsistency(cp, request, stored)
        if why is not None:
            log.error(
                "checkpoint refused: %s", why,
                extra={"origin": cp.origin, "size": cp.size, "witnessed_size": size},
            )  # fmt: skip
            return _refused(422, why)
        timestamp = int(self._clock())
        if stored is not None:  # never a cosignature dated before the previous one
            ours = self.cosigner.verifier.cosignatures(stored.note)
            timestamp = max([timestamp, *(c.timestamp for c in ours)])
        cosig = self.cosigner.cosign(note.text, timestamp)
        log_lines = tuple(
            s
            for s in note.signatures
            if any((s.name, s.key_id) == (k.name, k.key_id) for k in trusted)
        )
        kept = SignedCheckpoint(cp, Note(note.text, (*log_lines, cosig.note_signature())))
        await asyncio.to_thread(self.state.store, kept)
        log.info("cosigned", extra={"origin": cp.origin, "size": cp.size, "old": size})
        return Answer(200, cosig.line().encode())

    @staticmethod
    def _inconsistency(
        cp: Checkpoint, request: AddCheckpoint, stored: SignedCheckpoint | None
    ) -> str | None:
        if cp.size == 0 and cp.root != merkle.EMPTY_ROOT:
            return "a checkpoint of size 0 must have the empty tree's root"
        if request.old == 0:
            return "a proof from size 0 must be empty" if request.proof else None
        assert stored is not None  # old == the stored size > 0
        if request.old == cp.size:
            if request.proof or cp.root != stored.root:
                return "the same size with another root"
            return None
        try:
            merkle.verify_consistency(request.old, cp.size, request.proof, stored.root, cp.root)
        except merkle.ConsistencyProofError:
            return "the consistency proof does not verify"
        return None

    def latest(self, name: str) -> bytes | None:
        """The stored cosigned checkpoint of the origin whose hash is `name`, or None."""
        return self.state.read(name)


def _answer(answer: Answer) -> web.Response:
    response = web.Response(status=answer.status, body=answer.body)
    response.headers["Content-Type"] = answer.content_type
    response.headers["Cache-Control"] = "no-store"
    return response


def witness_app(witness: Witness) -> web.Application:
    """The witness's HTTP interface: add-checkpoint and the monitoring checkpoint."""

    async def add_checkpoint(request: web.Request) -> web.Response:
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _answer(_refused(413, "the body is too large"))
        return _answer(await witness.add_checkpoint(body))

    async def checkpoint(request: web.Request) -> web.Response:
        data = await asyncio.to_thread(witness.latest, request.match_info["origin_hash"])
        if data is None:
            return _answer(_refused(404, "this witness has cosigned no checkpoint of that log"))
        return _answer(Answer(200, data))

    app = web.Application(
        client_max_size=MAX_BODY_BYTES,
        handler_args={"max_line_size": 4096, "max_field_size": 4096, "access_log": None},
    )
    app.router.add_post(ADD_CHECKPOINT, add_checkpoint)
    app.router.add_get("/{origin_hash:[0-9a-f]{64}}/checkpoint", checkpoint)
    return app


async def serve(
    witness: Witness, host: str, port: int, *, ready: Callable[[int], None], stop: asyncio.Event
) -> None:
    """Serve until `stop` is set; `ready(port)` once listening (port 0 picks a free one)."""
    runner = web.AppRunner(witness_app(witness))
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        ready(int(runner.addresses[0][1]))
        await stop.wait()
    finally:
        await runner.cleanup()


async def witness_log_directory(
    witness: Witness, directory: Path, checkpoint: bytes
) -> tuple[Answer, SignedCheckpoint | None]:
    """Submit `checkpoint` (a note) to `witness` as its log would, with a consistency proof
    from the size the witness holds built from the log directory's hash tiles: the offline
    `proofless audit witness cosign`. The cosigned checkpoint when the witness agrees."""
    try:
        signed = SignedCheckpoint.parse(checkpoint)
    except NoteError as exc:
        return _refused(400, exc.message), None
    stored = await asyncio.to_thread(witness.state.load, signed.origin)
    old = stored.size if stored is not None else 0
    if old > signed.size:
        why = f"checkpoint {signed.size} is older than the cosigned {old} (rollback)"
        return _refused(400, why), None
    proof: list[bytes] = []
    if 0 < old < signed.size:
        tiles = TileTree(directory)
        tiles.size = signed.size
        proof = merkle.consistency_proof(old, signed.size, tiles.read_node)
    answer = await witness.add_checkpoint(add_checkpoint_body(old, proof, signed))
    if answer.status != 200:
        return answer, None
    note = Note.parse(signed.note.encode() + answer.body.decode())
    return answer, SignedCheckpoint(signed.checkpoint, note)
