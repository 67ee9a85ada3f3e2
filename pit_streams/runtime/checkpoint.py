"""The one place where "commit after side effects" is ordered.

    1. outputs and dead letters (queued while processing) — every one acknowledged
    2. changelog records (state, then dedupe marks)      — every one acknowledged; the last
       of each partition's group is flagged, so a restore ignores a group left half-written
    3. local stores written, with the changelog offsets they now reflect
    4. source offsets committed                           — only moving forward

A crash between any two steps leaves a state that a restart repairs: before 2 completes, the
batch is re-run and re-emits identical ids; after 2, the dedupe marks (restored from the
changelog, or already in the local store) skip the re-delivered records — so a failed commit
is harmless too, and the local store is never behind the changelog that is already durable.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence

from google.protobuf.timestamp_pb2 import Timestamp

from pit_streams.runtime.batch import PartitionBatch
from pit_streams.state.changelog import batch_headers
from pit_streams.transport.base import TopicPartition, Transport

_EXPIRED_PER_CHECKPOINT = 256


class OffsetRegression(AssertionError):
    """A commit would move an offset backwards: a bug, never a runtime condition."""


async def checkpoint(
    transport: Transport,
    batches: Sequence[PartitionBatch],
    *,
    changelog_topic: str,
    producer: str,
    committed: dict[TopicPartition, int],
) -> None:
    """Make ``batches`` durable in the order above. Raises ``DeliveryError`` before committing
    anything if a side effect was not acknowledged."""
    await transport.flush()

    ts = Timestamp()
    ts.GetCurrentTime()
    batch_id = uuid.uuid4().hex
    for batch in batches:
        batch.forget_expired(_EXPIRED_PER_CHECKPOINT)
        records = batch.changelog_records(producer, ts)
        for i, (key, value) in enumerate(records):
            transport.send(changelog_topic, value, key, batch_headers(batch_id, i == len(records) - 1), batch.partition)
    acked = await transport.flush()

    for batch in batches:
        batch.store.apply(batch.changes, acked.get(TopicPartition(changelog_topic, batch.partition)))

    offsets: dict[TopicPartition, int] = {}
    for batch in batches:
        offsets.update(batch.next_offsets)
    _check_forward(offsets, committed)
    await transport.commit(offsets)
    committed.update(offsets)


def _check_forward(offsets: Mapping[TopicPartition, int], committed: Mapping[TopicPartition, int]) -> None:
    for tp, offset in offsets.items():
        previous = committed.get(tp)
        if previous is not None and offset < previous:
            raise OffsetRegression(f"commit of {tp} would move from {previous} back to {offset}")
