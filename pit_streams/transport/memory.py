"""An in-memory transport: the same runtime loop, no broker. For ``pit_streams.testing``.

It keeps Kafka's semantics that the runtime relies on — partitions, per-partition order,
offsets, committed positions per group, failed sends surfacing at ``flush`` — and nothing else.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from pit_streams.contract.partition import murmur2_partition
from pit_streams.transport.base import (
    DeliveryError,
    Headers,
    Record,
    Subscription,
    TopicPartition,
    TransportError,
)


@dataclass
class MemoryBroker:
    """Topics and committed offsets, shared by every ``MemoryTransport`` made from it."""

    topics: dict[str, list[list[Record]]] = field(default_factory=dict)
    committed: dict[tuple[str, TopicPartition], int] = field(default_factory=dict)
    unwritable: set[str] = field(default_factory=set)

    def create_topic(self, name: str, partitions: int = 1) -> None:
        self.topics.setdefault(name, [[] for _ in range(partitions)])

    def append(self, topic: str, value: bytes | None, key: bytes | None, headers: Headers,
               partition: int | None = None, timestamp_ms: int = 0) -> Record:
        parts = self.topics[topic]
        if partition is None:
            # The Java client's default partitioner, as the real transports are configured to use.
            partition = murmur2_partition(key, len(parts)) if key is not None else 0
        log = parts[partition]
        rec = Record(topic, partition, len(log), key, value, list(headers), timestamp_ms)
        log.append(rec)
        return rec

    def records(self, topic: str) -> list[Record]:
        return [r for part in self.topics.get(topic, []) for r in part]


class MemoryTransport:
    def __init__(self, broker: MemoryBroker) -> None:
        self.broker = broker
        self._sub: Subscription | None = None
        self._positions: dict[TopicPartition, int] = {}
        self._pending: list[tuple[str, bytes | None, bytes | None, Headers, int | None]] = []
        self._assigned = False

    async def start(self, subscription: Subscription | None) -> None:
        self._sub = subscription

    async def _assign(self) -> None:
        assert self._sub is not None
        tps: list[TopicPartition] = []
        for topic in self._sub.topics:
            if topic not in self.broker.topics:
                raise TransportError(f"topic {topic} does not exist")
            for p in range(len(self.broker.topics[topic])):
                tp = TopicPartition(topic, p)
                tps.append(tp)
                self._positions[tp] = self.broker.committed.get((self._sub.group, tp), 0)
        self._assigned = True
        result = self._sub.on_assigned(tps)
        if inspect.isawaitable(result):
            await result

    async def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        if not self._assigned:
            await self._assign()
        out: list[Record] = []
        for tp, position in self._positions.items():
            log = self.broker.topics[tp.topic][tp.partition]
            take = log[position : position + max_records - len(out)]
            out.extend(take)
            self._positions[tp] = position + len(take)
            if len(out) >= max_records:
                break
        return out

    def send(self, topic: str, value: bytes | None, key: bytes | None, headers: Headers,
             partition: int | None = None) -> None:
        self._pending.append((topic, value, key, headers, partition))

    async def flush(self) -> dict[TopicPartition, int]:
        pending, self._pending = self._pending, []
        failed = sorted({t for t, *_ in pending if t not in self.broker.topics or t in self.broker.unwritable})
        acked: dict[TopicPartition, int] = {}
        for topic, value, key, headers, partition in pending:
            if topic in failed:
                continue
            rec = self.broker.append(topic, value, key, headers, partition)
            acked[TopicPartition(topic, rec.partition)] = rec.offset
        if failed:
            raise DeliveryError(f"unknown or unwritable topic(s): {', '.join(failed)}")
        return acked

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        assert self._sub is not None
        for tp, offset in offsets.items():
            self.broker.committed[(self._sub.group, tp)] = offset

    async def seek(self, offsets: Mapping[TopicPartition, int]) -> None:
        self._positions.update(offsets)

    async def read_partition(self, tp: TopicPartition, start_offset: int) -> list[Record]:
        parts = self.broker.topics.get(tp.topic)
        if parts is None or tp.partition >= len(parts):
            return []
        return list(parts[tp.partition][max(start_offset, 0):])

    def end_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: len(self.broker.topics[tp.topic][tp.partition]) for tp in tps}

    async def partitions_for(self, topic: str) -> int:
        if topic not in self.broker.topics:
            raise TransportError(f"topic {topic} does not exist: run 'pit-streams topics apply'")
        return len(self.broker.topics[topic])

    async def stop(self) -> None:
        self._pending.clear()
