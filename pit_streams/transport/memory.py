"""An in-memory transport: the same runtime loop, no broker. For ``pit_streams.testing``.

It keeps Kafka's semantics that the runtime relies on — partitions, per-partition order,
offsets, committed positions per group, failed sends surfacing at ``flush`` — and nothing else.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

from pit_streams.contract.partition import murmur2_partition
from pit_streams.transport.base import (
    ChangelogWrite,
    DeliveryError,
    Fenced,
    Followed,
    Headers,
    Polled,
    Rebalances,
    Record,
    Subscription,
    TopicPartition,
    TransportError,
)
from pit_streams.transport.follow import FollowPlaces


@dataclass
class MemoryBroker:
    """Topics and committed offsets, shared by every ``MemoryTransport`` made from it."""

    topics: dict[str, list[list[Record]]] = field(default_factory=dict)
    committed: dict[tuple[str, TopicPartition], int] = field(default_factory=dict)
    unwritable: set[str] = field(default_factory=set)
    # Each join or rebalance of a group starts a new generation; a member of an older one is fenced at commit,
    # as Kafka's group coordinator does with a stale member's transactional offset commit.
    generations: dict[str, int] = field(default_factory=dict)
    # Topics whose records over this many bytes the broker refuses for good (max.message.bytes).
    max_record_bytes: dict[str, int] = field(default_factory=dict)

    def create_topic(self, name: str, partitions: int = 1) -> None:
        self.topics.setdefault(name, [[] for _ in range(partitions)])

    def append(self, topic: str, value: bytes | None, key: bytes | None, headers: Headers,
               partition: int | None = None, timestamp_ms: int = 0) -> Record:
        parts = self.topics[topic]
        if partition is None:
            # The Java client's default partitioner, as the real transports are configured to use.
            partition = murmur2_partition(key, len(parts)) if key is not None else 0
        log = parts[partition]
        rec = Record(topic, partition, log[-1].offset + 1 if log else 0, key, value, list(headers), timestamp_ms)
        log.append(rec)
        return rec

    def records(self, topic: str) -> list[Record]:
        return [r for part in self.topics.get(topic, []) for r in part]

    def compact(self, topic: str) -> int:
        """What Kafka's log cleaner may do to a compacted topic once ``delete.retention.ms`` has
        passed: keep only the last record of each key, then drop the tombstones. Offsets stay.
        Returns how many records were removed."""
        removed = 0
        for log in self.topics[topic]:
            last = {rec.key: rec.offset for rec in log}
            # As Kafka, never touching the active segment: the partition's last record stays.
            end = log[-1].offset if log else -1
            kept = [r for r in log if r.offset == end or (last[r.key] == r.offset and r.value is not None)]
            removed += len(log) - len(kept)
            log[:] = kept
        return removed


class MemoryTransport:
    def __init__(self, broker: MemoryBroker, partitions: Collection[int] | None = None) -> None:
        """``partitions``: the partition numbers the group gives this member (default: every
        one); a second member of the same group is another transport with its own numbers."""
        self.broker = broker
        self._partitions = None if partitions is None else set(partitions)
        self._sub: Subscription | None = None
        self._positions: dict[TopicPartition, int] = {}
        self._pending: list[tuple[str, bytes | None, bytes | None, Headers, int | None]] = []
        self._in_transaction: list[tuple[str, bytes | None, bytes | None, Headers, int | None]] = []
        self._assigned = False
        self._joined = False  # by its first poll, or by a rebalance() before it
        self._generation = 0
        self._rebalances = Rebalances()
        self._paused: set[TopicPartition] = set()
        self._follower = FollowPlaces()

    async def start(self, subscription: Subscription | None) -> None:
        self._sub = subscription

    def _assign(self) -> None:
        assert self._sub is not None
        tps: list[TopicPartition] = []
        for topic in self._sub.topics:
            if topic not in self.broker.topics:
                raise TransportError(f"topic {topic} does not exist")
            for p in range(len(self.broker.topics[topic])):
                if self._partitions is not None and p not in self._partitions:
                    continue
                tp = TopicPartition(topic, p)
                tps.append(tp)
                self._positions[tp] = self.broker.committed.get((self._sub.group, tp), 0)
        self._assigned = True
        if not self._joined:  # a member joining starts a new generation
            self.broker.generations[self._sub.group] = self.broker.generations.get(self._sub.group, 0) + 1
            self._joined = True
        self._generation = self.broker.generations[self._sub.group]
        self._rebalances.assign(tps)

    def rebalance(self, partitions: Collection[int] | None = None) -> None:
        """A rebalance (eager, as the range assignor's): the next poll reports every partition
        revoked and those of ``partitions`` (default: the same as before) assigned, reads on
        from the committed offsets, and the group has a new generation (a transaction begun
        before is fenced)."""
        assert self._sub is not None
        # A new generation now; this member is in it from its next poll. Members rebalanced one
        # after the other (and polling after) all end in the last one, as in one Kafka rebalance.
        self.broker.generations[self._sub.group] = self.broker.generations.get(self._sub.group, 0) + 1
        self._joined = True
        self._rebalances.revoke(self._positions)
        self._positions.clear()
        if partitions is not None:
            self._partitions = set(partitions)
        self._assigned = False
        self._paused.clear()  # as Kafka's clients: a new assignment starts unpaused

    async def poll(self, max_records: int, timeout_s: float) -> Polled:
        if not self._assigned:
            self._assign()
        out: list[Record] = []
        for tp, position in self._positions.items():
            if tp in self._paused:
                continue
            log = self.broker.topics[tp.topic][tp.partition]
            take = [r for r in log if r.offset >= position][: max_records - len(out)]
            out.extend(take)
            if take:
                self._positions[tp] = take[-1].offset + 1
            if len(out) >= max_records:
                break
        return self._rebalances.take(out)

    def send(self, topic: str, value: bytes | None, key: bytes | None, headers: Headers,
             partition: int | None = None) -> None:
        self._pending.append((topic, value, key, headers, partition))

    @property
    def _exactly_once(self) -> bool:
        return self._sub is not None and self._sub.guarantee == "exactly_once"

    async def flush(self) -> dict[TopicPartition, int]:
        return self._flush_now()

    def _flush_now(self) -> dict[TopicPartition, int]:
        pending, self._pending = self._pending, []
        failed = sorted({t for t, *_ in pending if t not in self.broker.topics or t in self.broker.unwritable})
        limits = self.broker.max_record_bytes
        too_large = sorted({t for t, v, *_ in pending if t in limits and len(v or b"") > limits[t]})
        if failed or too_large:
            self._in_transaction.clear()
            if failed:
                raise DeliveryError(f"unknown or unwritable topic(s): {', '.join(failed)}")
            raise DeliveryError(f"MSG_SIZE_TOO_LARGE on {', '.join(too_large)}", permanent=True)
        if self._exactly_once:  # held back until the transaction commits
            self._in_transaction.extend(pending)
            return {}
        return self._append(pending)

    def _append(self, pending: list[tuple[str, bytes | None, bytes | None, Headers, int | None]]) -> dict[
            TopicPartition, int]:
        acked: dict[TopicPartition, int] = {}
        for topic, value, key, headers, partition in pending:
            rec = self.broker.append(topic, value, key, headers, partition)
            acked[TopicPartition(topic, rec.partition)] = rec.offset
        return acked

    def commit(
        self, changelog_topic: str, changelog: Mapping[int, Sequence[ChangelogWrite]],
        offsets: Mapping[TopicPartition, int],
    ) -> Awaitable[dict[int, int]]:
        future: asyncio.Future[dict[int, int]] = asyncio.get_running_loop().create_future()
        try:
            future.set_result(self._commit_now(changelog_topic, changelog, offsets))
        except Exception as exc:
            future.set_exception(exc)
        return future

    def _commit_now(
        self, changelog_topic: str, changelog: Mapping[int, Sequence[ChangelogWrite]],
        offsets: Mapping[TopicPartition, int],
    ) -> dict[int, int]:
        assert self._sub is not None
        self._flush_now()
        if self.broker.generations.get(self._sub.group, 0) != self._generation:
            self._in_transaction.clear()
            raise Fenced(f"group {self._sub.group} has a newer generation: this member's transaction was aborted")
        if changelog_topic in self.broker.unwritable:
            self._in_transaction.clear()
            raise DeliveryError(f"unwritable topic: {changelog_topic}")
        staged, self._in_transaction = self._in_transaction, []
        self._append(staged)
        written: dict[int, int] = {}
        for partition, records in changelog.items():
            for key, value in records:
                written[partition] = self.broker.append(changelog_topic, value, key, [], partition).offset
        for tp, offset in offsets.items():
            self.broker.committed[(self._sub.group, tp)] = offset
        return written

    async def abort(self) -> None:
        self._in_transaction.clear()
        self._pending.clear()

    async def seek(self, offsets: Mapping[TopicPartition, int]) -> None:
        # As the Kafka clients: a partition no longer assigned is not the member's to seek.
        self._positions.update({tp: o for tp, o in offsets.items() if tp in self._positions})

    async def read_partition(self, tp: TopicPartition, start_offset: int, max_records: int | None = None) -> list[
            Record]:
        parts = self.broker.topics.get(tp.topic)
        if parts is None or tp.partition >= len(parts):
            return []
        return [r for r in parts[tp.partition] if r.offset >= start_offset][:max_records]

    async def read_followed(self, starts: Mapping[TopicPartition, int], max_records: int) -> Followed:
        self._follower.plan(starts)
        out: list[Record] = []
        for tp in self._follower.followed():
            log = self.broker.topics[tp.topic][tp.partition]
            self._follower.end(tp, log[-1].offset + 1 if log else 0)
            for rec in log:
                if len(out) >= max_records:
                    break
                if self._follower.take(tp, rec.offset):
                    out.append(rec)
            else:  # read to the end: the position is the end, past the compacted-away offsets
                self._follower.at(tp, log[-1].offset + 1 if log else 0)
        return Followed(out, self._follower.lag())

    async def committed(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        assert self._sub is not None
        group = self._sub.group
        return {tp: self.broker.committed[(group, tp)] for tp in tps if (group, tp) in self.broker.committed}

    async def pause(self, tps: Sequence[TopicPartition]) -> None:
        self._paused.update(tp for tp in tps if tp in self._positions)

    async def resume(self, tps: Sequence[TopicPartition]) -> None:
        self._paused.difference_update(tps)

    def end_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        out: dict[TopicPartition, int] = {}
        for tp in tps:
            log = self.broker.topics[tp.topic][tp.partition]
            out[tp] = log[-1].offset + 1 if log else 0
        return out

    async def partitions_for(self, topic: str) -> int:
        if topic not in self.broker.topics:
            raise TransportError(f"topic {topic} does not exist: run 'pit-streams topics apply'")
        return len(self.broker.topics[topic])

    async def stop(self) -> None:
        self._pending.clear()
