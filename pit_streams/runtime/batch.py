"""What one poll batch changes in one partition: dedupe marks, state writes, next offsets.

Nothing here is durable until the checkpoint has every side effect acknowledged.
"""

from __future__ import annotations

from collections.abc import Iterator

from google.protobuf.timestamp_pb2 import Timestamp

from pit_streams.contract import Key
from pit_streams.state.changelog import dedupe_record, state_record
from pit_streams.state.store import PartitionStore, StoreChanges
from pit_streams.transport.base import TopicPartition


class PartitionBatch:
    """The pending work of partition number ``partition`` (of every subscribed topic)."""

    def __init__(self, partition: int, store: PartitionStore, ttl_ms: int, now_ms: int) -> None:
        self.partition = partition
        self.store = store
        self.changes = StoreChanges()
        self.next_offsets: dict[TopicPartition, int] = {}
        self._ttl_ms = ttl_ms
        self.now_ms = now_ms
        self._seen_by_key: dict[str, tuple[Key, list[str]]] = {}
        self._state_cause: dict[str, tuple[Key, str]] = {}

    # -- reading state, for KeyedState: this batch's writes shadow the store ----------------
    def get(self, store_key: str) -> int | None:
        if store_key in self.changes.state:
            return self.changes.state[store_key]
        return self.store.get_state(store_key)

    def items(self, prefix: str) -> Iterator[tuple[str, int]]:
        merged = dict(self.store.state_items(prefix))
        for k, v in self.changes.state.items():
            if k.startswith(prefix):
                if v is None:
                    merged.pop(k, None)
                else:
                    merged[k] = v
        return iter(sorted(merged.items()))

    # -- recording outcomes ----------------------------------------------------------------
    def done(self, tp: TopicPartition, offset: int) -> None:
        """Offset ``offset`` of ``tp`` is fully handled (processed, deduped or dead-lettered)."""
        self.next_offsets[tp] = offset + 1

    def is_seen(self, event_id: str) -> bool:
        return event_id in self.changes.seen

    def mark_processed(self, key: Key, event_id: str, state_writes: dict[str, int | None]) -> None:
        self.changes.seen[event_id] = self.now_ms + self._ttl_ms
        text = str(key)
        entry = self._seen_by_key.get(text)
        if entry is None:
            self._seen_by_key[text] = (key, [event_id])
        else:
            entry[1].append(event_id)
        for store_key, value in state_writes.items():
            self.changes.state[store_key] = value
            self._state_cause[store_key] = (key, event_id)

    def forget_expired(self, limit: int) -> list[str]:
        """Queue expired dedupe records for removal; returns their changelog keys (to tombstone)."""
        expired = self.store.expired(self.now_ms, limit)
        self.changes.forgotten.extend(expired)
        return [clkey for clkey, _, _ in expired]

    # -- the changelog: state entries first, then the ids they go with ------------------------
    def changelog_records(self, producer: str, ts: Timestamp) -> list[tuple[bytes, bytes | None]]:
        """Records for the changelog partition, ordered so that a record's dedupe mark is
        never acknowledged before its state writes (same partition, idempotent producer)."""
        out: list[tuple[bytes, bytes | None]] = []
        for store_key, value in self.changes.state.items():
            key, cause = self._state_cause[store_key]
            out.append(state_record(key, store_key, value, cause=cause, producer=producer, ts=ts))
        for key, ids in self._seen_by_key.values():
            clkey, record = dedupe_record(key, ids, producer=producer, ts=ts)
            self.changes.expiry_index[clkey] = (self.now_ms + self._ttl_ms, ids)
            out.append((clkey.encode(), record))
        for clkey, _, _ in self.changes.forgotten:
            out.append((clkey.encode(), None))
        return out
