"""RFC 9162 tree maths against the transparency-dev/merkle vectors, plus property tests."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.audit import merkle
from gateway.audit.merkle import (
    CompactRange,
    ConsistencyProofError,
    InclusionProofError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_of,
    verify_consistency,
    verify_inclusion,
)


def _b64(s: str | None) -> bytes:
    return base64.b64decode(s or "")


def _cases(vectors: Path, kind: str) -> list[Path]:
    return sorted((vectors / "rfc6962" / "testdata" / kind).rglob("*.json"))


VECTORS = Path(__file__).resolve().parents[2] / "vectors"
INCLUSION = _cases(VECTORS, "inclusion")
CONSISTENCY = _cases(VECTORS, "consistency")


def test_vector_files_are_there() -> None:
    assert len(INCLUSION) > 50
    assert len(CONSISTENCY) > 50


@pytest.mark.parametrize("path", INCLUSION, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_inclusion_vectors(path: Path) -> None:
    case = json.loads(path.read_text())
    args = (
        case["leafIdx"],
        case["treeSize"],
        _b64(case["leafHash"]),
        [_b64(p) for p in case["proof"] or []],
        _b64(case["root"]),
    )
    if case["wantErr"]:
        with pytest.raises(InclusionProofError):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize("path", CONSISTENCY, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_consistency_vectors(path: Path) -> None:
    case = json.loads(path.read_text())
    args = (
        case["size1"],
        case["size2"],
        [_b64(p) for p in case["proof"] or []],
        _b64(case["root1"]),
        _b64(case["root2"]),
    )
    if case["wantErr"]:
        with pytest.raises(ConsistencyProofError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


def test_roots_vector(vectors: Path) -> None:
    data = json.loads((vectors / "rfc6962" / "roots.json").read_text())
    leaves = [bytes.fromhex(h) for h in data["leaf_inputs_hex"]]
    for size, want in enumerate(data["root_hex_by_size"]):
        assert root_of([leaf_hash(x) for x in leaves[:size]]).hex() == want


def test_generated_proofs_match_the_vectors(vectors: Path) -> None:
    data = json.loads((vectors / "rfc6962" / "roots.json").read_text())
    hashes = [leaf_hash(bytes.fromhex(h)) for h in data["leaf_inputs_hex"]]
    read = _reader(hashes)
    for path in INCLUSION:
        case = json.loads(path.read_text())
        if case["wantErr"] or case["treeSize"] > len(hashes) or path.parent.name == "single-entry":
            continue
        got = inclusion_proof(case["leafIdx"], case["treeSize"], read)
        assert got == [_b64(p) for p in case["proof"] or []], path
    for path in CONSISTENCY:
        case = json.loads(path.read_text())
        if case["wantErr"] or case["size2"] > len(hashes) or path.parent.name == "additional":
            continue
        got = consistency_proof(case["size1"], case["size2"], read)
        assert got == [_b64(p) for p in case["proof"] or []], path


def _reference_root(hashes: list[bytes]) -> bytes:
    """MTH written as the RFC's recursive definition, independent of CompactRange."""
    if not hashes:
        return merkle.EMPTY_ROOT
    if len(hashes) == 1:
        return hashes[0]
    k = 1 << ((len(hashes) - 1).bit_length() - 1)
    return node_hash(_reference_root(hashes[:k]), _reference_root(hashes[k:]))


def _reader(hashes: list[bytes]) -> merkle.NodeReader:
    def read(level: int, index: int) -> bytes:
        lo = index << level
        hi = lo + (1 << level)
        assert hi <= len(hashes), "read beyond the tree"
        return _reference_root(hashes[lo:hi])

    return read


def _leaves(n: int) -> list[bytes]:
    return [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


def test_compact_range_matches_reference() -> None:
    hashes = _leaves(600)
    cr = CompactRange()
    for i, h in enumerate(hashes):
        assert cr.root() == _reference_root(hashes[:i])
        cr.append(h)
    cr2 = CompactRange()
    cr2.extend(hashes[:3])
    cr2.extend(hashes[3:600])
    assert cr2.root() == cr.root() == _reference_root(hashes)
    assert CompactRange(cr.size, cr.hashes).root() == cr.root()


def test_compact_range_rejects_bad_state() -> None:
    with pytest.raises(ValueError):
        CompactRange(3, [b"x" * 32])
    cr = CompactRange()
    cr.append(b"a" * 32)
    with pytest.raises(ValueError):
        cr.append_subtree(1, b"b" * 32)


def test_proof_arguments_checked() -> None:
    read = _reader(_leaves(4))
    with pytest.raises(ValueError):
        inclusion_proof(4, 4, read)
    with pytest.raises(ValueError):
        consistency_proof(0, 4, read)
    with pytest.raises(ValueError):
        consistency_proof(3, 2, read)


def test_errors_carry_evidence() -> None:
    hashes = _leaves(5)
    proof = consistency_proof(2, 5, _reader(hashes))
    root1, root2 = root_of(hashes[:2]), root_of(hashes)
    with pytest.raises(ConsistencyProofError) as info:
        verify_consistency(2, 5, proof, root1, b"\x00" * 32)
    assert info.value.proof == tuple(proof)
    assert info.value.root1 == root1
    assert info.value.size2 == 5
    verify_consistency(2, 5, proof, root1, root2)


trees = st.integers(min_value=1, max_value=300).flatmap(
    lambda n: st.tuples(st.just(n), st.integers(0, n - 1), st.integers(1, n))
)


@settings(max_examples=150, deadline=None)
@given(trees, st.data())
def test_proofs_verify_and_any_change_fails(
    tree: tuple[int, int, int], data: st.DataObject
) -> None:
    size, index, first = tree
    hashes = _leaves(size)
    read = _reader(hashes)
    root = _reference_root(hashes)
    proof = inclusion_proof(index, size, read)
    verify_inclusion(index, size, hashes[index], proof, root)

    # any modification of leaf, index, size, root or one proof bit fails
    with pytest.raises(InclusionProofError):
        verify_inclusion(index, size, leaf_hash(b"other"), proof, root)
    with pytest.raises(InclusionProofError):
        verify_inclusion(index, size, hashes[index], proof, leaf_hash(b"root"))
    other_index = data.draw(st.integers(0, size).filter(lambda i: i != index))
    with pytest.raises(InclusionProofError):
        verify_inclusion(other_index, size, hashes[index], proof, root)
    other_size = data.draw(st.integers(1, 2 * size + 2).filter(lambda s: s != size))
    if other_size > index and (other_size - 1).bit_length() == (size - 1).bit_length():
        # same depth: only a differently shaped path can fail; accept when the path shape is equal
        pass
    else:
        with pytest.raises(InclusionProofError):
            verify_inclusion(index, other_size, hashes[index], proof, root)
    if proof:
        i = data.draw(st.integers(0, len(proof) - 1))
        bit = data.draw(st.integers(0, 255))
        bad = list(proof)
        bad[i] = (int.from_bytes(bad[i], "big") ^ (1 << bit)).to_bytes(32, "big")
        with pytest.raises(InclusionProofError):
            verify_inclusion(index, size, hashes[index], bad, root)
        with pytest.raises(InclusionProofError):
            verify_inclusion(index, size, hashes[index], proof[:-1], root)
    with pytest.raises(InclusionProofError):
        verify_inclusion(index, size, hashes[index], [*proof, root], root)

    root1 = _reference_root(hashes[:first])
    cproof = consistency_proof(first, size, read)
    verify_consistency(first, size, cproof, root1, root)
    with pytest.raises(ConsistencyProofError):
        verify_consistency(first, size, cproof, root1, leaf_hash(b"x"))
    if first < size:
        with pytest.raises(ConsistencyProofError):
            verify_consistency(first, size, cproof, leaf_hash(b"x"), root)
        i = data.draw(st.integers(0, len(cproof) - 1))
        bad = list(cproof)
        bad[i] = bytes(32)
        with pytest.raises(ConsistencyProofError):
            verify_consistency(first, size, bad, root1, root)
        with pytest.raises(ConsistencyProofError):
            verify_consistency(first, size, cproof[:-1], root1, root)
