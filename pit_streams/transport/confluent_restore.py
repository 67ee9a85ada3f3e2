"""Restore reads for the librdkafka transport: a partition of the changelog, a chunk at a time;
and the follower of the partitions a worker keeps standby stores of."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from typing import Any

import confluent_kafka as ck

from pit_streams.transport.base import Followed, Record, TopicPartition, TransportError
from pit_streams.transport.confluent_errors import message_headers
from pit_streams.transport.follow import FollowPlaces

_RESTORE_STALL_S = 60.0  # no record for this long while restoring: give up loudly instead of hanging


class ChangelogReader:
    """Reads changelog partitions through ``consumer`` (one that only assigns, with
    ``enable.partition.eof`` and ``read_committed``). Blocks: run it on the client thread.

    A read that goes on where the previous one stopped keeps the assignment and what the client
    already fetched; any other read starts afresh at the partition's current end.
    """

    def __init__(self, consumer: Any) -> None:
        self._consumer = consumer
        self._at: tuple[TopicPartition, int] | None = None  # (partition, next offset) left assigned
        self._high = 0

    def read(self, tp: TopicPartition, start_offset: int, max_records: int | None = None) -> list[Record]:
        """The records of ``tp`` from ``start_offset`` to its end, at most ``max_records``: fewer
        only when the end was reached."""
        limit = max_records if max_records is not None else 2**62
        try:
            if self._at != (tp, start_offset):
                self._release()
                low, self._high = self._consumer.get_watermark_offsets(ck.TopicPartition(tp.topic, tp.partition), 10.0)
                start_offset = max(start_offset, low)
                if start_offset >= self._high:
                    return []
                self._consumer.assign([ck.TopicPartition(tp.topic, tp.partition, start_offset)])
            out, at_end = self._consume(tp, limit)
        except BaseException:
            self._release()
            raise
        if at_end:
            self._release()
        else:
            self._at = (tp, out[-1].offset + 1)
        return out

    def _consume(self, tp: TopicPartition, limit: int) -> tuple[list[Record], bool]:
        high = self._high
        out: list[Record] = []
        stalled_at = time.monotonic() + _RESTORE_STALL_S
        while True:
            # Wait for one message (or the end-of-partition event), then take what is already
            # fetched: consume(n, timeout) waits out its whole timeout whenever fewer than n come,
            # as at a changelog's end behind a transaction marker (never delivered) it did, for a
            # second per partition restored.
            batch = self._consumer.consume(1, 1.0)
            if batch and limit - len(out) > 1:
                batch += self._consumer.consume(min(10_000, limit - len(out) - 1), 0)
            if batch:
                stalled_at = time.monotonic() + _RESTORE_STALL_S
            elif time.monotonic() > stalled_at:
                raise TransportError(f"restore of {tp} stalled after {len(out)} record(s) (end: {high})")
            for m in batch:
                error, offset = m.error(), m.offset()
                if error is not None:
                    if error.code() == ck.KafkaError._PARTITION_EOF:
                        if ((offset is not None and offset >= high) or (out and out[-1].offset >= high - 1)) and (
                                not (high := self._end_moved(tp, high))):
                            return out, True
                        continue
                    raise TransportError(f"restore of {tp} failed: {error}")
                assert offset is not None  # a message without an error has an offset
                headers, unreadable = message_headers(m)  # verify reads input topics through here too
                out.append(Record(tp.topic, tp.partition, offset, m.key(), m.value(), headers, m.timestamp()[1],
                                  unreadable))  # broker time: verify replays by it
                if offset >= high - 1 and not (high := self._end_moved(tp, high)):
                    return out, True
                if len(out) >= limit:
                    return out, False

    def _end_moved(self, tp: TopicPartition, high: int) -> int:
        """The partition's end now if it moved past ``high`` (which was read when this read
        sequence began), else 0. A read that goes on may continue one begun long ago — a restore
        cut short by a revocation and begun again — and the partition's interim owner wrote on
        meanwhile: "the end" is where it is when the read stops, never where it was."""
        _, now = self._consumer.get_watermark_offsets(ck.TopicPartition(tp.topic, tp.partition), 10.0)
        if now > high:
            self._high = now
            return int(now)
        return 0

    def close(self) -> None:
        self._consumer.close()

    def _release(self) -> None:
        if self._at is not None or self._consumer.assignment():
            self._consumer.unassign()
        self._at = None


class ChangelogFollower:
    """Follows changelog partitions through ``consumer`` (one that only assigns, never commits,
    with ``enable.partition.eof``, ``read_committed`` and ``auto.offset.reset`` earliest: a start
    before a partition's first offset reads from there). librdkafka fetches in the background;
    ``read`` takes what is already fetched and never waits on the broker. Run it on the client
    thread.
    """

    def __init__(self, consumer: Any) -> None:
        self._consumer = consumer
        self._places = FollowPlaces()

    def read(self, starts: Mapping[TopicPartition, int], max_records: int) -> Followed:
        try:
            return self._read(starts, max_records)
        except BaseException:
            # Where the client stands is unknown now: the next read assigns every partition afresh.
            self._places.clear()
            with contextlib.suppress(ck.KafkaException):
                self._consumer.unassign()
            raise

    def _read(self, starts: Mapping[TopicPartition, int], max_records: int) -> Followed:
        seek, drop = self._places.plan(starts)
        assigned = {TopicPartition(p.topic, p.partition) for p in self._consumer.assignment()}
        if gone := [ck.TopicPartition(tp.topic, tp.partition) for tp in (*drop, *seek) if tp in assigned]:
            self._consumer.incremental_unassign(gone)
        if seek:
            self._consumer.incremental_assign([ck.TopicPartition(tp.topic, tp.partition, o) for tp, o in seek.items()])
        followed = self._places.followed()
        out: list[Record] = []
        for m in self._consumer.consume(max_records, 0) if followed else ():
            tp, error, offset = TopicPartition(m.topic(), m.partition()), m.error(), m.offset()
            if error is not None:
                if error.code() != ck.KafkaError._PARTITION_EOF:
                    raise TransportError(f"following {tp} failed: {error}")
                if offset is not None and offset >= 0:
                    self._places.at(tp, offset)  # past transaction markers, to the end
                    self._places.end(tp, offset)
            elif offset is not None and self._places.take(tp, offset):
                headers, unreadable = message_headers(m)
                out.append(Record(tp.topic, tp.partition, offset, m.key(), m.value(), headers, m.timestamp()[1],
                                  unreadable))
        for tp in followed:
            marks = self._consumer.get_watermark_offsets(ck.TopicPartition(tp.topic, tp.partition), cached=True)
            if marks is not None and marks[1] >= 0:
                self._places.end(tp, marks[1])
        return Followed(out, self._places.lag())

    def close(self) -> None:
        self._consumer.close()
