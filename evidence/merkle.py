"""The RFC 9162 (section 2.1) Merkle tree of the transparency log, written by hand against the RFC.

Storage keeps only perfect subtrees: node(level, index) is the hash of the 2**level leaves starting at leaf
index * 2**level. Every range the RFC's algorithms ask for starts at a multiple of the largest power of two below
its length, so it splits into O(log n) stored nodes, and roots and proofs need O(log n) lookups at any log size.

Producing a proof for a range a log does not hold is a caller bug (ValueError); a proof that does not check is
evidence failing (VerificationError).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Protocol

from evidence.errors import VerificationError

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(entry: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


class NodeSource(Protocol):
    def node(self, level: int, index: int) -> bytes:
        """Hash of the perfect subtree of 2**level leaves starting at leaf index * 2**level (level 0: leaf hashes)."""
        ...


def new_nodes(leaf_index: int, leaf: bytes, source: NodeSource) -> list[tuple[int, int, bytes]]:
    """The perfect nodes (level, index, hash) that appending leaf hash `leaf` at `leaf_index` completes."""
    nodes = [(0, leaf_index, leaf)]
    level, index, current = 0, leaf_index, leaf
    while index & 1:  # a right child completes its parent
        current = node_hash(source.node(level, index - 1), current)
        level, index = level + 1, index >> 1
        nodes.append((level, index, current))
    return nodes


def subtree_hash(start: int, end: int, source: NodeSource) -> bytes:
    """MTH of leaves [start, end): O(log n) lookups when start is a multiple of the largest power of two below
    end - start (every range a root or proof needs); any other range is correct but costs more lookups."""
    if not 0 <= start <= end:
        raise ValueError(f"invalid leaf range: [{start}, {end})")
    size = end - start
    if size == 0:
        return EMPTY_ROOT
    if size & (size - 1) == 0 and start % size == 0:
        return source.node(size.bit_length() - 1, start // size)
    split = _split(size)
    return node_hash(subtree_hash(start, start + split, source), subtree_hash(start + split, end, source))


def root(size: int, source: NodeSource) -> bytes:
    return subtree_hash(0, size, source)


def inclusion_proof(index: int, size: int, source: NodeSource) -> list[bytes]:
    """PATH(index, D[0:size]) of RFC 9162 section 2.1.3.1, deepest sibling first."""
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is outside a tree of size {size}")
    proof: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        middle = start + _split(end - start)
        if index < middle:
            proof.append(subtree_hash(middle, end, source))
            end = middle
        else:
            proof.append(subtree_hash(start, middle, source))
            start = middle
    proof.reverse()  # walked from the root down; the RFC lists from the leaf up
    return proof


def consistency_proof(old_size: int, new_size: int, source: NodeSource) -> list[bytes]:
    """PROOF(old_size, D[0:new_size]) of RFC 9162 section 2.1.4.1; empty when old_size is 0 or equals new_size."""
    if not 0 <= old_size <= new_size:
        raise ValueError(f"no consistency proof from size {old_size} to size {new_size}")
    if old_size in (0, new_size):
        return []
    proof: list[bytes] = []
    start, end, whole_old_tree = 0, new_size, True  # whole_old_tree: the RFC's flag b
    while old_size != end:
        middle = start + _split(end - start)
        if old_size <= middle:
            proof.append(subtree_hash(middle, end, source))
            end = middle
        else:
            proof.append(subtree_hash(start, middle, source))
            start, whole_old_tree = middle, False
    if not whole_old_tree:
        proof.append(subtree_hash(start, end, source))
    proof.reverse()
    return proof


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """RFC 9162 section 2.1.3.2: `leaf` (a leaf hash) is at `index` of the tree of `size` leaves with `root`."""
    if not 0 <= index < size:
        raise VerificationError(f"inclusion proof has leaf index outside the tree: expected < {size}, got {index}")
    _check_hashes([leaf, root, *proof], "inclusion proof")
    expected = _inclusion_length(index, size)
    if len(proof) != expected:
        raise VerificationError(f"inclusion proof has wrong length: expected {expected}, got {len(proof)}")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise VerificationError("inclusion proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0 or r != root:
        raise VerificationError(f"inclusion proof leads to wrong root: expected {root.hex()}, got {r.hex()}")


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> None:
    """RFC 9162 section 2.1.4.2: the tree of `old_size` leaves with `old_root` is a prefix of the newer tree."""
    if not 0 <= old_size <= new_size:
        raise VerificationError(f"consistency proof goes backwards: old size {old_size} is greater than {new_size}")
    _check_hashes([old_root, new_root, *proof], "consistency proof")
    if old_size in (0, new_size):
        _verify_trivial_consistency(old_size, new_size, old_root, new_root, proof)
        return
    expected = _consistency_length(old_size, new_size)
    if len(proof) != expected:
        raise VerificationError(f"consistency proof has wrong length: expected {expected}, got {len(proof)}")
    path = [old_root, *proof] if old_size & (old_size - 1) == 0 else list(proof)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise VerificationError("consistency proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0 or fr != old_root:
        raise VerificationError(f"consistency proof leads to wrong old root: expected {old_root.hex()}, got {fr.hex()}")
    if sr != new_root:
        raise VerificationError(f"consistency proof leads to wrong new root: expected {new_root.hex()}, got {sr.hex()}")


class MemoryTree:
    """An in-memory log keeping the same perfect-subtree nodes as the database (tests and benchmarks)."""

    def __init__(self) -> None:
        self._levels: list[list[bytes]] = []

    @property
    def size(self) -> int:
        return len(self._levels[0]) if self._levels else 0

    def append(self, entry: bytes) -> int:
        """Add an entry; returns its leaf index."""
        index = self.size
        for level, _position, value in new_nodes(index, leaf_hash(entry), self):
            if level == len(self._levels):
                self._levels.append([])
            self._levels[level].append(value)  # nodes of a level complete left to right: position is its length
        return index

    def root(self) -> bytes:
        return root(self.size, self)

    def node(self, level: int, index: int) -> bytes:
        if level >= len(self._levels) or not 0 <= index < len(self._levels[level]):
            raise KeyError(f"no perfect node at level {level}, index {index}")
        return self._levels[level][index]


def _split(size: int) -> int:
    """The largest power of two strictly less than size (size >= 2)."""
    return 1 << ((size - 1).bit_length() - 1)


def _inclusion_length(index: int, size: int) -> int:
    """Length of PATH(index, size): the levels below the last common ancestor plus the right border above it."""
    inner = (index ^ (size - 1)).bit_length()
    return inner + bin(index >> inner).count("1")


def _consistency_length(old_size: int, new_size: int) -> int:
    """Length of PROOF(old_size, new_size), as the RFC 9162 verifier consumes it."""
    inner = ((old_size - 1) ^ (new_size - 1)).bit_length()
    border = bin((old_size - 1) >> inner).count("1")
    shift = (old_size & -old_size).bit_length() - 1  # trailing zero bits of old_size
    seed = 0 if old_size == 1 << shift else 1  # a power-of-two old tree is its own seed, not in the proof
    return seed + inner - shift + border


def _verify_trivial_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """An empty tree precedes every tree; a tree is consistent with itself. Neither needs a proof."""
    if proof:
        raise VerificationError(f"consistency proof has wrong length: expected 0, got {len(proof)}")
    if old_size == 0 and old_root != EMPTY_ROOT:
        raise VerificationError(f"empty tree has wrong root: expected {EMPTY_ROOT.hex()}, got {old_root.hex()}")
    if old_size == new_size and old_root != new_root:
        raise VerificationError(
            f"trees of equal size {old_size} have different roots: expected {old_root.hex()}, got {new_root.hex()}"
        )


def _check_hashes(hashes: Sequence[bytes], what: str) -> None:
    for value in hashes:
        if len(value) != HASH_SIZE:
            raise VerificationError(f"{what} has a hash of wrong size: expected {HASH_SIZE} bytes, got {len(value)}")
