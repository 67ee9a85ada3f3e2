"""Dead-letter records: the refused bytes, untouched, with headers that say why and whence.

The value and key are the source record's, byte for byte, so a fixed record can be
replayed as it was; see docs/adr/0002-dead-letter.md for why this topic alone carries
non-envelope values.
"""

from __future__ import annotations

from pit_streams.contract import Rejection
from pit_streams.transport.base import Headers, Record

REASON = "pit.reason"
DETAIL = "pit.detail"
SOURCE_TOPIC = "pit.source.topic"
SOURCE_PARTITION = "pit.source.partition"
SOURCE_OFFSET = "pit.source.offset"
GROUP = "pit.group"
_MAX_DETAIL = 2000


def dead_letter_headers(record: Record, rejection: Rejection, group: str) -> Headers:
    """The source record's own headers, then ours (``pit.*``)."""
    return [
        *record.headers,
        (REASON, rejection.reason.value.encode()),
        (DETAIL, rejection.detail[:_MAX_DETAIL].encode("utf-8", "replace")),
        (SOURCE_TOPIC, record.topic.encode()),
        (SOURCE_PARTITION, str(record.partition).encode()),
        (SOURCE_OFFSET, str(record.offset).encode()),
        (GROUP, group.encode()),
    ]
