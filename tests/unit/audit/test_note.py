# ruff: noqa: E501 - published vectors are quoted verbatim
"""Signed notes and checkpoints, against golang.org/x/mod/sumdb/note's published examples."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit.note import (
    Checkpoint,
    Note,
    NoteError,
    NoteSigner,
    NoteVerifier,
    SignatureError,
    SignedCheckpoint,
    key_id,
)
from gateway.domain.errors import ConfigError

# golang.org/x/mod sumdb/note/note_test.go (BSD licence): TestNewSigner, TestSign, TestOpen
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
PETER_SIG = "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
ENOCH_SIG = "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n"


def _peter_signer() -> NoteSigner:
    seed = base64.b64decode(PETER_SKEY.split("+", 4)[-1])[1:]
    return NoteSigner("PeterNeumann", Ed25519PrivateKey.from_private_bytes(seed))


def test_known_vkey_and_key_id() -> None:
    signer = _peter_signer()
    assert signer.vkey == PETER_VKEY
    assert key_id("PeterNeumann", signer.verifier.public_key).hex() == "c74f20a3"
    assert NoteVerifier.from_vkey(PETER_VKEY) == signer.verifier


def test_known_signature() -> None:
    note = _peter_signer().sign(TEXT)
    assert note.encode() == TEXT + "\n" + PETER_SIG


def test_open_known_note_with_two_signatures() -> None:
    note = Note.parse(TEXT + "\n" + PETER_SIG + ENOCH_SIG)
    assert note.text == TEXT
    assert [s.name for s in note.signatures] == ["PeterNeumann", "EnochRoot"]
    assert NoteVerifier.from_vkey(PETER_VKEY).signed(note)
    assert NoteVerifier.from_vkey(ENOCH_VKEY).signed(note)
    tampered = Note.parse(TEXT.replace("think", "thinks") + "\n" + PETER_SIG)
    assert not NoteVerifier.from_vkey(PETER_VKEY).signed(tampered)
    with pytest.raises(SignatureError):
        NoteVerifier.from_vkey(ENOCH_VKEY).require(tampered)


@pytest.mark.parametrize(
    "message",
    [
        TEXT,
        TEXT + "\n",
        TEXT + "\n" + PETER_SIG[:-1],
        "\x01" + TEXT + "\n" + PETER_SIG,
        TEXT
        + "\n"
        + "— Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=",
        TEXT + "\n" + PETER_SIG + "Unexpected line.\n",
        TEXT + "\n" + PETER_SIG * 101,
        TEXT + "\n" + "— PeterNeumann !!!!\n",
        TEXT + "\n" + "— PeterNeumann AAAA\n",
        b"\xff" + TEXT.encode() + b"\n" + PETER_SIG.encode(),
    ],
)
def test_malformed_notes(message: str | bytes) -> None:
    with pytest.raises(NoteError):
        Note.parse(message)


def test_mangled_vkeys_rejected() -> None:
    for bad in [
        PETER_VKEY[:-1],
        PETER_VKEY[1:],
        "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
        "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        PETER_VKEY.replace("c74f20a3", "c74f20a4"),
        "",
    ]:
        with pytest.raises(NoteError):
            NoteVerifier.from_vkey(bad)


def test_sign_replaces_own_signature_and_keeps_others() -> None:
    peter = _peter_signer()
    witness = NoteSigner("witness.example", Ed25519PrivateKey.generate())
    note = witness.sign(peter.sign(TEXT))
    again = peter.sign(note)
    assert [s.name for s in again.signatures] == ["witness.example", "PeterNeumann"]
    assert peter.verifier.signed(again)
    assert witness.verifier.signed(again)


def test_checkpoint_round_trip() -> None:
    signer = NoteSigner("proofless.example/audit/a", Ed25519PrivateKey.generate())
    cp = Checkpoint("proofless.example/audit/a", 42, bytes(range(32)))
    signed = SignedCheckpoint.sign(cp, signer)
    assert signed.text.startswith(
        "proofless.example/audit/a\n42\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n\n— "
    )
    opened = SignedCheckpoint.open(signed.text, signer.verifier)
    assert opened.checkpoint == cp
    witness = NoteSigner("witness", Ed25519PrivateKey.generate())
    cosigned = opened.cosigned(witness)
    SignedCheckpoint.open(cosigned.text, signer.verifier, (witness.verifier,))
    with pytest.raises(SignatureError):
        SignedCheckpoint.open(signed.text, signer.verifier, (witness.verifier,))
    other = NoteSigner("proofless.example/audit/a", Ed25519PrivateKey.generate())
    with pytest.raises(SignatureError):
        SignedCheckpoint.open(signed.text, other.verifier)


@pytest.mark.parametrize(
    "text",
    [
        "origin\n01\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
        "origin\n-1\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
        "origin\n1\nAAEC\n",
        "origin\n1\n",
        "\n1\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
        "origin\n1\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n\n",
        "origin\n1\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    ],
)
def test_malformed_checkpoints(text: str) -> None:
    with pytest.raises(NoteError):
        Checkpoint.parse(text)


def test_signer_from_pem() -> None:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    signer = NoteSigner.from_pem("log", pem)
    assert signer.verifier.public_key == key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    with pytest.raises(ConfigError):
        NoteSigner.from_pem("log", b"not a key")


def test_vkey_with_plus_in_base64_round_trips() -> None:
    for _ in range(50):
        signer = NoteSigner("log.example", Ed25519PrivateKey.generate())
        assert NoteVerifier.from_vkey(signer.vkey) == signer.verifier
