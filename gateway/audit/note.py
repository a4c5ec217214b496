"""C2SP signed notes with Ed25519 signatures, and the tlog-checkpoint they carry. Pure.

A signed note (https://c2sp.org/signed-note) is UTF-8 text ending in a newline, a blank line,
then one signature line per key: `— <name> <base64(key id || signature)>` (U+2014 em dash).
The key id is the first 4 bytes of SHA-256(name || 0x0A || 0x01 || public key) and a verifier
key is published as `<name>+<hex key id>+<base64(0x01 || public key)>` (a "vkey").

A checkpoint (https://c2sp.org/tlog-checkpoint) is the note text
`<origin>\\n<tree size>\\n<base64 root hash>\\n[extension lines]`. The log signs with the key
named after its origin.

Witnesses cosign in the C2SP tlog-cosignature/v1 format (signature type 0x04, timestamped):
`gateway.audit.cosignature`. A cosignature is one more signature line on the same note, so
this module parses and carries it like any other; `SignedCheckpoint.open` takes any verifier
with a `require(note)` for the witnesses it must find.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.domain.errors import ConfigError, IntegrityError

ALG_ED25519 = 0x01
SIG_PREFIX = "\u2014 "  # em dash, space
MAX_SIGNATURES = 100  # as golang.org/x/mod/sumdb/note: more is a malformed note
_NAME = re.compile(r"^[^\s+]+$")
_SIZE = re.compile(r"^(0|[1-9][0-9]{0,19})$")


class NoteError(IntegrityError):
    """A signed note, checkpoint or vkey that does not parse."""

    reason = "NOTE_MALFORMED"


class SignatureError(IntegrityError):
    """A note lacks a valid signature by a required key."""

    reason = "BAD_SIGNATURE"


def _b64decode(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise NoteError(f"{what} is not valid base64") from exc


def key_id(name: str, public_key: bytes) -> bytes:
    """signed-note key id: SHA-256(name || 0x0A || 0x01 || 32-byte key)[:4]."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([ALG_ED25519]) + public_key).digest()[:4]


def _check_name(name: str) -> str:
    if not _NAME.match(name):
        raise NoteError("key name must be non-empty, without spaces or '+'")
    return name


@dataclass(frozen=True)
class NoteSignature:
    name: str
    key_id: bytes  # 4 bytes
    signature: bytes

    def line(self) -> str:
        return (
            f"{SIG_PREFIX}{self.name} {base64.b64encode(self.key_id + self.signature).decode()}\n"
        )


@dataclass(frozen=True)
class Note:
    """Text (non-empty, ending in a newline) and its signatures, in order."""

    text: str
    signatures: tuple[NoteSignature, ...] = ()

    def encode(self) -> str:
        return self.text + "\n" + "".join(s.line() for s in self.signatures)

    @classmethod
    def parse(cls, message: str | bytes) -> Note:
        """Parse strictly, as golang.org/x/mod/sumdb/note.Open does; raise NoteError."""
        if isinstance(message, bytes):
            try:
                message = message.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise NoteError("note is not UTF-8") from exc
        if any(ord(c) < 0x20 and c != "\n" for c in message):
            raise NoteError("note contains control characters")
        split = message.rfind("\n\n")
        if split < 0:
            raise NoteError("note has no signature block")
        text, block = message[: split + 1], message[split + 2 :]
        if not block.endswith("\n"):
            raise NoteError("signature block must end in a newline")
        sigs: list[NoteSignature] = []
        for line in block[:-1].split("\n"):
            if not line.startswith(SIG_PREFIX):
                raise NoteError("signature line must start with an em dash")
            parts = line[len(SIG_PREFIX) :].split(" ")
            if len(parts) != 2:
                raise NoteError("signature line must be '— name signature'")
            raw = _b64decode(parts[1], "signature")
            if len(raw) <= 4:
                raise NoteError("signature is too short")
            sigs.append(NoteSignature(_check_name(parts[0]), raw[:4], raw[4:]))
        if not sigs or len(sigs) > MAX_SIGNATURES:
            raise NoteError(f"a note carries 1 to {MAX_SIGNATURES} signatures")
        return cls(text, tuple(sigs))


@dataclass(frozen=True)
class NoteVerifier:
    name: str
    public_key: bytes  # raw 32 bytes
    key_id: bytes = field(init=False)

    def __post_init__(self) -> None:
        _check_name(self.name)
        if len(self.public_key) != 32:
            raise NoteError("an Ed25519 public key has 32 bytes")
        object.__setattr__(self, "key_id", key_id(self.name, self.public_key))

    @classmethod
    def from_vkey(cls, vkey: str) -> NoteVerifier:
        """Parse `name+hexid+base64(0x01 || key)`, checking the id against the key."""
        parts = vkey.strip().split("+", 2)  # base64 may itself hold "+"
        if len(parts) != 3 or not re.fullmatch(r"[0-9a-f]{8}", parts[1]):
            raise NoteError("vkey must be name+<8 hex digits>+<base64 key>")
        raw = _b64decode(parts[2], "vkey key")
        if len(raw) != 33 or raw[0] != ALG_ED25519:
            raise NoteError("vkey must hold an Ed25519 key (algorithm 0x01, 32 bytes)")
        verifier = cls(parts[0], raw[1:])
        if verifier.key_id.hex() != parts[1]:
            raise NoteError("vkey key id does not match its name and key")
        return verifier

    @property
    def vkey(self) -> str:
        encoded = base64.b64encode(bytes([ALG_ED25519]) + self.public_key).decode()
        return f"{self.name}+{self.key_id.hex()}+{encoded}"

    def signed(self, note: Note, *, strict: bool = False) -> bool:
        """Whether `note` carries a valid signature by this key (others are ignored).

        `strict`: a line with this key's name and id whose signature fails to verify makes
        the note malformed (SignatureError), as signed-note and tlog-witness require of a
        witness, instead of being passed over."""
        key = Ed25519PublicKey.from_public_bytes(self.public_key)
        found = False
        for sig in note.signatures:
            if sig.name == self.name and sig.key_id == self.key_id:
                try:
                    key.verify(sig.signature, note.text.encode())
                except InvalidSignature:
                    if strict:
                        raise SignatureError(
                            f"a signature by {self.name}+{self.key_id.hex()} does not verify"
                        ) from None
                    continue
                found = True
                if not strict:
                    return True
        return found

    def require(self, note: Note) -> None:
        if not self.signed(note):
            raise SignatureError(f"note has no valid signature by {self.name}+{self.key_id.hex()}")


class NoteSigner:
    """Signs note texts with an Ed25519 key under `name` (for a log: its origin)."""

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        pub = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.verifier = NoteVerifier(name, pub)

    @property
    def name(self) -> str:
        return self.verifier.name

    @property
    def vkey(self) -> str:
        return self.verifier.vkey

    @classmethod
    def from_pem(cls, name: str, pem: bytes) -> NoteSigner:
        """From a PKCS#8 PEM Ed25519 private key (unencrypted)."""
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as exc:
            raise ConfigError("note key is not an unencrypted PKCS#8 PEM private key") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError("note key must be an Ed25519 key")
        return cls(name, key)

    @classmethod
    def from_pem_file(cls, name: str, path: Path) -> NoteSigner:
        try:
            pem = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read note key {path}: {exc.strerror}") from exc
        return cls.from_pem(name, pem)

    def sign(self, note: Note | str) -> Note:
        """Add this key's signature (replacing an earlier one by the same key)."""
        if isinstance(note, str):
            note = Note(note)
        if not note.text.endswith("\n") or any(ord(c) < 0x20 and c != "\n" for c in note.text):
            raise NoteError("note text must end in a newline and have no control characters")
        sig = NoteSignature(self.name, self.verifier.key_id, self._key.sign(note.text.encode()))
        others = tuple(
            s for s in note.signatures if (s.name, s.key_id) != (self.name, self.verifier.key_id)
        )
        return Note(note.text, (*others, sig))


class NoteRequirement(Protocol):
    """A key whose signature a note must carry: a NoteVerifier, or a witness's cosignature
    verifier (gateway.audit.cosignature)."""

    def require(self, note: Note) -> object:
        """Raise SignatureError unless `note` carries a valid signature by this key."""
        ...


@dataclass(frozen=True)
class Checkpoint:
    """A tlog-checkpoint body: origin, tree size, root hash and optional extension lines."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def text(self) -> str:
        lines = [
            self.origin,
            str(self.size),
            base64.b64encode(self.root).decode(),
            *self.extensions,
        ]
        return "\n".join(lines) + "\n"

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        if not text.endswith("\n"):
            raise NoteError("checkpoint must end in a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3 or not lines[0] or any(not line for line in lines[3:]):
            raise NoteError("checkpoint must be origin, size, root hash, extension lines")
        if not _SIZE.match(lines[1]):
            raise NoteError("checkpoint tree size must be a decimal number")
        root = _b64decode(lines[2], "checkpoint root hash")
        if len(root) != 32:
            raise NoteError("checkpoint root hash must be 32 bytes")
        return cls(lines[0], int(lines[1]), root, tuple(lines[3:]))


@dataclass(frozen=True)
class SignedCheckpoint:
    """A checkpoint with the note that carries it, as published."""

    checkpoint: Checkpoint
    note: Note

    @property
    def origin(self) -> str:
        return self.checkpoint.origin

    @property
    def size(self) -> int:
        return self.checkpoint.size

    @property
    def root(self) -> bytes:
        return self.checkpoint.root

    @property
    def text(self) -> str:
        return self.note.encode()

    @classmethod
    def sign(cls, checkpoint: Checkpoint, signer: NoteSigner) -> SignedCheckpoint:
        return cls(checkpoint, signer.sign(checkpoint.text()))

    @classmethod
    def parse(cls, message: str | bytes) -> SignedCheckpoint:
        """Parse note and checkpoint strictly, without checking any signature."""
        note = Note.parse(message)
        return cls(Checkpoint.parse(note.text), note)

    @classmethod
    def open(
        cls,
        message: str | bytes,
        log_key: NoteVerifier,
        witnesses: Sequence[NoteRequirement] = (),
    ) -> SignedCheckpoint:
        """Parse and require the log's signature (key named after the origin) and each witness's."""
        signed = cls.parse(message)
        if signed.origin != log_key.name:
            raise SignatureError(f"checkpoint origin {signed.origin!r} is not the key's name")
        log_key.require(signed.note)
        for witness in witnesses:
            witness.require(signed.note)
        return signed

    def cosigned(self, signer: NoteSigner) -> SignedCheckpoint:
        return SignedCheckpoint(self.checkpoint, signer.sign(self.note))

    def with_signatures(self, *signatures: NoteSignature) -> SignedCheckpoint:
        """This checkpoint with more signature lines (each replacing an earlier line by the
        same name and key id), e.g. the cosignatures a witness answered with."""
        keys = {(s.name, s.key_id) for s in signatures}
        kept = tuple(s for s in self.note.signatures if (s.name, s.key_id) not in keys)
        return SignedCheckpoint(self.checkpoint, Note(self.note.text, (*kept, *signatures)))
