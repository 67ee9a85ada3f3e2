"""The one place where "commit after side effects" is ordered.

    1. outputs and dead letters (queued while processing) — every one acknowledged
       (exactly-once: sent inside the open transaction, acknowledged but not yet visible)
    2. one Kafka transaction, committed only after 1: every partition's changelog records (whole key states, the
       batch's dedupe marks, tombstones of expired marks, the next source offsets) and the
       group's offsets, committed with the consumer's group generation — a member the group
       has replaced is fenced here and nothing of its transaction becomes visible
    3. local stores written, with the changelog offsets they now reflect

The transport may build the transaction (its changelog records and offsets) while 1's
acknowledgements are still arriving — nothing of an open transaction is visible — so ``commit``
does 1 and 2 (``Transport.commit``: every record sent before it is acknowledged first, or it
raises ``DeliveryError`` with nothing committed).

A crash or a failure before 2 completes leaves nothing committed: the batch is re-run from the
local store (never written before 3) and re-emits identical ids. After 2, state, marks and
offsets are durable together, so the changelog alone restores a partition that moves, and a
local store is never ahead of the changelog (docs/adr/0003-state-changelog.md).

Pipelined (``begin_checkpoint``, then ``Checkpoint.settle``): the worker begins batch N's
checkpoint only once it has polled batch N+1, then handles N+1 while N's is in flight, and
settles N before it polls again or begins N+1's. So no poll ever runs while a transaction is open
(an assignment change is always learned with nothing in flight; a batch not yet begun is then
dropped). N+1 reads through N's pending changes, its exactly-once outputs are held for its own
transaction (``commit`` takes what the transaction carries when called, before N+1 is handled),
and if N's checkpoint fails N+1 is dropped and read again with it. So each batch still sees 1,
then 2, then 3, and batch N+1's 2 never comes before batch N's 3.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping, Sequence

from google.protobuf.timestamp_pb2 import Timestamp

from pit_streams.errors import InvariantError
from pit_streams.runtime.batch import PartitionBatch
from pit_streams.transport.base import ChangelogWrite, PartialCommit, TopicPartition, Transport, TransportError

_EXPIRED_PER_CHECKPOINT = 256


class OffsetRegression(InvariantError):
    """A commit would move an offset backwards: a bug, never a runtime condition."""


class Checkpoint:
    """A checkpoint begun: the batches sealed and their transaction on its way."""

    def __init__(self, batches: Sequence[PartitionBatch], committing: Awaitable[dict[int, int]],
                 committed: dict[TopicPartition, int]) -> None:
        self.batches = batches
        self._committing = committing
        self._committed = committed

    async def settle(self) -> None:
        """Wait for the transaction (2), then write the stores (3). Raises ``DeliveryError`` or
        another ``TransportError`` (``Fenced`` among them) with nothing of the batches committed."""
        try:
            written = await self._committing
        except PartialCommit as partial:
            # Transactions per partition (aiokafka): the committed ones are durable, so their stores
            # are written; the caller re-reads the rest.
            _apply([b for b in self.batches if b.partition in partial.written], partial.written, self._committed)
            raise partial.cause if isinstance(partial.cause, TransportError) else partial from None
        _apply(self.batches, written, self._committed)


def begin_checkpoint(
    transport: Transport,
    batches: Sequence[PartitionBatch],
    *,
    changelog_topic: str,
    producer: str,
    committed: dict[TopicPartition, int],
    now_ms: int | None = None,
) -> Checkpoint:
    """Seal ``batches`` and send their transaction (1 and 2 above); ``settle`` finishes it."""
    changelog: dict[int, list[ChangelogWrite]] = {}
    offsets: dict[TopicPartition, int] = {}
    for batch in batches:
        # Each partition's records carry its own event-time clock (ADR 0008): restore resumes it.
        ts = Timestamp()
        ts.FromMilliseconds(batch.now_ms if now_ms is None else max(now_ms, batch.now_ms))
        changelog[batch.partition] = batch.seal(producer, ts, _EXPIRED_PER_CHECKPOINT)
        offsets.update(batch.next_offsets)
    _check_forward(offsets, committed)
    # A task: the transaction makes progress while the loop handles the next batch (aiokafka's
    # commit is a coroutine, which would otherwise only start when awaited).
    committing = asyncio.ensure_future(transport.commit(changelog_topic, changelog, offsets))
    return Checkpoint(batches, committing, committed)


def _apply(batches: Sequence[PartitionBatch], written: Mapping[int, int], committed: dict[TopicPartition, int]) -> None:
    for batch in batches:
        committed.update(batch.next_offsets)
        batch.apply(written.get(batch.partition))


def _check_forward(offsets: Mapping[TopicPartition, int], committed: Mapping[TopicPartition, int]) -> None:
    for tp, offset in offsets.items():
        previous = committed.get(tp)
        if previous is not None and offset < previous:
            raise OffsetRegression(f"commit of {tp} would move from {previous} back to {offset}")
