"""The gateway's side of C2SP tlog-witness: push each new checkpoint to the witnesses the
configuration names (`[audit] witnesses = [{ url = "...", key = "<witness vkey>" }]`), keep
the cosigned checkpoints they answer with, and tell rollback checks what was witnessed.

Each witness has a task of its own that follows the log's latest checkpoint: it POSTs
`<url>/add-checkpoint` with the size it believes the witness holds (`old`), a consistency
proof from there, and the checkpoint (gateway.audit.witness describes the answers). A 409
tells the witness's real size (a witness restarted, or this gateway lost its state) and the
push is retried at once from there; anything else that is not a cosignature is retried with
exponential backoff. A 422 — the witness holds a checkpoint this log's tree contradicts — and
a witness ahead of the log are logged as errors: someone rolled the log back or forked it.
Nothing here waits on a call or blocks the checkpointer: a slow or absent witness only delays
its own cosignature.

Every cosigned checkpoint received is kept, atomically and durably, as
`<log dir>/witnessed/<witness key id hex>`: the log's signed note with the witness's
cosignature added. `AuditLog.open(witnessed=witnessed_paths(dir))` refuses a log rolled back
behind any of them, `proofless audit verify --witness VKEY` finds them there, and the tiles
API serves the latest checkpoint with the cosignatures it has.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal, Protocol

import aiohttp

from gateway.audit.cosignature import CosignatureVerifier, response_cosignatures
from gateway.audit.note import NoteError, NoteVerifier, SignatureError, SignedCheckpoint
from gateway.audit.storage import prepare_directory, write_durably
from gateway.domain.errors import ConfigError, IntegrityError

log = logging.getLogger("proofless.witnessing")

WITNESSED: Final = "witnessed"
_KEY_ID_NAME = re.compile(r"[0-9a-f]{8}")
#: a witness answers with a few signature lines; more is not an answer
MAX_ANSWER_BYTES: Final = 64 << 10

Outcome = Literal["cosigned", "conflict", "inconsistent", "ahead", "refused", "error"]
OUTCOMES: Final[tuple[Outcome, ...]] = (
    "cosigned", "conflict", "inconsistent", "ahead", "refused", "error",
)  # fmt: skip


def witnessed_dir(log_dir: Path) -> Path:
    return log_dir / WITNESSED


def witnessed_paths(log_dir: Path) -> list[Path]:
    """The cosigned checkpoints kept in `log_dir`, one file per witness."""
    directory = witnessed_dir(log_dir)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if _KEY_ID_NAME.fullmatch(p.name))


def latest_cosigned_size(log_dir: Path, log_key: NoteVerifier | None = None) -> int | None:
    """The largest tree size a witness cosigned for this log, as kept in `log_dir` (None when
    none is kept). With `log_key`, only notes carrying the log's signature count."""
    sizes = []
    for path in witnessed_paths(log_dir):
        try:
            data = path.read_bytes()
            cp = (
                SignedCheckpoint.open(data, log_key)
                if log_key is not None
                else SignedCheckpoint.parse(data)
            )
        except (OSError, IntegrityError) as exc:
            log.warning("witnessed checkpoint %s unusable: %s", path.name, exc)
            continue
        sizes.append(cp.size)
    return max(sizes, default=None)


@dataclass(frozen=True)
class WitnessTarget:
    """A witness the gateway pushes to: its submission prefix and its cosignature key."""

    url: str
    verifier: CosignatureVerifier

    @classmethod
    def parse(cls, url: str, vkey: str, where: str = "[audit] witnesses") -> WitnessTarget:
        if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", url):
            raise ConfigError(f"{where}: url {url!r} must be an http:// or https:// URL")
        try:
            verifier = CosignatureVerifier.from_vkey(vkey)
        except NoteError as exc:
            raise ConfigError(f"{where}: key of {url}: {exc.message}") from exc
        return cls(url.rstrip("/"), verifier)

    @property
    def name(self) -> str:
        return self.verifier.name


class WitnessedLog(Protocol):
    """What the pusher needs of the audit log (AuditLog has it)."""

    @property
    def directory(self) -> Path: ...

    def latest_checkpoint(self) -> SignedCheckpoint: ...

    async def consistency_proof(self, first: int, second: int) -> list[bytes]: ...


#: (witness name, outcome, the size it has cosigned as far as the gateway knows)
OnOutcome = Callable[[str, Outcome, int | None], None]


@dataclass
class _Peer:
    target: WitnessTarget
    #: the size the witness holds, as far as we know (None: ask with old 0)
    size: int | None = None
    cosigned: SignedCheckpoint | None = None
    conflicts: int = 0
    path: Path = field(default=Path())


def add_checkpoint_body(old: int, proof: Sequence[bytes], checkpoint: SignedCheckpoint) -> bytes:
    """The tlog-witness add-checkpoint request body."""
    lines = [f"old {old}\n", *(base64.b64encode(h).decode() + "\n" for h in proof), "\n"]
    return ("".join(lines) + checkpoint.text).encode()


class WitnessPusher:
    """Pushes the log's checkpoints to its witnesses (see the module docstring)."""

    def __init__(
        self,
        audit: WitnessedLog,
        targets: Sequence[WitnessTarget],
        *,
        log_key: NoteVerifier,
        on_outcome: OnOutcome | None = None,
        poll_interval: float = 0.1,
        timeout: float = 10.0,
        max_backoff: float = 60.0,
    ) -> None:
        self._log = audit
        self._log_key = log_key
        self._on_outcome = on_outcome or (lambda _name, _outcome, _size: None)
        self._poll = poll_interval
        self._timeout = timeout
        self._max_backoff = max_backoff
        directory = witnessed_dir(audit.directory)
        self._peers = [_Peer(t, path=directory / t.verifier.key_id.hex()) for t in targets]
        names = [p.target.verifier.key_id for p in self._peers]
        if len(set(names)) != len(names):
            raise ConfigError("[audit] witnesses: the same witness key is named twice")

    @property
    def targets(self) -> list[WitnessTarget]:
        return [p.target for p in self._peers]

    def cosigned(self) -> dict[str, SignedCheckpoint | None]:
        """Each witness's latest cosigned checkpoint received (by witness name)."""
        return {p.target.name: p.cosigned for p in self._peers}

    def decorate(self, checkpoint: SignedCheckpoint) -> SignedCheckpoint:
        """`checkpoint` with the cosignature of every witness that cosigned exactly it."""
        lines = []
        for peer in self._peers:
            kept = peer.cosigned
            if kept is not None and (kept.size, kept.root) == (checkpoint.size, checkpoint.root):
                ours = {(peer.target.name, peer.target.verifier.key_id)}
                lines += [s for s in kept.note.signatures if (s.name, s.key_id) in ours]
        return checkpoint.with_signatures(*lines) if lines else checkpoint

    async def run(self) -> None:
        """Follow the log until cancelled: one task per witness, one HTTP session."""
        if not self._peers:
            return
        await asyncio.to_thread(self._load)
        timeout = aiohttp.ClientTimeout(total=self._timeout)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            asyncio.TaskGroup() as tasks,
        ):
            for peer in self._peers:
                tasks.create_task(self._follow(session, peer), name=f"witness-{peer.target.name}")

    def _load(self) -> None:
        """The cosigned checkpoints kept from before: where each witness was left."""
        prepare_directory(witnessed_dir(self._log.directory))
        for peer in self._peers:
            try:
                data = peer.path.read_bytes()
            except FileNotFoundError:
                continue
            try:
                kept = SignedCheckpoint.open(data, self._log_key, (peer.target.verifier,))
            except IntegrityError as exc:
                log.warning(
                    "kept cosigned checkpoint unusable (%s); asking the witness",
                    exc.reason, extra={"witness": peer.target.name},
                )  # fmt: skip
                continue
            peer.cosigned, peer.size = kept, kept.size

    async def _follow(self, session: aiohttp.ClientSession, peer: _Peer) -> None:
        backoff = 0.0
        while True:
            cp = self._log.latest_checkpoint()
            done = peer.cosigned
            if done is not None and (done.size, done.root) == (cp.size, cp.root):
                await self._next_checkpoint(cp)
                continue
            try:
                outcome = await self._push(session, peer, cp)
            except Exception:  # never let one witness's surprise stop the others
                log.exception("witness push failed", extra={"witness": peer.target.name})
                outcome = "error"
            self._on_outcome(peer.target.name, outcome, peer.size)
            if outcome == "cosigned" or (outcome == "conflict" and peer.conflicts <= 2):
                backoff = 0.0
                continue
            backoff = min(self._max_backoff, max(0.5, backoff * 2))
            jitter = random.uniform(0.75, 1.25)  # noqa: S311 -- backoff jitter, not a secret
            await asyncio.sleep(backoff * jitter)
            if outcome == "ahead":
                await self._next_checkpoint(cp)

    async def _next_checkpoint(self, cp: SignedCheckpoint) -> None:
        """Wait until the log signs a checkpoint other than `cp`."""
        while True:
            latest = self._log.latest_checkpoint()
            if (latest.size, latest.root) != (cp.size, cp.root):
                return
            await asyncio.sleep(self._poll)

    async def _push(
        self, session: aiohttp.ClientSession, peer: _Peer, cp: SignedCheckpoint
    ) -> Outcome:
        name = peer.target.name
        old = peer.size or 0
        if old > cp.size:
            log.error(
                "witness has cosigned a larger tree than this log's latest checkpoint: "
                "the log was rolled back",
                extra={"witness": name, "witnessed_size": old, "size": cp.size},
            )
            return "ahead"
        proof = await self._log.consistency_proof(old, cp.size) if 0 < old < cp.size else []
        body = add_checkpoint_body(old, proof, cp)
        try:
            async with session.post(
                peer.target.url + "/add-checkpoint",
                data=body,
                headers={"Content-Type": "text/plain; charset=utf-8"},
            ) as response:
                status = response.status
                answer = await response.content.read(MAX_ANSWER_BYTES + 1)
                content_type = response.headers.get("Content-Type", "")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.warning("witness unreachable: %s", type(exc).__name__, extra={"witness": name})
            return "error"
        if status == 200:
            return await self._cosigned(peer, cp, answer)
        if status == 409:
            return self._conflict(peer, cp, answer, content_type)
        peer.conflicts = 0
        if status == 422:
            log.error(
                "witness refuses the checkpoint as inconsistent with the one it cosigned: "
                "this log was forked or rolled back",
                extra={"witness": name, "witnessed_size": old, "size": cp.size},
            )
            return "inconsistent"
        if status in (403, 404):
            log.warning(
                "witness does not accept this log (HTTP %d): is the log's vkey configured "
                "there?", status, extra={"witness": name},
            )  # fmt: skip
            return "refused"
        log.warning("witness answered HTTP %d", status, extra={"witness": name})
        return "error"

    async def _cosigned(self, peer: _Peer, cp: SignedCheckpoint, answer: bytes) -> Outcome:
        peer.conflicts = 0
        try:
            if len(answer) > MAX_ANSWER_BYTES:
                raise NoteError("the answer is too long")
            cosig = response_cosignatures(cp, answer.decode("utf-8"), peer.target.verifier)
        except (NoteError, SignatureError, UnicodeDecodeError) as exc:
            log.warning("witness answer is not its cosignature: %s", exc,
                        extra={"witness": peer.target.name})  # fmt: skip
            return "error"
        kept = cp.with_signatures(cosig.note_signature())
        await asyncio.to_thread(write_durably, peer.path, kept.text.encode())
        peer.cosigned, peer.size = kept, cp.size
        return "cosigned"

    def _conflict(
        self, peer: _Peer, cp: SignedCheckpoint, answer: bytes, content_type: str
    ) -> Outcome:
        peer.conflicts += 1
        m = re.fullmatch(rb"(0|[1-9][0-9]{0,19})\n", answer)
        if not content_type.startswith("text/x.tlog.size") or m is None:
            log.warning(
                "witness answered 409 without its size", extra={"witness": peer.target.name}
            )
            return "error"
        peer.size = int(m.group(1))
        log.info(
            "witness holds another size; pushing from there",
            extra={"witness": peer.target.name, "witnessed_size": peer.size, "size": cp.size},
        )
        return "conflict"


async def stop(task: asyncio.Task[None] | None) -> None:
    """Cancel a pusher's task and wait for it."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
