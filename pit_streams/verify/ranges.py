"""Reading offset ranges of a topic and turning their records into Merkle leaves."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from google.protobuf.message import DecodeError
from pit.envelope.v1.envelope_pb2 import EventEnvelope

from pit_streams.transport.base import Record, TopicPartition, Transport
from pit_streams.verify.merkle import RangeHasher, leaf_bytes, merkle_root


@dataclass(frozen=True, slots=True)
class OffsetRange:
    """``start`` to ``end`` (exclusive); ``end`` None: up to the partition's current end."""

    start: int = 0
    end: int | None = None

    def __contains__(self, offset: object) -> bool:
        return isinstance(offset, int) and offset >= self.start and (self.end is None or offset < self.end)


def record_leaf(rec: Record) -> bytes:
    """The canonical leaf of one record (docs/adr/0008-verification.md): its coordinates, the
    envelope's ``event_id`` and the SHA-256 of the payload bytes actually on the log. A record that
    is not an envelope gets an empty id and the hash of its raw value: it is still counted."""
    event_id, payload = "", rec.value or b""
    if rec.value is not None:
        env = EventEnvelope()
        try:
            env.ParseFromString(rec.value)
        except (DecodeError, ValueError):
            pass
        else:
            event_id, payload = env.event_id, env.payload
    return leaf_bytes(rec.topic, rec.partition, rec.offset, event_id, hashlib.sha256(payload).hexdigest())


async def read_range(transport: Transport, tp: TopicPartition, offsets: OffsetRange) -> list[Record]:
    """The committed records of ``tp`` in ``offsets``, in offset order."""
    records = await transport.read_partition(tp, offsets.start)
    return [r for r in records if r.offset in offsets]


@dataclass(frozen=True, slots=True)
class PartitionRoot:
    tp: TopicPartition
    count: int
    first: int | None
    last: int | None
    root: bytes


def partition_root(tp: TopicPartition, records: Sequence[Record]) -> PartitionRoot:
    hasher = RangeHasher()
    for rec in records:
        hasher.add(record_leaf(rec))
    first = records[0].offset if records else None
    last = records[-1].offset if records else None
    return PartitionRoot(tp, len(records), first, last, hasher.root())


def total_root(roots: Sequence[PartitionRoot]) -> bytes:
    """The tree over the partition roots, in (topic, partition) order: each root is one leaf."""
    return merkle_root([r.root for r in sorted(roots, key=lambda r: r.tp)])
