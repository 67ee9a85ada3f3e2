"""Reading a dev broker from the outside (confluent-kafka, never the runtime under test): a
topic's records, its end offsets, a group's committed offsets, lag and members.

``Cluster`` keeps its clients between calls (a harness polling offsets in a loop); the
module-level functions open one for a single answer. Readers assign partitions directly: they
never join a group, so they never disturb the group they observe.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from pit.envelope.v1.envelope_pb2 import EventEnvelope

from devkit.topics import QUIET, admin

_COORDINATOR_STARTING = frozenset({KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
                                   KafkaError.COORDINATOR_NOT_AVAILABLE})  # fmt: skip


def _bytes(v: Any) -> bytes | None:
    return v.encode() if isinstance(v, str) else v


@dataclass(frozen=True)
class Record:
    """A record as read back: headers in their order (a name may repeat)."""

    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]
    partition: int
    offset: int
    timestamp_ms: int = 0

    @cached_property
    def header_map(self) -> dict[str, bytes]:
        """Headers by name (the last value wins; a null value reads as b"")."""
        return {k: v or b"" for k, v in self.headers}

    @property
    def envelope(self) -> EventEnvelope:
        return EventEnvelope.FromString(self.value or b"")


def to_record(m: Any) -> Record:
    raw: Any = m.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    return Record(_bytes(m.key()), _bytes(m.value()), [(k, _bytes(v)) for k, v in pairs], m.partition(), m.offset(),
                  m.timestamp()[1])  # fmt: skip


def consumer(bootstrap: str, purpose: str, **config: Any) -> Consumer:
    """An unsubscribed consumer of its own throw-away group (assign only, never commits)."""
    return Consumer({"bootstrap.servers": bootstrap, "group.id": f"devkit-{purpose}-{uuid.uuid4().hex[:8]}",
                     "enable.auto.commit": False, **QUIET, **config})  # fmt: skip


@dataclass
class Cluster:
    """Admin + an unsubscribed consumer over one broker. Calls raise ``KafkaException`` while
    the broker is down."""

    bootstrap: str
    #: after ``read``/``scan`` with ``eof_ends``: partitions that ended below ``end`` {p: (at, end)}
    stopped_short: dict[int, tuple[int, int]] = field(default_factory=dict)
    _partitions: dict[str, int] = field(default_factory=dict, repr=False)
    _meta: dict[str, Consumer] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.admin = admin(self.bootstrap)

    def close(self) -> None:
        for c in self._meta.values():
            c.close()
        self._meta.clear()

    def _meta_consumer(self, isolation: str) -> Consumer:
        if isolation not in self._meta:
            self._meta[isolation] = consumer(self.bootstrap, "meta", **{"isolation.level": isolation})
        return self._meta[isolation]

    def partitions(self, topic: str) -> int:
        n = self._partitions.get(topic)
        if n is None:
            t = self.admin.list_topics(topic=topic, timeout=10).topics.get(topic)
            if t is None or t.error is not None or not t.partitions:
                raise RuntimeError(f"topic {topic} does not exist")
            n = self._partitions[topic] = len(t.partitions)
        return n

    def end_offsets(self, topic: str, timeout: float = 10.0, isolation: str = "read_committed") -> dict[int, int]:
        """The end of each partition as a reader of ``isolation`` sees it: for ``read_committed``
        the last stable offset (below an open transaction); for ``read_uncommitted`` the high
        watermark."""
        meta = self._meta_consumer(isolation)
        return {p: meta.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)[1]
                for p in range(self.partitions(topic))}  # fmt: skip

    def start_offsets(self, topic: str, timeout: float = 10.0) -> dict[int, int]:
        """The low watermark of each partition (above 0 once retention or compaction removed records)."""
        meta = self._meta_consumer("read_committed")
        return {p: meta.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)[0]
                for p in range(self.partitions(topic))}  # fmt: skip

    def committed(self, group: str, topic: str, timeout: float = 30.0) -> dict[int, int | None]:
        """The group's committed offset per partition of ``topic`` (None: nothing committed)."""
        # A consumer of the group that never subscribes (so never joins it). Not the admin API:
        # list_consumer_group_offsets segfaulted the process for a group with no offsets yet.
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": group, "enable.auto.commit": False, **QUIET})
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    tps = c.committed([TopicPartition(topic, p) for p in range(self.partitions(topic))],
                                      timeout=max(0.1, deadline - time.monotonic()))  # fmt: skip
                    break
                except KafkaException as exc:
                    # A fresh broker answers NOT_COORDINATOR while it loads the offsets topic.
                    if exc.args[0].code() not in _COORDINATOR_STARTING or time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
        finally:
            c.close()
        return {tp.partition: (tp.offset if tp.offset >= 0 else None) for tp in tps}

    def lag(self, group: str, topic: str) -> int:
        """Records of ``topic`` the group has not committed yet."""
        low, end, done = self.start_offsets(topic), self.end_offsets(topic), self.committed(group, topic)
        return sum(max(0, end[p] - max(done.get(p) or low[p], low[p])) for p in end)

    def commit(self, group: str, topic: str, offsets: Mapping[int, int]) -> None:
        """Start a NEW group at ``offsets`` (before any member joined)."""
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": group, "enable.auto.commit": False, **QUIET})
        try:
            c.commit(offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()], asynchronous=False)
        finally:
            c.close()

    def members(self, group: str) -> list[tuple[str, list[int]]]:
        """``(client id, assigned partitions)`` of each member of ``group``'s current generation."""
        desc = self.admin.describe_consumer_groups([group], request_timeout=10)[group].result()
        return [(m.client_id, sorted({tp.partition for tp in (m.assignment.topic_partitions if m.assignment else [])}))
                for m in desc.members]  # fmt: skip

    def scan(self, topic: str, start: Mapping[int, int], end: Mapping[int, int], *, timeout: float = 120.0,
             isolation: str = "read_committed", eof_ends: bool = False) -> Iterator[Any]:  # fmt: skip
        """Yield the messages of ``topic`` in [start, end) per partition. A partition is done at
        ``end``, or — ``eof_ends`` — when the reader reaches the partition's end below it: a
        compacted topic (the records just below ``end`` may be gone) or a ``read_committed``
        reader (transaction markers take offsets it never sees; an open transaction stops it at
        the last stable offset). ``stopped_short`` keeps those partitions."""
        c = consumer(self.bootstrap, "scan", **{"enable.partition.eof": eof_ends, "isolation.level": isolation,
                                                 "fetch.message.max.bytes": 4 * 1024 * 1024})  # fmt: skip
        want = {p: (start.get(p, 0), e) for p, e in end.items() if e > start.get(p, 0)}
        self.stopped_short = {}
        try:
            if not want:
                return
            c.assign([TopicPartition(topic, p, s) for p, (s, _) in want.items()])
            pos = {p: s for p, (s, _) in want.items()}
            done: set[int] = set()
            deadline = time.monotonic() + timeout
            while len(done) < len(want):
                if time.monotonic() > deadline:
                    short = {p: (pos[p], e) for p, (_, e) in want.items() if p not in done}
                    raise TimeoutError(f"reading {topic}: partitions not read to their end: {short}")
                for m in c.consume(10_000, 0.5):
                    err = m.error()
                    p, o = m.partition(), m.offset()
                    if err is not None:
                        if err.code() != KafkaError._PARTITION_EOF:
                            raise KafkaException(err)
                        if eof_ends and p in want and p not in done:
                            done.add(p)
                            if (o or 0) < want[p][1]:
                                self.stopped_short[p] = (o or 0, want[p][1])
                        continue
                    if p is None or o is None or p not in want or p in done or o >= want[p][1]:
                        continue
                    pos[p] = o + 1
                    if pos[p] >= want[p][1]:
                        done.add(p)
                    yield m
        finally:
            c.close()

    def read(self, topic: str, start: Mapping[int, int] | None = None, end: Mapping[int, int] | None = None,
             timeout: float = 120.0, isolation: str = "read_committed") -> list[Record]:  # fmt: skip
        """Every record of ``topic`` in [start, end) per partition (default: all of it up to its
        current end), in (partition, offset) order, as a reader of ``isolation`` sees it."""
        if end is None:
            end = self.end_offsets(topic, isolation="read_uncommitted")
        got = [to_record(m) for m in self.scan(topic, start or {}, end, timeout=timeout, isolation=isolation,
                                               eof_ends=True)]  # fmt: skip
        got.sort(key=lambda r: (r.partition, r.offset))
        return got


def read_topic(bootstrap: str, topic: str, timeout: float = 30.0) -> list[Record]:
    """Every record of ``topic`` up to its current end: after a commit was observed, everything the
    committed batches wrote (acknowledged records are below the end) — no waiting for more."""
    c = Cluster(bootstrap)
    try:
        return c.read(topic, timeout=timeout)
    finally:
        c.close()


def consume(bootstrap: str, topic: str, expected_count: int, timeout: float = 30.0,
            config: Mapping[str, Any] | None = None) -> list[Record]:  # fmt: skip
    """Read ``topic`` from the beginning until ``expected_count`` committed records arrived or
    ``timeout`` passed; returns what was read, by (partition, offset) (callers assert the count)."""
    c = consumer(bootstrap, "consume", **{"enable.partition.eof": False, "isolation.level": "read_committed",
                                           **(config or {})})  # fmt: skip
    out: list[Record] = []
    try:
        t = c.list_topics(topic=topic, timeout=timeout).topics.get(topic)
        if t is None or t.error is not None:
            raise KafkaException(t.error if t is not None else KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART))
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(t.partitions)])
        deadline = time.monotonic() + timeout
        while len(out) < expected_count and (remaining := deadline - time.monotonic()) > 0:
            for m in c.consume(num_messages=expected_count - len(out), timeout=min(remaining, 0.5)):
                if m.error() is not None:
                    raise KafkaException(m.error())
                out.append(to_record(m))
    finally:
        c.close()
    out.sort(key=lambda r: (r.partition, r.offset))
    return out


def committed(bootstrap: str, group: str, topic: str) -> dict[int, int | None]:
    """The group's committed offsets for ``topic`` (None: nothing committed)."""
    c = Cluster(bootstrap)
    try:
        return c.committed(group, topic)
    finally:
        c.close()


def group_lag(bootstrap: str, group: str, topic: str) -> int | None:
    """Records of ``topic`` not yet committed by ``group`` (None while the broker cannot say)."""
    c = Cluster(bootstrap)
    try:
        return c.lag(group, topic)
    except (KafkaException, TimeoutError):
        return None
    finally:
        c.close()


def group_joined(bootstrap: str, group: str) -> bool:
    """Whether some member of ``group`` holds an assignment (False while joining or unknown)."""
    c = Cluster(bootstrap)
    try:
        return any(parts for _, parts in c.members(group))
    except (KafkaException, TimeoutError):  # e.g. NOT_COORDINATOR while a fresh broker loads offsets
        return False
    finally:
        c.close()


__all__: Sequence[str] = ["Cluster", "Record", "committed", "consume", "group_joined", "group_lag", "read_topic",
                          "to_record"]  # fmt: skip
