"""Restore reads for the librdkafka transport: a partition of the changelog, a chunk at a time."""

from __future__ import annotations

import time
from typing import Any

import confluent_kafka as ck

from pit_streams.transport.base import Record, TopicPartition, TransportError, record_headers

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
                        if (offset is not None and offset >= high) or (out and out[-1].offset >= high - 1):
                            return out, True
                        continue
                    raise TransportError(f"restore of {tp} failed: {error}")
                assert offset is not None  # a message without an error has an offset
                out.append(Record(tp.topic, tp.partition, offset, m.key(), m.value(), record_headers(m.headers()),
                                  m.timestamp()[1]))  # broker time: verify replays by it
                if offset >= high - 1:
                    return out, True
                if len(out) >= limit:
                    return out, False

    def close(self) -> None:
        self._consumer.close()

    def _release(self) -> None:
        if self._at is not None or self._consumer.assignment():
            self._consumer.unassign()
        self._at = None
