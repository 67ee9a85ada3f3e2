"""What one poll batch changes in one partition: state, dedupe marks, next offsets.

The batch owns the one overlay of pending writes over the partition store (``state``, a
``StateOverlay``): handlers read through it, the checkpoint turns it into changelog records and
then into one store write. Nothing here is durable until the checkpoint's transaction commits.
"""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from pit_streams.contract import Key
from pit_streams.errors import PitStreamsError
from pit_streams.state.changelog import key_state_record, mark_records, offset_record
from pit_streams.state.overlay import StateOverlay
from pit_streams.state.store import ExpiredGroup, Mark, PartitionStore, StoreChanges
from pit_streams.transport.base import ChangelogWrite, TopicPartition

# How far an envelope's ts may run ahead of the broker's record timestamp before it is clamped
# (producer clocks drift; a hostile ts must not leap the partition's clock and expire marks).
MAX_CLOCK_SKEW_MS = 5 * 60 * 1000

# A key's whole state travels in one changelog record; these keep it far inside 1 MiB.
MAX_STATE_ENTRIES = 4096
MAX_STATE_BYTES = 512 * 1024


class StateTooLarge(PitStreamsError):
    """A handler's writes would give its key more state entries than one changelog record holds."""


class PartitionBatch:
    """The pending work of partition number ``partition`` (of every subscribed topic)."""

    state: StateOverlay
    now_ms: int

    def __init__(self, partition: int, store: PartitionStore, ttl_ms: int, now_ms: int | None = None,
                 previous: PartitionBatch | None = None) -> None:
        """``previous``: the same partition's batch whose checkpoint is still in flight; this one
        reads its state and marks through it until it is durable (``detach``)."""
        self.partition = partition
        self.store = store
        self.changes = StoreChanges()
        self._previous = previous
        # Handlers' accepted writes land straight in the key states the store will be given.
        self.state = StateOverlay(previous.state if previous is not None else store, self.changes.key_states)
        self.next_offsets: dict[TopicPartition, int] = {}
        # The partition's event-time clock (ADR 0008): decisions depend on the log, not on when
        # the batch happens to run. ``now_ms`` only moves it forward (tests).
        self.now_ms = max(store.clock_ms, previous.now_ms if previous is not None else 0, now_ms or 0)
        self._ttl_ms = ttl_ms
        # canonical key -> (key, its marks (scope, id, digest), their mark keys in the same order)
        self._marks_by_key: dict[str, tuple[Key, list[tuple[str, str, str]], list[bytes]]] = {}
        self._cause: dict[str, str] = {}  # canonical key -> the event whose writes it carries last
        self._expired: list[ExpiredGroup] = []
        self._resume = store.source_offsets()

    # -- dedupe ------------------------------------------------------------------------------------
    def resume_offset(self, tp: TopicPartition) -> int:
        """The offset the state already reflects: a record below it was applied (a lost or
        expired group offset re-reads from earlier) and is skipped."""
        return self._resume.get(tp.topic, 0)

    def advance(self, event_ms: int, broker_ms: int) -> None:
        """Move the clock to an accepted record's event time: monotone, and clamped to the broker's
        record timestamp plus ``MAX_CLOCK_SKEW_MS`` where the record has one."""
        if broker_ms > 0:
            event_ms = min(event_ms, broker_ms + MAX_CLOCK_SKEW_MS)
        if event_ms > self.now_ms:
            self.now_ms = self.changes.clock_ms = event_ms

    def stored_marks(self, mks: list[bytes]) -> list[Mark | None]:
        """The marks of ``mks`` made before this batch: the store's, or the in-flight batch's."""
        stored = self.store.marks(mks)
        previous = self._previous
        if previous is None:
            return stored
        made = previous.changes.marks
        return [made.get(mk, mark) for mk, mark in zip(mks, stored, strict=True)]

    def detach(self) -> None:
        """The previous batch is durable now (in the store): read the store alone."""
        if self._previous is not None:
            self._previous = None
            self.state.layer_on(self.store)

    def live_mark(self, mk: bytes, stored: Mark | None) -> Mark | None:
        mark = self.changes.marks.get(mk, stored)
        return mark if mark is not None and mark.expiry_ms > self.now_ms else None

    # -- recording outcomes ----------------------------------------------------------------------
    def done(self, tp: TopicPartition, offset: int) -> None:
        """Offset ``offset`` of ``tp`` is fully handled (processed, deduped or dead-lettered)."""
        self.next_offsets[tp] = offset + 1

    def mark_processed(
        self, key: Key, mk: bytes, scope: str, event_id: str, digest: str, writes: dict[str, int | None] | None
    ) -> None:
        """``mk`` is ``mark_key(key.tenant, scope, event_id)``, which the caller made for the dedupe."""
        text = key.text
        self.changes.marks[mk] = Mark(self.now_ms + self._ttl_ms, digest, text)
        entry = self._marks_by_key.get(text)
        if entry is None:
            self._marks_by_key[text] = (key, [(scope, event_id, digest)], [mk])
        else:
            entry[1].append((scope, event_id, digest))
            entry[2].append(mk)
        if writes:
            self.state.write(text, writes)
            self._cause[text] = event_id

    def check_state_size(self, key: str, writes: dict[str, int | None]) -> None:
        """``StateTooLarge`` if accepting ``writes`` would grow the key past one changelog record."""
        if not any(value is not None and self.state.get(key, name) is None for name, value in writes.items()):
            return  # no new entry: the record cannot grow past what was already written
        state = self.state.key_state(key, writes)
        size = sum(len(name.encode()) + 32 for name in state)  # name, decimal value, Struct framing
        if len(state) > MAX_STATE_ENTRIES or size > MAX_STATE_BYTES:
            raise StateTooLarge(f"state of {key} would hold {len(state)} entries (~{size} bytes), over"
                                f" {MAX_STATE_ENTRIES} entries or {MAX_STATE_BYTES} bytes")

    # -- the checkpoint ----------------------------------------------------------------------------
    def seal(self, producer: str, ts: Timestamp, expire_limit: int) -> list[ChangelogWrite]:
        """Close the batch: the changelog records that make it durable (key states, the marks of
        this batch, tombstones of up to ``expire_limit`` expired mark groups, the next offsets);
        ``changes`` then holds exactly what they carry, for the store."""
        self._expired = [
            g for g in self.store.expired_groups(self.now_ms, expire_limit)
            if g.changelog_key not in self.changes.mark_groups
        ]
        out: list[ChangelogWrite] = []
        for text, state in self.changes.key_states.items():
            key = self._marks_by_key[text][0]
            out.append(key_state_record(key, state, cause=self._cause[text], producer=producer, ts=ts))
        expiry = self.now_ms + self._ttl_ms
        for key, marks, mks in self._marks_by_key.values():
            start = 0  # records hold consecutive runs of ``marks``, in order
            for clkey, value, chunk in mark_records(key, marks, producer=producer, ts=ts):
                self.changes.mark_groups[clkey] = (expiry, mks[start:start + len(chunk)])
                start += len(chunk)
                out.append((clkey.encode(), value))
        out.extend((group.changelog_key.encode(), None) for group in self._expired)
        for tp, offset in sorted(self.next_offsets.items()):
            self.changes.offsets[tp.topic] = offset
            out.append(offset_record(tp.topic, offset, producer=producer, ts=ts))
        return out

    def apply(self, changelog_offset: int | None) -> None:
        """Write the sealed batch to the store (after its transaction committed)."""
        self.store.apply(self.changes, changelog_offset, self._expired)
