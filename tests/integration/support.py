"""Helpers of the integration suite: per-test topics, raw records in and out (reading back and
committed offsets come from the devkit), and driving in-process workers until a condition the
runtime reports holds (never a sleep)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import KafkaError, Producer
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from kafka_support import create_topic, ensure_topic
from pit.envelope.v1.envelope_pb2 import EventEnvelope
from pit.events.v1.events_pb2 import TradeFillEvent

from devkit.records import committed as devkit_committed
from devkit.records import read_topic
from pit_streams import DEAD_LETTER_TOPIC, App
from pit_streams.contract import Key, derive_event_id, wrap
from pit_streams.runtime import deadletter
from pit_streams.runtime.worker import Worker, WorkerSettings
from pit_streams.state.changelog import changelog_topic
from pit_streams.transport.base import Transport
from pit_streams.transport.factory import make_transport

KEY = Key("demo", "alpha", "0001")
DEAD_LETTER_PARTITIONS = 3


def uid() -> str:
    return uuid.uuid4().hex[:10]


@dataclass
class Scenario:
    """One test's app name (= consumer group) and its topics, all unique to the test."""

    bootstrap: str
    partitions: int = 1
    name: str = field(default_factory=lambda: f"it-{uid()}")
    suffix: str = field(default_factory=uid)

    @property
    def source(self) -> str:
        return f"pit.v1.exec.fills_{self.suffix}"

    @property
    def output(self) -> str:
        return f"pit.v1.acct.nav_{self.suffix}"

    @property
    def changelog(self) -> str:
        return changelog_topic(self.name)

    def create(self, *, output: bool = True) -> None:
        create_topic(self.bootstrap, self.source, self.partitions)
        if output:
            create_topic(self.bootstrap, self.output, self.partitions)
        create_topic(self.bootstrap, self.changelog, self.partitions, {"cleanup.policy": "compact"})
        ensure_topic(self.bootstrap, DEAD_LETTER_TOPIC, DEAD_LETTER_PARTITIONS)

    def catalog_yaml(self) -> str:
        """A topic catalog (infra/topics.yaml format) listing exactly this scenario's topics."""

        def entry(name: str, kind: str, types: list[str], policy: str, retention: int, partitions: int) -> str:
            return (
                f"  - name: {name}\n    kind: {kind}\n    payload_types: [{', '.join(types)}]\n"
                f"    partitions: {partitions}\n    replicas: 1\n    min_insync_replicas: 1\n"
                f"    cleanup_policy: {policy}\n    retention_ms: {retention}\n    owner: {self.name}\n"
                f"    description: integration test topic\n"
            )

        return "topics:\n" + "".join(
            [
                entry(self.source, "audit", ["pit.events.v1.TradeFillEvent"], "delete", -1, self.partitions),
                entry(self.output, "audit", ["pit.events.v1.NAVUpdateEvent"], "delete", -1, self.partitions),
                entry(DEAD_LETTER_TOPIC, "ops", ["google.protobuf.BytesValue"], "delete", 2592000000,
                      DEAD_LETTER_PARTITIONS),
                entry(
                    self.changelog,
                    "state",
                    ["google.protobuf.Int64Value", "google.protobuf.ListValue", "google.protobuf.Struct"],
                    "compact",
                    -1,
                    self.partitions,
                ),
            ]
        )


# --------------------------------------------------------------------------- records in


@dataclass(frozen=True)
class Raw:
    """A record exactly as produced: what the dead-letter topic must give back byte for byte."""

    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    partition: int = 0
    event_id: str = ""


def envelope(
    payload: Message | None = None,
    *,
    key: Key = KEY,
    event_id: str | None = None,
    producer: str = "it-producer@1.0.0",
    ts_ms: int | None = None,
) -> EventEnvelope:
    ts = Timestamp()
    if ts_ms is None:
        ts.GetCurrentTime()
    else:
        ts.FromMilliseconds(ts_ms)
    if payload is None:
        payload = TradeFillEvent(instrument="BTC", qty=1, price_micros=1_000_000)
    return wrap(payload, key=key, event_id=event_id or str(uuid.uuid4()), producer=producer, ts=ts)


def fill(
    qty: int = 1, *, instrument: str = "BTC", key: Key = KEY, event_id: str | None = None, partition: int = 0
) -> Raw:
    """A valid TradeFillEvent envelope, keyed as the contract wants."""
    env = envelope(TradeFillEvent(instrument=instrument, qty=qty, price_micros=1_000_000), key=key, event_id=event_id)
    return Raw(str(key).encode(), env.SerializeToString(), [], partition, env.event_id)


def raw_envelope(env: EventEnvelope, *, record_key: bytes | None = None, partition: int = 0) -> Raw:
    return Raw(
        env.key.encode() if record_key is None else record_key, env.SerializeToString(), [], partition, env.event_id
    )


def produce(bootstrap: str, topic: str, records: Sequence[Raw]) -> list[int]:
    """Produce ``records`` in order, each to its own partition; returns their offsets."""
    offsets: list[int | None] = [None] * len(records)
    errors: list[str] = []
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})

    def report(i: int) -> Callable[[KafkaError | None, object], None]:
        def on_delivery(err: KafkaError | None, msg: object) -> None:
            if err is not None:
                errors.append(str(err))
            else:
                offsets[i] = msg.offset()  # type: ignore[attr-defined]

        return on_delivery

    for i, r in enumerate(records):
        headers: list[tuple[str, str | bytes | None]] = list(r.headers)
        producer.produce(topic, r.value, r.key, partition=r.partition, headers=headers or None, on_delivery=report(i))
        if i % 10_000 == 9_999:
            producer.poll(0)
    assert producer.flush(30) == 0 and not errors, errors
    assert all(o is not None for o in offsets)
    return [o for o in offsets if o is not None]


# --------------------------------------------------------------------------- records out


@dataclass(frozen=True)
class Out:
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]
    partition: int
    offset: int

    @property
    def envelope(self) -> EventEnvelope:
        return EventEnvelope.FromString(self.value or b"")


def read_all(bootstrap: str, topic: str, timeout: float = 30.0) -> list[Out]:
    """Every record of ``topic`` up to its current end, by (partition, offset) (``devkit.records.read_topic``)."""
    return [
        Out(r.key, r.value, {k: v for k, v in r.headers if isinstance(v, bytes)}, r.partition, r.offset)
        for r in read_topic(bootstrap, topic, timeout)
    ]


@dataclass(frozen=True)
class Dead:
    """A dead letter read through its envelope: ``key``/``value``/``source_headers`` are the refused
    record's own; ``record`` is the dead-letter record itself."""

    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]
    source_headers: dict[str, bytes]
    record: Out

    @property
    def envelope(self) -> EventEnvelope:
        return self.record.envelope


def dead_letters(bootstrap: str, group: str) -> list[Dead]:
    """The dead letters of ``group`` (the topic is shared by every test)."""
    out = []
    prefix = deadletter.SOURCE_HEADER_PREFIX
    for r in read_all(bootstrap, DEAD_LETTER_TOPIC):
        if r.headers.get(deadletter.GROUP) != group.encode():
            continue
        read = deadletter.read_dead_letter(r.value or b"")
        value = None if deadletter.SOURCE_VALUE_NULL in r.headers else read.value
        source_headers = {k[len(prefix):]: v for k, v in r.headers.items() if k.startswith(prefix)}
        out.append(Dead(r.headers.get(deadletter.SOURCE_KEY), value, r.headers, source_headers, r))
    return out


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int | None]:
    """The group's committed offsets for ``topic`` (None: nothing committed)."""
    got = devkit_committed(bootstrap, group, topic)
    assert len(got) == partitions, got
    return got


def derived(app: App, input_event_id: str) -> str:
    return derive_event_id(app.name, f"{KEY.tenant}\x1f\x1f{input_event_id}", 0)


# --------------------------------------------------------------------------- in-process workers


def new_worker(
    kind: str,
    bootstrap: str,
    app: App,
    data_dir: Path,
    *,
    transport: Transport | None = None,
    settings: WorkerSettings | None = None,
) -> Worker:
    return Worker(
        app,
        transport or make_transport(kind, bootstrap, client_id=app.producer),
        settings or WorkerSettings(data_dir),
    )


async def run_until(
    workers: Sequence[Worker], done: Callable[[], bool | Awaitable[bool]], *, within_s: float = 60.0, what: str = ""
) -> None:
    """Run every worker's ``run_once`` in turn until ``done()`` holds."""
    deadline = time.monotonic() + within_s
    while True:
        for w in workers:
            await w.run_once()
        result = done()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {within_s}s: {what or done}")


def handled(worker: Worker) -> int:
    """Records the worker finished (processed, deduped or dead-lettered)."""
    m = worker.metrics
    return m.processed + m.deduped + sum(m.rejected.values())
