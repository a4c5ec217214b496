"""C2SP tlog-cosignature/v1 and the tlog-tiles resource names, against published vectors
(tests/vectors/tlog-cosignature: a cosigned checkpoint of the public witness network, the
spec's example, transparency-dev/formats and transparency-dev/witness test data)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit import merkle
from gateway.audit.cosignature import (
    Cosignature,
    CosignatureVerifier,
    Cosigner,
    cosignature_key_id,
    parse_skey,
    response_cosignatures,
    signed_message,
)
from gateway.audit.note import (
    Checkpoint,
    Note,
    NoteError,
    NoteSignature,
    NoteSigner,
    NoteVerifier,
    SignatureError,
    SignedCheckpoint,
)
from gateway.audit.tiles import (
    TILE_WIDTH,
    TileRef,
    bundle,
    entries_path,
    parse_bundle,
    parse_tile_path,
    served_in,
    tile_path,
    tile_width,
)
from gateway.audit.witnessing import WitnessTarget
from gateway.config._loader import _witnesses
from gateway.domain.errors import ConfigError, IntegrityError

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parents[2] / "vectors" / "tlog-cosignature" / "vectors.json").read_text()
)


# ---- the public witness network ----------------------------------------------------------


def test_a_public_witness_network_cosignature_verifies() -> None:
    v = VECTORS["public_witness_network"]
    note = Note.parse(v["checkpoint"])
    witness = CosignatureVerifier.from_vkey(v["witness_vkey"])
    assert witness.key_id.hex() == "da77ade7"
    assert witness.vkey == v["witness_vkey"]  # type 0x04 round-trips
    cosig = witness.require(note)
    assert cosig.timestamp == 1779573024
    # the log's own Ed25519 line verifies as a plain signed-note signature, and the
    # checkpoint opens with the witness required
    signed = SignedCheckpoint.open(
        v["checkpoint"], NoteVerifier.from_vkey(v["log_vkey"]), [witness]
    )
    assert signed.size == 1432088532


def test_a_changed_checkpoint_fails_the_witness_cosignature() -> None:
    v = VECTORS["public_witness_network"]
    tampered = Note.parse(v["checkpoint"].replace("1432088532", "1432088533", 1))
    with pytest.raises(SignatureError):
        CosignatureVerifier.from_vkey(v["witness_vkey"]).require(tampered)


def test_a_plain_verifier_does_not_take_a_cosignature_for_its_own() -> None:
    """The key ids differ by type (0x01 vs 0x04): a cosignature line is not a note
    signature of the same key, and the other way round."""
    v = VECTORS["public_witness_network"]
    witness = CosignatureVerifier.from_vkey(v["witness_vkey"])
    plain = NoteVerifier(witness.name, witness.public_key)
    assert plain.key_id != witness.key_id
    assert not plain.signed(Note.parse(v["checkpoint"]))


# ---- the spec's example and transparency-dev/formats --------------------------------------


def test_the_spec_example_encodes_its_timestamp_after_the_key_id() -> None:
    v = VECTORS["spec_example"]
    line = Note.parse(v["checkpoint_text"] + "\n" + v["signature_line"] + "\n").signatures[0]
    cosig = Cosignature.of(line)
    assert cosig.timestamp == v["timestamp"]
    assert cosig.note_signature() == line
    assert signed_message(cosig.timestamp, v["checkpoint_text"]) == v["signed_message"].encode()


def test_formats_timestamp_vector() -> None:
    v = VECTORS["formats"]
    raw = base64.b64decode(v["timestamp_signature"])
    assert Cosignature.of(NoteSignature("x", raw[:4], raw[4:])).timestamp == v["timestamp"]


@pytest.mark.parametrize("vkey", VECTORS["formats"]["vkeys_accepted"])
def test_formats_vkeys_accepted(vkey: str) -> None:
    verifier = CosignatureVerifier.from_vkey(vkey)
    assert verifier.key_id == cosignature_key_id(verifier.name, verifier.public_key)


@pytest.mark.parametrize(
    "vkey",
    [
        *VECTORS["formats"]["vkeys_refused"],
        "remora.n621.de+00000000+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2",  # wrong id
        "TEST+da77ade7+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6",  # 0x01 key, 0x04-ish id
    ],
)
def test_formats_vkeys_refused(vkey: str) -> None:
    with pytest.raises(NoteError):
        CosignatureVerifier.from_vkey(vkey)


# ---- transparency-dev/witness test keys ----------------------------------------------------


def _witness() -> Cosigner:
    name, key = parse_skey(VECTORS["witness"]["witness_skey"])
    return Cosigner(name, key)


def test_witness_test_keys_and_checkpoints() -> None:
    v = VECTORS["witness"]
    log_name, log_key = parse_skey(v["log_skey"])
    assert NoteSigner(log_name, log_key).vkey == v["log_vkey"]
    log_vkey = NoteVerifier.from_vkey(v["log_vkey"])
    five = SignedCheckpoint.open(v["checkpoint_5"], log_vkey)
    eight = SignedCheckpoint.open(v["checkpoint_8"], log_vkey)
    proof = [bytes.fromhex(h) for h in v["proof_5_to_8_hex"]]
    merkle.verify_consistency(5, 8, proof, five.root, eight.root)
    with pytest.raises(merkle.ConsistencyProofError):
        merkle.verify_consistency(5, 8, proof[::-1], five.root, eight.root)
    # the witness's skey is its plain (0x01) vkey's key; it cosigns under type 0x04
    witness = _witness()
    assert NoteVerifier(witness.name, witness.verifier.public_key).vkey == v["witness_vkey"]
    cosigned = witness.cosigned(five, timestamp=1700000000)
    from_plain_vkey = CosignatureVerifier.from_vkey(v["witness_vkey"])
    assert from_plain_vkey == witness.verifier
    assert from_plain_vkey.require(cosigned.note).timestamp == 1700000000
    assert not NoteVerifier.from_vkey(v["witness_vkey"]).signed(cosigned.note)
    # Ed25519 is deterministic: the same text and time give the same line
    assert witness.cosign(five.note.text, 1700000000) == witness.cosign(five.note.text, 1700000000)


def test_skeys_are_checked() -> None:
    v = VECTORS["witness"]["witness_skey"]
    with pytest.raises(ConfigError):
        parse_skey(v.replace("f13a86db", "f13a86dc"))
    with pytest.raises(ConfigError):
        parse_skey("PRIVATE+KEY+witness+f13a86db+AQ==")


def test_key_file_forms(tmp_path: Path) -> None:
    skey = tmp_path / "witness.skey"
    skey.write_text(VECTORS["witness"]["witness_skey"] + "\n")
    assert Cosigner.from_key_file(skey).name == "witness"
    with pytest.raises(ConfigError, match="named"):
        Cosigner.from_key_file(skey, "other")
    pem = tmp_path / "witness.pem"
    pem.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    assert Cosigner.from_key_file(pem, "w.example/1").name == "w.example/1"
    with pytest.raises(ConfigError, match="name"):
        Cosigner.from_key_file(pem)


# ---- our own cosignatures -------------------------------------------------------------------


def _log(size: int = 3) -> tuple[NoteSigner, SignedCheckpoint]:
    signer = NoteSigner("log.example/a", Ed25519PrivateKey.generate())
    cp = Checkpoint("log.example/a", size, merkle.EMPTY_ROOT, ("ext line",))
    return signer, SignedCheckpoint.sign(cp, signer)


def test_extension_lines_are_covered() -> None:
    _, cp = _log()
    witness = Cosigner("w.example/1", Ed25519PrivateKey.generate())
    cosigned = witness.cosigned(cp)
    witness.verifier.require(cosigned.note)
    changed = Note(cosigned.note.text.replace("ext line", "ext lime"), cosigned.note.signatures)
    with pytest.raises(SignatureError):
        witness.verifier.require(changed)


def test_a_timestamp_beyond_2_63_is_refused() -> None:
    _, cp = _log()
    witness = Cosigner("w.example/1", Ed25519PrivateKey.generate())
    good = witness.cosign(cp.note.text, 5).note_signature()
    bad = NoteSignature(good.name, good.key_id, (1 << 63).to_bytes(8, "big") + good.signature[8:])
    with pytest.raises(SignatureError):
        witness.verifier.require(cp.with_signatures(bad).note)
    with pytest.raises(NoteError):
        signed_message(1 << 63, cp.note.text)


def test_only_checkpoints_are_cosigned() -> None:
    with pytest.raises(NoteError):
        Cosigner("w", Ed25519PrivateKey.generate()).cosign("just one line\n")


def test_response_lines_are_read_against_the_checkpoint() -> None:
    _, cp = _log()
    ours = Cosigner("w.example/1", Ed25519PrivateKey.generate())
    other = Cosigner("w.example/2", Ed25519PrivateKey.generate())
    body = other.cosign(cp.note.text).line() + ours.cosign(cp.note.text, 42).line()
    assert response_cosignatures(cp, body, ours.verifier).timestamp == 42
    with pytest.raises(SignatureError):  # only the other witness answered
        response_cosignatures(cp, other.cosign(cp.note.text).line(), ours.verifier)
    _, another = _log(4)  # a cosignature of another checkpoint is no answer
    with pytest.raises(SignatureError):
        response_cosignatures(cp, ours.cosign(another.note.text).line(), ours.verifier)
    with pytest.raises(NoteError):
        response_cosignatures(cp, "", ours.verifier)


def test_with_signatures_replaces_a_line_of_the_same_key() -> None:
    _, cp = _log()
    witness = Cosigner("w.example/1", Ed25519PrivateKey.generate())
    once = witness.cosigned(cp, 1)
    twice = witness.cosigned(once, 2)
    assert len(twice.note.signatures) == 2
    assert witness.verifier.require(twice.note).timestamp == 2


# ---- tlog-tiles names -----------------------------------------------------------------------


def test_tile_paths_as_the_spec_spells_them() -> None:
    v = VECTORS["tlog_tiles"]
    assert tile_path(0, 1234067) == "tile/0/" + v["index_1234067"]
    assert entries_path(1234067, 5) == "tile/entries/" + v["index_1234067"] + ".p/5"
    assert parse_tile_path("tile/2/" + v["index_1234067"]) == TileRef(2, 1234067)
    for bad in ["tile/0/x000/001", "tile/00/000", "tile/0/1", "tile/0/000.p/0",
                "tile/0/000.p/256", "tile/0/000.p/007", "tile/64/000", "tile/0/../000",
                "tile/entries/000.p/", "tile/0/x001", "tile/0/000/"]:  # fmt: skip
        assert parse_tile_path(bad) is None, bad


def test_tile_widths_of_the_spec_examples() -> None:
    v = VECTORS["tlog_tiles"]["size_70000"]
    size = 70000
    full0 = [n for n in range(300) if tile_width(0, n, size) == TILE_WIDTH]
    assert len(full0) == v["full_level_0"]
    assert tile_width(0, v["full_level_0"], size) == v["partial_level_0"]
    assert v["full_level_1"] == 1
    assert tile_width(1, 0, size) == TILE_WIDTH
    assert tile_width(1, 1, size) == v["partial_level_1"]
    assert tile_width(2, 0, size) == v["partial_level_2"]
    assert tile_width(3, 0, size) == 0
    assert tile_width(0, 0, 256) == TILE_WIDTH
    assert tile_width(1, 0, 256) == 1
    assert tile_width(0, 1, 256) == 0  # no empty tile
    assert served_in(TileRef(0, 273, 112), size)
    assert served_in(TileRef(0, 273, 100), size)
    assert not served_in(TileRef(0, 273, 113), size)
    assert not served_in(TileRef(0, 273), size)
    assert served_in(TileRef(0, 272), size)


def test_entry_bundles() -> None:
    entries = [b"", b"a", b"x" * 300, b"y" * 0xFFFF]
    data = bundle(entries)
    assert data[:5] == b"\x00\x00\x00\x01a"
    assert parse_bundle(data) == entries
    with pytest.raises(IntegrityError):
        bundle([b"z" * 0x10000])
    with pytest.raises(IntegrityError):
        parse_bundle(data[:-1])


# ---- [audit] witnesses ----------------------------------------------------------------------


def test_witness_configuration_is_checked() -> None:
    vkey = VECTORS["public_witness_network"]["witness_vkey"]
    target = WitnessTarget.parse("https://witness.example/w1/", vkey)
    assert target.url == "https://witness.example/w1"
    assert target.name == "remora.n621.de"
    for url in ["witness.example", "ftp://witness.example", "http://"]:
        with pytest.raises(ConfigError, match="url"):
            WitnessTarget.parse(url, vkey)
    with pytest.raises(ConfigError, match="key"):
        WitnessTarget.parse("http://witness.example", vkey.replace("da77ade7", "da77ade8"))
    assert _witnesses([{"url": "http://w", "key": vkey}], "w")[0].key == vkey
    for bad in [{"url": "http://w"}, {"url": "http://w", "key": vkey, "timeout": 1}, "x"]:
        with pytest.raises(ConfigError):
            _witnesses([bad], "w")
