"""What makes a dead letter safe to replay: the framework wrote it, and its app reads the target.

Any client allowed to write the dead-letter topic can put a record there, and a replay produces
with the operator's credentials to the topic the letter names. So a letter is replayed only when
(1) its envelope and headers are exactly what ``runtime/deadletter.py`` derives for the source
coordinates, reason and refused record it names, and (2) the target is a catalogued topic — not
the dead-letter topic, not a changelog — on which the letter's consumer group has committed
offsets (that group's app reads it). Anything else is listed as "not replayable: <why>".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pit.envelope.v1.envelope_pb2 import EventEnvelope

from pit_streams.contract import Reason, Rejection
from pit_streams.contract.naming import DEAD_LETTER_TOPIC, is_changelog
from pit_streams.runtime import deadletter
from pit_streams.transport.base import Record


def forged(msg_key: bytes | None, msg_value: bytes, headers: Sequence[tuple[str, bytes]], *, source_topic: str,
           source_partition: int, source_offset: int, reason: str, detail: str, group: str,
           key: bytes | None, value: bytes | None, source_headers: Sequence[tuple[str, bytes]]) -> str:
    """Why this dead letter is not one the framework wrote for what it names, or "" when it is."""
    try:
        rejection = Rejection(Reason(reason), detail)
    except ValueError:
        return f"reason {reason!r} is not one the framework writes"
    try:
        env = EventEnvelope.FromString(msg_value)
        ts_ms = env.ts.seconds * 1000 + env.ts.nanos // 1_000_000
        source = Record(source_topic, source_partition, source_offset, key, value, list(source_headers), ts_ms)
        # Never bare here: a bare one is told apart before (its header), and one written by an older
        # release carries its record whatever its size.
        rebuilt = deadletter.dead_letter_record(source, rejection, group=group, producer=env.producer, bare=False)
        if EventEnvelope.FromString(rebuilt.value) != env:
            return "its envelope is not the one derived for its source coordinates, group and record"
    except Exception as exc:  # any undecodable or out-of-range part: not ours
        return f"its envelope does not decode as a dead letter ({type(exc).__name__})"
    if msg_key != rebuilt.key:
        return "its Kafka key is not the one derived for its source key"
    if list(headers) != rebuilt.headers:
        return "its pit.* headers are not the ones derived for its source"
    return ""


def target_problem(source_topic: str, group: str, catalogued: set[str], reads: bool | None) -> str:
    """Why ``source_topic`` may not be replayed to for ``group``, or "" (``reads``: does the group
    have committed offsets on it; ``None`` when that was not asked)."""
    if source_topic == DEAD_LETTER_TOPIC or is_changelog(source_topic):
        return f"{source_topic} is written by the framework only"
    if source_topic not in catalogued:
        return f"{source_topic} is not in the topic catalog"
    if reads is False:
        return f"consumer group {group!r} has no committed offsets on {source_topic}: its app does not read it"
    return ""


def group_reads(config: dict[str, Any], group: str, topic: str) -> bool:
    """Whether ``group`` has a committed offset on some partition of ``topic`` (it never joins the group)."""
    from confluent_kafka import Consumer, TopicPartition

    probe = Consumer({**config, "group.id": group, "enable.auto.commit": False})
    try:
        meta = probe.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            return False
        committed = probe.committed([TopicPartition(topic, p) for p in sorted(meta.partitions)], timeout=10)
    finally:
        probe.close()
    return any(tp.offset >= 0 for tp in committed)
