"""RFC 6962 range hashes: the published vectors, and properties a verifier relies on."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from pit_streams.verify.merkle import RangeHasher, leaf_bytes, leaf_hash, merkle_root, node_hash

# RFC 6962 reference leaves and the tree head for each size 0..8 (the Certificate Transparency vectors).
LEAVES = [bytes.fromhex(h) for h in
          ("", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f")]
ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def test_the_rfc_6962_tree_heads_for_every_size() -> None:
    for size, want in enumerate(ROOTS):
        assert merkle_root(LEAVES[:size]).hex() == want, f"size {size}"


def test_the_empty_tree_is_the_hash_of_nothing() -> None:
    assert merkle_root([]) == hashlib.sha256(b"").digest()


def test_the_split_is_the_largest_power_of_two_not_the_midpoint() -> None:
    h = [leaf_hash(leaf) for leaf in LEAVES[:5]]
    rfc = node_hash(node_hash(node_hash(h[0], h[1]), node_hash(h[2], h[3])), h[4])
    midpoint = node_hash(node_hash(node_hash(h[0], h[1]), h[2]), node_hash(h[3], h[4]))
    assert merkle_root(LEAVES[:5]) == rfc != midpoint


def test_leaf_fields_cannot_run_into_each_other() -> None:
    a = leaf_bytes("pit.v1.exec.trade_fill", 1, 2, "ab", "cd")
    b = leaf_bytes("pit.v1.exec.trade_fill", 1, 2, "a", "bcd")
    assert a != b
    assert leaf_bytes("t", 0, 1, "e", "AB") == leaf_bytes("t", 0, 1, "e", "ab")  # hex case is not data


@given(st.lists(st.binary(max_size=16), max_size=40))
def test_the_incremental_hasher_is_the_tree(leaves: list[bytes]) -> None:
    hasher = RangeHasher()
    for leaf in leaves:
        hasher.add(leaf)
    assert hasher.root() == merkle_root(leaves) and len(hasher) == len(leaves)


@given(st.lists(st.binary(max_size=8), min_size=1, max_size=30), st.data())
def test_changing_dropping_or_reordering_any_leaf_changes_the_root(leaves: list[bytes], data: st.DataObject) -> None:
    root = merkle_root(leaves)
    i = data.draw(st.integers(0, len(leaves) - 1))
    changed = [*leaves[:i], leaves[i] + b"x", *leaves[i + 1:]]
    assert merkle_root(changed) != root
    assert merkle_root(leaves[:i] + leaves[i + 1:]) != root
    j = data.draw(st.integers(0, len(leaves) - 1))
    if leaves[i] != leaves[j]:
        swapped = list(leaves)
        swapped[i], swapped[j] = swapped[j], swapped[i]
        assert merkle_root(swapped) != root


@given(st.lists(st.binary(max_size=8), min_size=2, max_size=30))
def test_a_leaf_never_poses_as_an_inner_node(leaves: list[bytes]) -> None:
    # Second-preimage resistance of the 0x00/0x01 prefixes: the two children's hashes, offered as
    # one leaf, never give the parent's hash.
    assert merkle_root([leaf_hash(leaves[0]) + leaf_hash(leaves[1])]) != merkle_root(leaves[:2])
