"""The Merkle tree of the audit log: RFC 9162 §2.1 (identical to RFC 6962 §2.1), pure functions.

Hashing, the incremental tree state (a compact range), proof building from a node-reading
callback and proof verification. No files, no sockets: storage hands in a `NodeReader`.

Node addressing: `(level, index)` names the perfect subtree of 2**level leaves starting at leaf
`index * 2**level`; level 0 nodes are leaf hashes. Only such aligned perfect subtrees are ever
read from storage; hashes of the ragged right edge are folded here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

from gateway.domain.errors import IntegrityError

HASH_SIZE = 32
#: RFC 9162 §2.1.1: the hash of an empty list is the hash of an empty string.
EMPTY_ROOT = hashlib.sha256(b"").digest()

#: reads the hash of the perfect subtree `(level, index)`; raises if it is not stored
NodeReader = Callable[[int, int], bytes]

_sha256 = hashlib.sha256


def leaf_hash(leaf: bytes) -> bytes:
    """RFC 9162 §2.1.1: MTH({d(0)}) = SHA-256(0x00 || d(0))."""
    return _sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 §2.1.1: interior node = SHA-256(0x01 || MTH(left) || MTH(right))."""
    return _sha256(b"\x01" + left + right).digest()


def perfect_root(hashes: Sequence[bytes]) -> bytes:
    """Root of a perfect subtree over `hashes` (their count a power of two), level by level.

    Pairing a whole level in one comprehension is several times faster in CPython than
    merging leaf by leaf, which matters when verifying a million entries.
    """
    level = list(hashes)
    if not level or len(level) & (len(level) - 1):
        raise ValueError("perfect_root needs a power-of-two number of hashes")
    while len(level) > 1:
        level = [
            _sha256(b"\x01" + a + b).digest() for a, b in zip(level[::2], level[1::2], strict=True)
        ]
    return level[0]


class CompactRange:
    """The incremental state of a tree of `size` leaves: its right edge.

    Holds the roots of the perfect subtrees that the binary decomposition of `size` splits the
    tree into (largest, leftmost first) — at most log2(size) hashes. Appending merges equal-size
    neighbours, so it is O(log n) worst case and O(1) amortized; `root()` folds the edge right to
    left, which is exactly MTH of RFC 9162 §2.1.1 because its split point k is always the largest
    power of two below n.
    """

    __slots__ = ("_hashes", "size")

    def __init__(self, size: int = 0, hashes: Iterable[bytes] = ()) -> None:
        self.size = size
        self._hashes = list(hashes)
        if len(self._hashes) != size.bit_count():
            raise ValueError("a compact range of size n holds popcount(n) hashes")

    @property
    def hashes(self) -> tuple[bytes, ...]:
        return tuple(self._hashes)

    def copy(self) -> CompactRange:
        return CompactRange(self.size, self._hashes)

    def append(self, leaf_hash_: bytes) -> None:
        self.append_subtree(0, leaf_hash_)

    def append_subtree(self, level: int, subtree_hash: bytes) -> None:
        """Append a perfect subtree of 2**level leaves; `size` must be a multiple of it."""
        if self.size & ((1 << level) - 1):
            raise ValueError("subtree is not aligned with the current size")
        h = subtree_hash
        s = self.size >> level
        hashes = self._hashes
        while s & 1:  # the smallest subtree on the edge has the same size: merge
            h = _sha256(b"\x01" + hashes.pop() + h).digest()
            s >>= 1
        hashes.append(h)
        self.size += 1 << level

    def extend(self, leaf_hashes: Sequence[bytes]) -> None:
        """Append many leaf hashes; whole aligned 256-leaf blocks are hashed level by level."""
        i, n = 0, len(leaf_hashes)
        while i < n and self.size & 255:
            self.append_subtree(0, leaf_hashes[i])
            i += 1
        while n - i >= 256:
            self.append_subtree(8, perfect_root(leaf_hashes[i : i + 256]))
            i += 256
        while i < n:
            self.append_subtree(0, leaf_hashes[i])
            i += 1

    def root(self) -> bytes:
        if not self._hashes:
            return EMPTY_ROOT
        it = reversed(self._hashes)
        r = next(it)
        for h in it:
            r = _sha256(b"\x01" + h + r).digest()
        return r


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH (RFC 9162 §2.1.1) of a list of leaf hashes."""
    cr = CompactRange()
    cr.extend(leaf_hashes)
    return cr.root()


def _largest_power_of_two_below(n: int) -> int:
    """k of RFC 9162 §2.1.1: the largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def subtree_hash(lo: int, hi: int, read: NodeReader) -> bytes:
    """MTH(D[lo:hi]) for a range the RFC recursion produces (lo aligned to the range's span).

    The range splits greedily into aligned perfect subtrees of decreasing size; folding them
    right to left gives the RFC's MTH. At most log2(hi - lo) reads.
    """
    parts: list[bytes] = []
    while lo < hi:
        level = (lo & -lo).bit_length() - 1 if lo else (hi - lo).bit_length()
        while lo + (1 << level) > hi:
            level -= 1
        parts.append(read(level, lo >> level))
        lo += 1 << level
    r = parts[-1]
    for h in reversed(parts[:-1]):
        r = node_hash(h, r)
    return r


def inclusion_proof(index: int, size: int, read: NodeReader) -> list[bytes]:
    """PATH(m, D[n]) of RFC 9162 §2.1.3.1, leaf to root, in O(log n) node reads."""
    if not 0 <= index < size:
        raise ValueError(f"index {index} is not in a tree of size {size}")
    path: list[bytes] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _largest_power_of_two_below(hi - lo)
        if index < lo + k:  # PATH(m, D[0:k]) : MTH(D[k:n])
            path.append(subtree_hash(lo + k, hi, read))
            hi = lo + k
        else:  # PATH(m - k, D[k:n]) : MTH(D[0:k])
            path.append(subtree_hash(lo, lo + k, read))
            lo += k
    path.reverse()
    return path


def consistency_proof(first: int, second: int, read: NodeReader) -> list[bytes]:
    """PROOF(m, D[n]) = SUBPROOF(m, D[n], true) of RFC 9162 §2.1.4.1, in O(log n) reads."""
    if not 0 < first <= second:
        raise ValueError(f"no consistency proof from size {first} to size {second}")
    proof: list[bytes] = []
    lo, hi, complete = 0, second, True
    while True:
        if first == hi:
            # SUBPROOF(m, D[m], true) = {}; SUBPROOF(m, D[m], false) = {MTH(D[m])}
            if not complete:
                proof.append(subtree_hash(lo, hi, read))
            break
        k = _largest_power_of_two_below(hi - lo)
        if first <= lo + k:  # SUBPROOF(m, D[0:k], b) : MTH(D[k:n])
            proof.append(subtree_hash(lo + k, hi, read))
            hi = lo + k
        else:  # SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])
            proof.append(subtree_hash(lo, lo + k, read))
            lo += k
            complete = False
    proof.reverse()
    return proof


class ProofError(IntegrityError):
    """A Merkle proof does not check out."""

    reason = "PROOF_INVALID"


class InclusionProofError(ProofError):
    """Evidence: the leaf, its claimed position, the proof and the root it failed to reach."""

    def __init__(
        self,
        message: str,
        *,
        index: int,
        tree_size: int,
        leaf_hash: bytes,
        proof: Sequence[bytes],
        root: bytes,
        computed_root: bytes | None = None,
    ) -> None:
        super().__init__(f"inclusion proof of leaf {index} in tree {tree_size}: {message}")
        self.index = index
        self.tree_size = tree_size
        self.leaf_hash = leaf_hash
        self.proof = tuple(proof)
        self.root = root
        self.computed_root = computed_root


class ConsistencyProofError(ProofError):
    """Evidence: both tree heads and the proof that failed to connect them."""

    reason = "INCONSISTENT_TREE"

    def __init__(
        self,
        message: str,
        *,
        size1: int,
        size2: int,
        root1: bytes,
        root2: bytes,
        proof: Sequence[bytes],
    ) -> None:
        super().__init__(f"consistency proof from tree {size1} to tree {size2}: {message}")
        self.size1 = size1
        self.size2 = size2
        self.root1 = root1
        self.root2 = root2
        self.proof = tuple(proof)


def root_from_inclusion_proof(
    index: int, tree_size: int, leaf_hash_: bytes, proof: Sequence[bytes]
) -> bytes:
    """The root a proof leads to, by RFC 9162 §2.1.3.2; raises InclusionProofError if malformed."""

    def fail(why: str) -> InclusionProofError:
        return InclusionProofError(
            why, index=index, tree_size=tree_size, leaf_hash=leaf_hash_, proof=proof, root=b""
        )

    if not 0 <= index < tree_size:
        raise fail("index beyond the tree")
    if len(leaf_hash_) != HASH_SIZE or any(len(p) != HASH_SIZE for p in proof):
        raise fail("hashes must be 32 bytes")
    fn, sn, r = index, tree_size - 1, leaf_hash_
    for p in proof:
        if sn == 0:
            raise fail("proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise fail("proof is too short")
    return r


def verify_inclusion(
    index: int, tree_size: int, leaf_hash_: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """RFC 9162 §2.1.3.2: raise InclusionProofError unless the proof leads to `root`."""
    try:
        computed = root_from_inclusion_proof(index, tree_size, leaf_hash_, proof)
    except InclusionProofError as exc:
        exc.root = root
        raise
    if computed != root:
        raise InclusionProofError(
            "computed root does not match",
            index=index,
            tree_size=tree_size,
            leaf_hash=leaf_hash_,
            proof=proof,
            root=root,
            computed_root=computed,
        )


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """RFC 9162 §2.1.4.2: raise ConsistencyProofError unless tree `size1` is a prefix of `size2`.

    A proof from the empty tree is rejected as meaningless (every tree extends it), as the
    transparency-dev vectors require; callers treat "no previous checkpoint" themselves.
    """

    def fail(why: str) -> ConsistencyProofError:
        return ConsistencyProofError(
            why, size1=size1, size2=size2, root1=root1, root2=root2, proof=proof
        )

    if size1 == 0 or size2 < size1:
        raise fail("sizes are not 0 < size1 <= size2")
    if size1 == size2:
        if proof:
            raise fail("equal sizes need an empty proof")
        if root1 != root2:
            raise fail("equal sizes with different roots")
        return
    if not proof:
        raise fail("empty proof")
    if any(len(p) != HASH_SIZE for p in proof):
        raise fail("hashes must be 32 bytes")
    # Step 1: if size1 is an exact power of two, the old root is the first node of the path.
    path = [root1, *proof] if size1 & (size1 - 1) == 0 else list(proof)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:  # step 3: shift out the shared right edge
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise fail("proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise fail("proof is too short")
    if fr != root1:
        raise fail("proof does not lead to the first root")
    if sr != root2:
        raise fail("proof does not lead to the second root")
