"""The Merkle log against RFC 6962/9162: the reference vectors, a reference implementation and tampering."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evidence.errors import VerificationError
from evidence.merkle import (
    EMPTY_ROOT,
    MemoryTree,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    new_nodes,
    node_hash,
    root,
    subtree_hash,
    verify_consistency,
    verify_inclusion,
)

# The 8-leaf reference tree of certificate-transparency-go and transparency-dev/merkle (proof/verify_test.go).
LEAVES = [
    bytes.fromhex(h)
    for h in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f")
]
ROOTS = [
    bytes.fromhex(h)
    for h in (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    )
]
# (leaf index, tree size, proof); the Go file numbers leaves from 1.
INCLUSION_VECTORS = [
    (0, 1, []),
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
# (old size, new size, proof)
CONSISTENCY_VECTORS = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]
SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")


def tree_of(entries: list[bytes]) -> MemoryTree:
    tree = MemoryTree()
    for entry in entries:
        tree.append(entry)
    return tree


def reference_mth(leaves: list[bytes]) -> bytes:
    """MTH straight from RFC 9162 section 2.1.1, over entries."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaf_hash(leaves[0])
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return node_hash(reference_mth(leaves[:k]), reference_mth(leaves[k:]))


def reference_path(m: int, leaves: list[bytes]) -> list[bytes]:
    """PATH(m, D[n]) straight from RFC 9162 section 2.1.3.1."""
    if len(leaves) == 1:
        return []
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    if m < k:
        return reference_path(m, leaves[:k]) + [reference_mth(leaves[k:])]
    return reference_path(m - k, leaves[k:]) + [reference_mth(leaves[:k])]


def reference_proof(m: int, leaves: list[bytes], whole: bool = True) -> list[bytes]:
    """SUBPROOF(m, D[n], b) straight from RFC 9162 section 2.1.4.1."""
    if m == len(leaves):
        return [] if whole else [reference_mth(leaves)]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    if m <= k:
        return reference_proof(m, leaves[:k], whole) + [reference_mth(leaves[k:])]
    return reference_proof(m - k, leaves[k:], False) + [reference_mth(leaves[:k])]


def flip(value: bytes) -> bytes:
    return bytes([value[0] ^ 0x10]) + value[1:]


@pytest.fixture(scope="module")
def reference_tree() -> MemoryTree:
    return tree_of(LEAVES)


def test_empty_root_is_hash_of_nothing() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert MemoryTree().root() == EMPTY_ROOT


def test_roots_of_reference_tree(reference_tree: MemoryTree) -> None:
    assert [root(size, reference_tree) for size in range(1, 9)] == ROOTS


@pytest.mark.parametrize(("index", "size", "expected"), INCLUSION_VECTORS)
def test_reference_inclusion_proofs(reference_tree: MemoryTree, index: int, size: int, expected: list[str]) -> None:
    proof = inclusion_proof(index, size, reference_tree)

    assert [h.hex() for h in proof] == expected
    verify_inclusion(leaf_hash(LEAVES[index]), index, size, proof, ROOTS[size - 1])


@pytest.mark.parametrize(("old", "new", "expected"), CONSISTENCY_VECTORS)
def test_reference_consistency_proofs(reference_tree: MemoryTree, old: int, new: int, expected: list[str]) -> None:
    proof = consistency_proof(old, new, reference_tree)

    assert [h.hex() for h in proof] == expected
    verify_consistency(old, new, ROOTS[old - 1], ROOTS[new - 1], proof)


@pytest.mark.parametrize(("index", "size", "expected"), [v for v in INCLUSION_VECTORS if v[2]])
def test_corrupted_reference_inclusion_proofs_are_rejected(index: int, size: int, expected: list[str]) -> None:
    # The probes of transparency-dev/merkle's corruptInclusionProof.
    proof, good_root, leaf = [bytes.fromhex(h) for h in expected], ROOTS[size - 1], leaf_hash(LEAVES[index])
    probes = [
        (index + 1, size, proof, good_root, leaf),
        (index ^ 2, size, proof, good_root, leaf),
        (index, size * 2, proof, good_root, leaf),
        (index, size // 2, proof, good_root, leaf),
        (index, size, proof, good_root, leaf_hash(b"WrongLeaf")),
        (index, size, proof, EMPTY_ROOT, leaf),
        (index, size, proof, SOME_HASH, leaf),
        (index, size, [*proof, good_root], good_root, leaf),
        (index, size, [good_root, *proof], good_root, leaf),
        (index, size, proof[:-1], good_root, leaf),
        (index, size, [*proof, b""], good_root, leaf),
        *[(index, size, [*proof[:i], flip(proof[i]), *proof[i + 1 :]], good_root, leaf) for i in range(len(proof))],
    ]
    if index:
        probes.append((index - 1, size, proof, good_root, leaf))
    for probe in probes:
        with pytest.raises(VerificationError):
            verify_inclusion(probe[4], probe[0], probe[1], probe[2], probe[3])


@pytest.mark.parametrize(("old", "new", "expected"), [v for v in CONSISTENCY_VECTORS if v[2]])
def test_corrupted_reference_consistency_proofs_are_rejected(old: int, new: int, expected: list[str]) -> None:
    # The probes of transparency-dev/merkle's corruptConsistencyProof.
    proof, root1, root2 = [bytes.fromhex(h) for h in expected], ROOTS[old - 1], ROOTS[new - 1]
    probes = [
        (old - 1, new, root1, root2, proof),
        (old + 1, new, root1, root2, proof),
        (old ^ 2, new, root1, root2, proof),
        (old, new * 2, root1, root2, proof),
        (old, new // 2, root1, root2, proof),
        (old, new, SOME_HASH, root2, proof),
        (old, new, root1, SOME_HASH, proof),
        (old, new, root2, root1, proof),
        (old, new, root1, root2, []),
        (old, new, root1, root2, [*proof, root1]),
        (old, new, root1, root2, [*proof, root2]),
        (old, new, root1, root2, [root1, *proof]),
        (old, new, root1, root2, [proof[0], *proof]),
        (old, new, root1, root2, proof[:-1]),
        *[(old, new, root1, root2, [*proof[:i], flip(proof[i]), *proof[i + 1 :]]) for i in range(len(proof))],
    ]
    for probe in probes:
        with pytest.raises(VerificationError):
            verify_consistency(*probe)


@pytest.mark.parametrize(
    ("old", "new", "old_root", "new_root", "proof", "valid"),
    [
        (0, 0, EMPTY_ROOT, EMPTY_ROOT, [], True),
        (0, 3, EMPTY_ROOT, ROOTS[2], [], True),
        (3, 3, ROOTS[2], ROOTS[2], [], True),
        (3, 3, ROOTS[2], ROOTS[3], [], False),
        (3, 3, ROOTS[2], ROOTS[2], [EMPTY_ROOT], False),
        (0, 3, SOME_HASH, ROOTS[2], [], False),
        (0, 3, EMPTY_ROOT, ROOTS[2], [EMPTY_ROOT], False),
        (4, 3, ROOTS[3], ROOTS[2], [], False),
        (1, 2, ROOTS[0], ROOTS[1], [], False),
    ],
)
def test_trivial_consistency(
    old: int, new: int, old_root: bytes, new_root: bytes, proof: list[bytes], valid: bool
) -> None:
    if valid:
        verify_consistency(old, new, old_root, new_root, proof)
    else:
        with pytest.raises(VerificationError):
            verify_consistency(old, new, old_root, new_root, proof)


@pytest.mark.parametrize(("index", "size"), [(0, 0), (1, 1), (2, 1), (-1, 3)])
def test_inclusion_outside_the_tree_is_rejected(index: int, size: int) -> None:
    with pytest.raises(VerificationError, match="leaf index outside the tree"):
        verify_inclusion(SOME_HASH, index, size, [], SOME_HASH)


def test_hashes_of_wrong_size_are_rejected() -> None:
    with pytest.raises(VerificationError, match="wrong size: expected 32 bytes, got 0"):
        verify_inclusion(b"", 0, 1, [], b"")


def test_proofs_outside_the_tree_are_caller_errors(reference_tree: MemoryTree) -> None:
    with pytest.raises(ValueError):
        inclusion_proof(3, 3, reference_tree)
    with pytest.raises(ValueError):
        consistency_proof(4, 3, reference_tree)


def test_subtree_hash_of_any_range_matches_the_rfc() -> None:
    entries = [b"e%d" % i for i in range(13)]
    tree = tree_of(entries)
    for start in range(14):
        for end in range(start, 14):
            assert subtree_hash(start, end, tree) == reference_mth(entries[start:end]), (start, end)


def test_new_nodes_are_the_perfect_subtrees_an_append_completes() -> None:
    tree = tree_of([b"e%d" % i for i in range(7)])

    nodes = new_nodes(7, leaf_hash(b"e7"), tree)

    assert [(level, index) for level, index, _ in nodes] == [(0, 7), (1, 3), (2, 1), (3, 0)]
    assert nodes[-1][2] == reference_mth([b"e%d" % i for i in range(8)])


class CountingSource:
    """A log of any size whose nodes are made up: counts lookups, which is all a cost test needs."""

    def __init__(self) -> None:
        self.lookups = 0

    def node(self, level: int, index: int) -> bytes:
        self.lookups += 1
        return hashlib.sha256(b"%d/%d" % (level, index)).digest()


@pytest.mark.parametrize("size", [1_000_000, 2**40 + 12_345, 2**62 - 1])
def test_roots_and_proofs_need_logarithmic_lookups(size: int) -> None:
    bound = 2 * size.bit_length()
    for work in (
        lambda s: root(size, s),
        lambda s: inclusion_proof(size // 3, size, s),
        lambda s: inclusion_proof(size - 1, size, s),
        lambda s: consistency_proof(size // 3, size, s),
        lambda s: consistency_proof(size - 1, size, s),
    ):
        source = CountingSource()
        work(source)
        assert source.lookups <= bound


entries_strategy = st.integers(min_value=1, max_value=70).flatmap(
    lambda n: st.lists(st.binary(max_size=8), min_size=n, max_size=n, unique=True)
)


@settings(max_examples=60, deadline=None)
@given(entries=entries_strategy, data=st.data())
def test_every_inclusion_proof_verifies_and_tampering_fails(entries: list[bytes], data: st.DataObject) -> None:
    tree, size = tree_of(entries), len(entries)
    tree_root = tree.root()
    assert tree_root == reference_mth(entries)
    for index, entry in enumerate(entries):
        proof = inclusion_proof(index, size, tree)
        assert proof == reference_path(index, entries)
        verify_inclusion(leaf_hash(entry), index, size, proof, tree_root)

    index = data.draw(st.integers(0, size - 1), label="index")
    proof, leaf = inclusion_proof(index, size, tree), leaf_hash(entries[index])
    if proof:
        at = data.draw(st.integers(0, len(proof) - 1), label="tampered hash")
        with pytest.raises(VerificationError):
            verify_inclusion(leaf, index, size, [*proof[:at], flip(proof[at]), *proof[at + 1 :]], tree_root)
    other_index = data.draw(st.integers(0, size - 1).filter(lambda i: i != index), label="other index")
    with pytest.raises(VerificationError):
        verify_inclusion(leaf, other_index, size, proof, tree_root)
    other_size = data.draw(st.integers(index + 1, size + 8).filter(lambda n: n != size), label="other size")
    bigger = tree_of([*entries, *(b"more %d" % i for i in range(8))])
    with pytest.raises(VerificationError):  # checked against the true root of that size: what a checkpoint gives
        verify_inclusion(leaf, index, other_size, proof, root(other_size, bigger))


@settings(max_examples=40, deadline=None)
@given(entries=entries_strategy, data=st.data())
def test_every_consistency_proof_verifies_and_tampering_fails(entries: list[bytes], data: st.DataObject) -> None:
    tree, new = tree_of(entries), len(entries)
    roots = [root(size, tree) for size in range(new + 1)]
    for old in range(new + 1):
        proof = consistency_proof(old, new, tree)
        if 0 < old < new:
            assert proof == reference_proof(old, entries)
        verify_consistency(old, new, roots[old], roots[new], proof)

    old = data.draw(st.integers(1, new), label="old size")
    proof = consistency_proof(old, new, tree)
    if proof:
        at = data.draw(st.integers(0, len(proof) - 1), label="tampered hash")
        with pytest.raises(VerificationError):
            verify_consistency(old, new, roots[old], roots[new], [*proof[:at], flip(proof[at]), *proof[at + 1 :]])
    other_old = data.draw(st.integers(1, new).filter(lambda n: n != old), label="other old size") if new > 1 else None
    if other_old is not None:
        with pytest.raises(VerificationError):
            verify_consistency(other_old, new, roots[other_old], roots[new], proof)
    if old < new:
        other_new = data.draw(st.integers(old, new - 1), label="other new size")
        with pytest.raises(VerificationError):
            verify_consistency(old, other_new, roots[old], roots[other_new], proof)


@settings(max_examples=40, deadline=None)
@given(entries=entries_strategy, data=st.data())
def test_rewritten_history_is_not_consistent(entries: list[bytes], data: st.DataObject) -> None:
    """pymerkle's check accepts a log with an entry prepended; RFC 9162's must not, nor a changed old entry."""
    old_root, old = tree_of(entries).root(), len(entries)
    later = [b"later %d" % i for i in range(data.draw(st.integers(0, 5), label="appended"))]
    changed_at = data.draw(st.integers(0, old - 1), label="changed entry")
    forks = {
        "prepended": [b"prepended", *entries, *later],
        "changed": [*entries[:changed_at], entries[changed_at] + b"!", *entries[changed_at + 1 :], *later],
    }
    for entries_now in forks.values():
        fork = tree_of(entries_now)
        with pytest.raises(VerificationError):
            verify_consistency(old, fork.size, old_root, fork.root(), consistency_proof(old, fork.size, fork))
