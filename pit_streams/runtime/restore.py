"""Restoring partition stores from the changelog a chunk at a time, between polls.

A partition gained is paused in the consumer and its store restored one chunk per loop turn,
interleaved with polls (docs/adr/0003-state-changelog.md, "Restore in steps"). However large the
store, the member keeps polling (it never overruns ``max.poll.interval.ms`` and is never dropped
from the group mid-restore), partitions already restored keep processing, and memory holds one
chunk of the changelog, never the whole partition. Each chunk is applied atomically with the
changelog offset it reaches, so a restore cut short (a crash, the partition revoked) resumes
from there.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from pit_streams.runtime.metrics import Metrics
from pit_streams.state.changelog import restore_changes
from pit_streams.state.store import PartitionStore
from pit_streams.transport.base import Record, TopicPartition, Transport

log = logging.getLogger("pit_streams.worker")


@dataclass
class PendingRestore:
    """A store being restored, and where each of its source partitions must be read again from."""

    store: PartitionStore
    changelog: TopicPartition
    started: float = field(default_factory=time.monotonic)
    restored: int = 0
    read: bool = False  # a first chunk was read
    # Records polled for the partition while it restores are set aside: each source partition is
    # read again from the first of them once the store is ready.
    held: dict[TopicPartition, int] = field(default_factory=dict)
    # The group's committed offsets of the partition's topics, read before the first chunk (None:
    # unknown), which the restored store must not be behind (runtime/state_gap.py).
    group_offsets: dict[TopicPartition, int] | None = None


class Restores:
    """The restores in progress of one worker, advanced a chunk per ``step``."""

    def __init__(self, transport: Transport, changelog_topic: str, ttl_ms: int, metrics: Metrics,
                 chunk_records: int) -> None:
        self._transport = transport
        self._changelog_topic = changelog_topic
        self._ttl_ms = ttl_ms
        self._metrics = metrics
        self._chunk = chunk_records
        self.pending: dict[int, PendingRestore] = {}

    def begin(self, partition: int, store: PartitionStore, group_offsets: dict[TopicPartition, int] | None) -> None:
        self.pending[partition] = PendingRestore(store, TopicPartition(self._changelog_topic, partition),
                                                 group_offsets=group_offsets)

    def hold(self, record: Record) -> None:
        """Set aside a record of a partition still restoring (it is read again when ready)."""
        held = self.pending[record.partition].held
        tp = TopicPartition(record.topic, record.partition)
        if tp not in held or record.offset < held[tp]:
            held[tp] = record.offset

    def cancel(self, partition: int) -> PartitionStore | None:
        """The partition was revoked mid-restore: its store, what was applied kept (for a later
        owner here, or a standby that reads on from there)."""
        restore = self.pending.pop(partition, None)
        return restore.store if restore is not None else None

    def close(self) -> None:
        for partition in list(self.pending):
            self.pending.pop(partition).store.close()

    async def step(self) -> list[tuple[int, PendingRestore]]:
        """Apply the next chunk of each restore not begun yet, or else of the lowest partition
        pending; the restores that reached their end.

        A first chunk each makes every small store ready at once; after that one partition at a
        time keeps the transport's reader on it, reading on where the last chunk ended instead of
        fetching again."""
        done: list[tuple[int, PendingRestore]] = []
        fresh = sorted((p, r) for p, r in self.pending.items() if not r.read)
        for partition, restore in fresh or [min(self.pending.items())]:
            restore.read = True
            store = restore.store
            records = await self._transport.read_partition(restore.changelog, store.changelog_offset + 1, self._chunk)
            if records:
                apply_chunk(store, records, self._ttl_ms, restore.changelog)
                restore.restored += len(records)
                self._metrics.restored_records += len(records)
            if len(records) < self._chunk:  # fewer than asked for: the end of the changelog partition
                del self.pending[partition]
                done.append((partition, restore))
                log.info("partition %d ready: %d changelog record(s) restored in %.1fs", partition,
                         restore.restored, time.monotonic() - restore.started)
        return done


def apply_chunk(store: PartitionStore, records: Sequence[Record], ttl_ms: int, changelog: TopicPartition) -> None:
    """Fold committed changelog records (in offset order, the next after the store's changelog
    offset) into ``store``, atomically with the offset of the last: the one way a store catches
    up with its changelog, whether it is restored for its owner or kept warm as a standby."""
    restored = restore_changes(records, ttl_ms)
    store.apply(restored.changes, records[-1].offset)
    if restored.unreadable:
        log.warning("%d unreadable changelog record(s) in %s skipped", restored.unreadable, changelog)
