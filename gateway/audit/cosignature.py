"""Witness cosignatures in the C2SP tlog-cosignature/v1 format (Ed25519). Pure.

https://c2sp.org/tlog-cosignature: a cosignature is a signed-note signature line on the
log's checkpoint, `— <witness name> base64(key id || timestamp || signature)`, where

- the key id is SHA-256(name || 0x0A || 0x04 || 32-byte Ed25519 key)[:4] — signature type
  0x04, "timestamped Ed25519 checkpoint cosignature", never the 0x01 of plain notes;
- the timestamp is a big-endian u64 of POSIX seconds (at most 2^63 - 1);
- the Ed25519 signature covers `cosignature/v1\\ntime <timestamp>\\n` followed by the whole
  checkpoint note text (extension lines included, signature lines not).

Semantically: "as of <timestamp>, the largest consistent tree this witness has seen for the
log of this origin has this root". A witness's verifier key is published as a vkey with type
0x04 (`name+<hex key id>+base64(0x04 || key)`); like transparency-dev/formats
(NewVerifierForCosignatureV1) a plain 0x01 vkey of the same key is accepted too and read as
the cosignature key it names.

Checked against the published vectors in tests/vectors/tlog-cosignature (a cosigned
checkpoint of the public witness network, the spec's example, transparency-dev/formats).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.audit.note import (
    ALG_ED25519,
    Checkpoint,
    Note,
    NoteError,
    NoteSignature,
    SignatureError,
    SignedCheckpoint,
    key_id,
)
from gateway.domain.errors import ConfigError

#: signed-note signature type of timestamped Ed25519 checkpoint cosignatures
ALG_COSIGNATURE_V1 = 0x04
HEADER = "cosignature/v1\n"
MAX_TIMESTAMP = (1 << 63) - 1
TIMESTAMP_BYTES = 8
SIGNATURE_BYTES = TIMESTAMP_BYTES + 64
_NAME = re.compile(r"^[^\s+]+$")


def cosignature_key_id(name: str, public_key: bytes) -> bytes:
    """tlog-cosignature: SHA-256(name || 0x0A || 0x04 || 32-byte Ed25519 key)[:4]."""
    return hashlib.sha256(
        name.encode() + b"\n" + bytes([ALG_COSIGNATURE_V1]) + public_key
    ).digest()[:4]


def signed_message(timestamp: int, text: str) -> bytes:
    """What the Ed25519 signature covers: `cosignature/v1`, `time <t>`, then the note text."""
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise NoteError("a cosignature timestamp is between 0 and 2^63 - 1")
    Checkpoint.parse(text)  # a cosignature is over a checkpoint (three lines at least)
    return f"{HEADER}time {timestamp}\n{text}".encode()


def _b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise NoteError(f"{what} is not valid base64") from exc


@dataclass(frozen=True)
class Cosignature:
    """One witness's cosignature line: who, when, and the signature."""

    name: str
    key_id: bytes
    timestamp: int
    signature: bytes  # 64 bytes of Ed25519

    @classmethod
    def of(cls, line: NoteSignature) -> Cosignature:
        """Read a note signature line as a cosignature (NoteError if it cannot be one)."""
        raw = line.signature
        if len(raw) != SIGNATURE_BYTES:
            raise NoteError("a cosignature/v1 signature is 8 + 64 bytes")
        timestamp = int.from_bytes(raw[:TIMESTAMP_BYTES], "big")
        if timestamp > MAX_TIMESTAMP:
            raise NoteError("a cosignature timestamp is at most 2^63 - 1")
        return cls(line.name, line.key_id, timestamp, raw[TIMESTAMP_BYTES:])

    def note_signature(self) -> NoteSignature:
        raw = self.timestamp.to_bytes(TIMESTAMP_BYTES, "big") + self.signature
        return NoteSignature(self.name, self.key_id, raw)

    def line(self) -> str:
        return self.note_signature().line()


@dataclass(frozen=True)
class CosignatureVerifier:
    """A witness's cosignature/v1 public key under its name."""

    name: str
    public_key: bytes  # raw 32 bytes
    key_id: bytes = field(init=False)

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise NoteError("key name must be non-empty, without spaces or '+'")
        if len(self.public_key) != 32:
            raise NoteError("an Ed25519 public key has 32 bytes")
        object.__setattr__(self, "key_id", cosignature_key_id(self.name, self.public_key))

    @classmethod
    def from_vkey(cls, vkey: str) -> CosignatureVerifier:
        """`name+hexid+base64(0x04 || key)`, or the key's plain `0x01` vkey; the key id is
        checked against the type it was published under."""
        parts = vkey.strip().split("+", 2)
        if len(parts) != 3 or not re.fullmatch(r"[0-9a-f]{8}", parts[1]):
            raise NoteError("vkey must be name+<8 hex digits>+<base64 key>")
        raw = _b64(parts[2], "vkey key")
        if len(raw) != 33 or raw[0] not in (ALG_COSIGNATURE_V1, ALG_ED25519):
            raise NoteError(
                "a witness vkey holds an Ed25519 key (type 0x04 cosignature/v1, or 0x01)"
            )
        verifier = cls(parts[0], raw[1:])
        published = verifier.key_id if raw[0] == ALG_COSIGNATURE_V1 else key_id(*verifier.pair)
        if published.hex() != parts[1]:
            raise NoteError("vkey key id does not match its name and key")
        return verifier

    @property
    def pair(self) -> tuple[str, bytes]:
        return self.name, self.public_key

    @property
    def vkey(self) -> str:
        encoded = base64.b64encode(bytes([ALG_COSIGNATURE_V1]) + self.public_key).decode()
        return f"{self.name}+{self.key_id.hex()}+{encoded}"

    def cosignatures(self, note: Note) -> list[Cosignature]:
        """This witness's valid cosignatures on `note` (other keys' lines are ignored).

        A line with this witness's name and key id that is not a valid cosignature makes the
        note malformed: SignatureError (signed-note: clients SHOULD reject the whole note).
        """
        key = Ed25519PublicKey.from_public_bytes(self.public_key)
        found = []
        for line in note.signatures:
            if (line.name, line.key_id) != (self.name, self.key_id):
                continue
            try:
                cosig = Cosignature.of(line)
                key.verify(cosig.signature, signed_message(cosig.timestamp, note.text))
            except (NoteError, InvalidSignature):
                raise SignatureError(
                    f"a cosignature by {self.name}+{self.key_id.hex()} does not verify"
                ) from None
            found.append(cosig)
        return found

    def require(self, note: Note) -> Cosignature:
        """The newest valid cosignature by this witness, or SignatureError."""
        found = self.cosignatures(note)
        if not found:
            raise SignatureError(f"no cosignature/v1 by witness {self.name}+{self.key_id.hex()}")
        return max(found, key=lambda c: c.timestamp)


class Cosigner:
    """A witness's signing key: cosigns checkpoint notes in the cosignature/v1 format."""

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        public = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.verifier = CosignatureVerifier(name, public)

    @property
    def name(self) -> str:
        return self.verifier.name

    @property
    def vkey(self) -> str:
        return self.verifier.vkey

    @classmethod
    def from_key_file(cls, path: Path, name: str | None = None) -> Cosigner:
        """From a PKCS#8 PEM Ed25519 key (with `name`), or a signed-note private key
        `PRIVATE+KEY+<name>+<hex id>+base64(0x01 or 0x04 || seed)` as golang.org/x/mod/sumdb/note
        and transparency-dev write them (its name, unless `name` agrees with it)."""
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read witness key {path}: {exc.strerror}") from exc
        if data.startswith(b"PRIVATE+KEY+"):
            skey_name, key = parse_skey(data.decode("ascii", "replace"))
            if name is not None and name != skey_name:
                raise ConfigError(f"{path}: the key is named {skey_name!r}, not {name!r}")
            return cls(skey_name, key)
        if name is None:
            raise ConfigError(f"{path}: a PEM witness key needs its name (--name)")
        try:
            pem_key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{path}: not an unencrypted PKCS#8 PEM private key") from exc
        if not isinstance(pem_key, Ed25519PrivateKey):
            raise ConfigError(f"{path}: a witness key must be an Ed25519 key")
        return cls(name, pem_key)

    def cosign(self, text: str, timestamp: int | None = None) -> Cosignature:
        """The cosignature of checkpoint note text `text` at `timestamp` (default: now)."""
        t = int(time.time()) if timestamp is None else timestamp
        sig = self._key.sign(signed_message(t, text))
        return Cosignature(self.name, self.verifier.key_id, t, sig)

    def cosigned(
        self, checkpoint: SignedCheckpoint, timestamp: int | None = None
    ) -> SignedCheckpoint:
        """`checkpoint` with this witness's cosignature line (replacing an earlier one)."""
        cosig = self.cosign(checkpoint.note.text, timestamp)
        return checkpoint.with_signatures(cosig.note_signature())


def parse_skey(skey: str) -> tuple[str, Ed25519PrivateKey]:
    """`PRIVATE+KEY+<name>+<hex id>+base64(type || 32-byte seed)`, type 0x01 or 0x04; the id
    is checked against the name and the public key for that type."""
    parts = skey.strip().split("+", 4)
    if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
        raise ConfigError("a note private key is PRIVATE+KEY+name+hexid+base64")
    name, hexid = parts[2], parts[3]
    try:
        raw = _b64(parts[4], "private key")
    except NoteError as exc:
        raise ConfigError(exc.message) from exc
    if len(raw) != 33 or raw[0] not in (ALG_ED25519, ALG_COSIGNATURE_V1) or not _NAME.match(name):
        raise ConfigError("a note private key holds a 32-byte Ed25519 seed (type 0x01 or 0x04)")
    key = Ed25519PrivateKey.from_private_bytes(raw[1:])
    public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    expected = (key_id if raw[0] == ALG_ED25519 else cosignature_key_id)(name, public)
    if expected.hex() != hexid:
        raise ConfigError("the note private key's id does not match its name and key")
    return name, key


def response_cosignatures(
    checkpoint: SignedCheckpoint, body: str, witness: CosignatureVerifier
) -> Cosignature:
    """The witness's cosignature among the signature lines of an add-checkpoint answer.

    As tlog-witness suggests, the lines are appended to the checkpoint and the result is read
    as one note, so a line is valid exactly when it verifies over this checkpoint's text.
    Lines by other keys are ignored; SignatureError when this witness's is missing or bad.
    """
    if not body or not body.endswith("\n") or not body.startswith("\u2014 "):
        raise NoteError("a witness answers with signature lines")
    note = Note.parse(checkpoint.note.encode() + body)
    return witness.require(note)
