"""Which partition a record key belongs on: the Java client's default partitioner, as a pure function.

Per-key state and dedupe live with the partition the key hashes to, so every producer of a
topic — Java, librdkafka (``partitioner=murmur2_random``), kafka-go (``Murmur2Balancer``),
franz-go (its default) — must place a key where this function says.
"""

from __future__ import annotations

import struct

from pit_streams.errors import ContractError

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF
# Keys repeat (a cell sends many records), so placements are remembered; bounded so a stream of
# hostile unique keys cannot grow it without limit.
_CACHE_LIMIT = 65_536
_cache: dict[tuple[bytes, int], int] = {}


def murmur2(data: bytes) -> int:
    """Kafka's ``Utils.murmur2`` as an unsigned 32-bit value (Java's ``int`` bits, reinterpreted)."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    end = length & ~3
    for k in struct.unpack_from(f"<{end >> 2}I", data):
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    rest = length & 3
    if rest:
        if rest == 3:
            h ^= data[end + 2] << 16
        if rest >= 2:
            h ^= data[end + 1] << 8
        h ^= data[end]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def murmur2_partition(key: bytes, partitions: int) -> int:
    """The partition the Java client's default partitioner picks for ``key``: ``toPositive(murmur2) % n``.

    >>> murmur2_partition(b"foobar", 10)
    6
    """
    cached = _cache.get((key, partitions))
    if cached is None:
        if partitions < 1:
            raise ContractError(f"a topic has at least one partition, not {partitions}")
        if len(_cache) >= _CACHE_LIMIT:
            _cache.clear()
        cached = _cache[(key, partitions)] = (murmur2(key) & 0x7FFFFFFF) % partitions
    return cached
