"""The range a protobuf ``Timestamp`` may hold, and Kafka record times brought into it.

The wire format admits any int64 seconds and int32 nanos, but protobuf's own conversions
(``ToMilliseconds``, ``ToJsonString``, ``FromMilliseconds``) raise outside 0001-01-01 to
9999-12-31 — so such a time must be refused at the door, never copied onto outputs.
"""

from __future__ import annotations

import time

from google.protobuf.timestamp_pb2 import Timestamp

MIN_SECONDS = -62135596800  # 0001-01-01T00:00:00Z
MAX_SECONDS = 253402300799  # 9999-12-31T23:59:59Z
_MAX_MS = MAX_SECONDS * 1000 + 999


def timestamp_problem(ts: Timestamp) -> str:
    """Why ``ts`` is not a valid protobuf Timestamp, or "" when it is."""
    if not MIN_SECONDS <= ts.seconds <= MAX_SECONDS:
        return f"ts.seconds {ts.seconds} is outside [{MIN_SECONDS}, {MAX_SECONDS}] (years 1 to 9999)"
    if not 0 <= ts.nanos <= 999_999_999:
        return f"ts.nanos {ts.nanos} is outside [0, 999999999]"
    return ""


def record_time(timestamp_ms: int, fallback_ms: int | None = None) -> Timestamp:
    """A Kafka record's time as a Timestamp; ``fallback_ms`` (default: now) when it is unset,
    negative or beyond year 9999 (a producer may set any int64, and protobuf refuses those)."""
    ts = Timestamp()
    if not 0 < timestamp_ms <= _MAX_MS:
        timestamp_ms = fallback_ms if fallback_ms is not None else int(time.time() * 1000)
    ts.FromMilliseconds(timestamp_ms)
    return ts
