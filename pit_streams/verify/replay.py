"""Run an app's handlers over recorded inputs: the production loop (``Worker``) over the
in-memory transport, with a throw-away state directory. Nothing here is a second loop."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pit.envelope.v1.envelope_pb2 import EventEnvelope

from pit_streams.app import DEAD_LETTER_TOPIC, App
from pit_streams.runtime import deadletter
from pit_streams.runtime.metrics import Metrics
from pit_streams.runtime.worker import Worker, WorkerSettings
from pit_streams.transport.base import Record, TopicPartition
from pit_streams.transport.memory import MemoryBroker, MemoryTransport

Coord = tuple[str, int, int]  # topic, partition, offset of an input record


@dataclass(frozen=True, slots=True)
class Emitted:
    """One record the replay wrote: an output, or a dead letter (``reason`` set)."""

    event_id: str
    topic: str
    value: bytes
    cause: Coord | None  # the input that made it
    reason: str = ""
    group: str = ""  # a dead letter's consumer group


@dataclass
class Replay:
    outputs: list[Emitted] = field(default_factory=list)  # in the order the worker wrote them
    dead_letters: list[Emitted] = field(default_factory=list)
    metrics: Metrics = field(default_factory=Metrics)


def input_ids(inputs: Mapping[TopicPartition, Sequence[Record]]) -> dict[tuple[str, str], Coord]:
    """(tenant, event_id) of every envelope input -> the first record that carried it."""
    out: dict[tuple[str, str], Coord] = {}
    for records in inputs.values():
        for rec in records:
            env = parse_envelope(rec.value)
            if env is not None and env.event_id:
                out.setdefault((env.tenant, env.event_id), (rec.topic, rec.partition, rec.offset))
    return out


def parse_envelope(value: bytes | None) -> EventEnvelope | None:
    if value is None:
        return None
    env = EventEnvelope()
    try:
        env.ParseFromString(value)
    except Exception:  # any undecodable value is simply not an envelope
        return None
    return env


def emit_topics(app: App) -> list[str]:
    return sorted({t for spec in app.handlers.values() for t in spec.emits})


async def replay(app: App, inputs: Mapping[TopicPartition, Sequence[Record]], partition_counts: Mapping[str, int],
                 *, progress: bool = False) -> Replay:
    """Feed ``inputs`` (records as read from the broker, offsets and timestamps kept) through
    ``app`` and collect what it writes. ``partition_counts``: the real topics' partition counts,
    so placement checks and output partitioning are the production ones."""
    broker = MemoryBroker()
    sources = max([1, *(partition_counts.get(t, 1) for t in app.reads())])
    for topic in app.reads():
        broker.create_topic(topic, partition_counts.get(topic, sources))
    for topic in emit_topics(app):
        broker.create_topic(topic, partition_counts.get(topic, 1))
    broker.create_topic(app.changelog_topic, sources)
    broker.create_topic(DEAD_LETTER_TOPIC, partition_counts.get(DEAD_LETTER_TOPIC, 1))
    total = 0
    for tp, records in sorted(inputs.items()):
        log = broker.topics[tp.topic][tp.partition]
        for rec in records:  # the broker's offsets and timestamps: ids and dead letters derive from them
            log.append(Record(rec.topic, rec.partition, rec.offset, rec.key, rec.value, list(rec.headers),
                              rec.timestamp_ms, rec.unreadable_headers))
        total += len(records)
    result = Replay()
    with tempfile.TemporaryDirectory(prefix="pit-verify-") as state_dir:
        worker = Worker(app, MemoryTransport(broker), WorkerSettings(Path(state_dir), delivery_retry_backoff_s=0),
                        result.metrics)
        await worker.start()
        try:
            done = 0
            while (n := await worker.run_once()) or worker.restoring:
                done += n
                if progress:
                    print(f"pit-streams verify: replayed {done}/{total} input record(s)", file=sys.stderr)
        finally:
            await worker.stop()
    ids = input_ids(inputs)
    for topic in emit_topics(app):
        for rec in broker.records(topic):
            env = parse_envelope(rec.value)
            assert env is not None  # the runtime writes envelopes only
            result.outputs.append(Emitted(env.event_id, topic, rec.value or b"",
                                          ids.get((env.tenant, env.causation_id))))
    for rec in broker.records(DEAD_LETTER_TOPIC):
        dead = dead_letter_of(rec)
        if dead is not None:
            result.dead_letters.append(dead)
    return result


def dead_letter_of(rec: Record) -> Emitted | None:
    """A dead letter's id, source coordinates and reason, from its envelope and headers."""
    headers = {k: v.decode("utf-8", "replace") for k, v in rec.headers if k.startswith("pit.")}
    env = parse_envelope(rec.value)
    try:
        cause = (headers[deadletter.SOURCE_TOPIC], int(headers[deadletter.SOURCE_PARTITION]),
                 int(headers[deadletter.SOURCE_OFFSET]))
        reason = headers[deadletter.REASON]
    except (KeyError, ValueError):
        return None
    if env is None:
        return None
    return Emitted(env.event_id, DEAD_LETTER_TOPIC, rec.value or b"", cause, reason, headers.get(deadletter.GROUP, ""))
