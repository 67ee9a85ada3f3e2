"""RFC 6962 Merkle tree hashes over canonical leaves (docs/adr/0008-verification.md).

    leaf hash  = SHA-256(0x00 || leaf)
    node hash  = SHA-256(0x01 || left || right)
    MTH({})    = SHA-256("")
    MTH(D[n])  = node(MTH(D[0:k]), MTH(D[k:n])), k the largest power of two < n

A leaf is the canonical encoding of one record: topic, partition, offset, ``event_id`` and
``payload_sha256``, each length-prefixed (``leaf_bytes``), so no field can run into the next.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence

LEAF_VERSION = b"pit.leaf.v1"


def leaf_bytes(topic: str, partition: int, offset: int, event_id: str, payload_sha256: str) -> bytes:
    """The canonical leaf: ``LEAF_VERSION`` then each field as a 4-byte big-endian length and its
    bytes (text UTF-8; partition and offset as 8-byte big-endian signed integers); the hash is
    the lower-case hex ``payload_sha256`` as text."""
    parts = (
        LEAF_VERSION,
        topic.encode(),
        struct.pack(">q", partition),
        struct.pack(">q", offset),
        event_id.encode(),
        payload_sha256.lower().encode(),
    )
    return b"".join(struct.pack(">I", len(p)) + p for p in parts)


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_of_hashes(hashes: Sequence[bytes]) -> bytes:
    """The Merkle tree hash of already leaf-hashed entries, by RFC 6962's split rule."""
    n = len(hashes)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashes[0]
    k = 1 << ((n - 1).bit_length() - 1)  # the largest power of two smaller than n
    return node_hash(root_of_hashes(hashes[:k]), root_of_hashes(hashes[k:]))


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """MTH over raw leaves (RFC 6962 section 2.1)."""
    return root_of_hashes([leaf_hash(leaf) for leaf in leaves])


class RangeHasher:
    """Collects leaves of one range in order; ``root()`` any time (recursion depth is log2 n)."""

    def __init__(self) -> None:
        self._hashes: list[bytes] = []

    def add(self, leaf: bytes) -> None:
        self._hashes.append(leaf_hash(leaf))

    def __len__(self) -> int:
        return len(self._hashes)

    def root(self) -> bytes:
        return root_of_hashes(self._hashes)

    @property
    def hashes(self) -> list[bytes]:
        return list(self._hashes)
