"""Restore reads for the librdkafka transport: a partition of the changelog, to its end."""

from __future__ import annotations

import time
from typing import Any

import confluent_kafka as ck

from pit_streams.transport.base import Record, TopicPartition, TransportError, record_headers

_RESTORE_STALL_S = 60.0  # no record for this long while restoring: give up loudly instead of hanging


def read_to_end(reader: Any, tp: TopicPartition, start_offset: int, max_records: int | None = None) -> list[Record]:
    """The records of ``tp`` from ``start_offset`` to its current end, at most ``max_records``,
    through ``reader`` (a consumer that only assigns, with ``enable.partition.eof``). Blocks: run
    it on the client thread."""
    limit = max_records if max_records is not None else 2**62
    try:
        low, high = reader.get_watermark_offsets(ck.TopicPartition(tp.topic, tp.partition), 10.0)
        start = max(start_offset, low)
        if start >= high:
            return []
        reader.assign([ck.TopicPartition(tp.topic, tp.partition, start)])
        out: list[Record] = []
        stalled_at = time.monotonic() + _RESTORE_STALL_S
        while True:
            # Wait for one message (or the end-of-partition event), then take what is already
            # fetched: consume(n, timeout) waits out its whole timeout whenever fewer than n come,
            # as at a changelog's end behind a transaction marker (never delivered) it did, for a
            # second per partition restored.
            batch = reader.consume(1, 1.0)
            if batch and limit - len(out) > 1:
                batch += reader.consume(min(10_000, limit - len(out) - 1), 0)
            if batch:
                stalled_at = time.monotonic() + _RESTORE_STALL_S
            elif time.monotonic() > stalled_at:
                raise TransportError(f"restore of {tp} stalled after {len(out)} record(s) (end: {high})")
            for m in batch:
                error, offset = m.error(), m.offset()
                if error is not None:
                    if error.code() == ck.KafkaError._PARTITION_EOF:
                        if (offset is not None and offset >= high) or (out and out[-1].offset >= high - 1):
                            return out
                        continue
                    raise TransportError(f"restore of {tp} failed: {error}")
                assert offset is not None  # a message without an error has an offset
                out.append(Record(tp.topic, tp.partition, offset, m.key(), m.value(), record_headers(m.headers()),
                                  m.timestamp()[1]))  # broker time: verify replays by it
                if offset >= high - 1 or len(out) >= limit:
                    return out
    finally:
        reader.unassign()
