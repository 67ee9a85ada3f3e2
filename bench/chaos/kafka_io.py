"""The few Kafka operations the harness needs, from the outside (confluent-kafka, never the
runtime under test): the scenario's topics and catalog, watermarks, a group's committed
offsets and members, and reading a topic range back for the checker."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

from bench.chaos.broker import REPO
from pit_streams.contract.naming import DEAD_LETTER_TOPIC
from pit_streams.contract.naming import changelog_topic as changelog_of

FILLS = "pit.v1.exec.trade_fill"
NAV = "pit.v1.acct.nav_update"
DEAD_LETTER = DEAD_LETTER_TOPIC
CATALOG = REPO / "infra" / "topics.yaml"


#: The changelog's topic configs that force the log cleaner on it within seconds (with the chaos
#: broker's ``log.cleaner.backoff.ms`` 500, see ``infra/kafka/chaos.properties``): segments roll
#: every second, any dirt makes a segment cleanable, tombstones are dropped 1 s after cleaning.
FORCED_CLEANER = {
    "segment.ms": "1000",
    "min.cleanable.dirty.ratio": "0.01",
    "delete.retention.ms": "1000",
    "min.compaction.lag.ms": "0",
}


def write_catalog(path: Path, groups: Iterable[str], changelog_config: Mapping[str, str] | None = None) -> Path:
    """``infra/topics.yaml`` plus a changelog entry per chaos consumer group (its ``config``
    updated with ``changelog_config``: the topic is created with it, so the catalog has no drift);
    the first group owns NAV."""
    doc = yaml.safe_load(CATALOG.read_text(encoding="utf-8"))
    template = next(t for t in doc["topics"] if t["name"].endswith("_changelog"))
    have = {t["name"] for t in doc["topics"]}
    groups = list(groups)
    for group in groups:
        name = changelog_of(group)
        if name in have:
            continue
        entry = dict(template)
        entry.update(name=name, owner=group,
                     description=f"State and dedupe marks of chaos consumer group {group} (throw-away).")
        if changelog_config:
            entry["config"] = {**(entry.get("config") or {}), **changelog_config}
        doc["topics"].append(entry)
    for topic in doc["topics"]:
        if topic["name"] == NAV and groups:
            # A worker refuses to emit to a topic its group does not own (catalog ownership).
            topic["owner"] = groups[0]
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def apply_topics(bootstrap: str, catalog: Path) -> list[str]:
    """``pit-streams topics apply --broker B --replicas-override 1 --catalog C``; returns the drift
    lines (existing topics that differ from the catalog: reported, never changed — exit status 1)."""
    res = subprocess.run(
        [sys.executable, "-m", "pit_streams.cli", "topics", "apply", "--broker", bootstrap,
         "--replicas-override", "1", "--catalog", str(catalog)],
        cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=180, check=False,
    )  # fmt: skip
    drift = [ln.split(None, 1)[1] for ln in res.stdout.splitlines() if ln.startswith("drift ")]
    if res.returncode != 0 and not (res.returncode == 1 and drift):
        raise RuntimeError(f"pit-streams topics apply failed ({res.returncode}):\n{res.stdout[-3000:]}")
    return drift


@dataclass(frozen=True)
class Rec:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]
    timestamp_ms: int = 0


# The harness's own clients stay quiet while the broker is away (it is, on purpose).
QUIET = {"log_level": 2}


def _bytes(v: Any) -> bytes | None:
    return v.encode() if isinstance(v, str) else v


class Kafka:
    """Admin + an unsubscribed consumer (watermarks, committed offsets). Calls raise
    ``KafkaException`` while the broker is down; ``retrying`` wraps them for the monitor."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.admin = AdminClient({"bootstrap.servers": bootstrap, **QUIET})
        self._meta = Consumer({"bootstrap.servers": bootstrap, "group.id": f"chaos-meta-{uuid.uuid4().hex[:8]}",
                               "enable.auto.commit": False, **QUIET})  # fmt: skip
        self._partitions: dict[str, int] = {}
        self.stopped_short: dict[int, tuple[int, int]] = {}
        self._meta_uncommitted: Any = None

    def close(self) -> None:
        self._meta.close()
        if self._meta_uncommitted is not None:
            self._meta_uncommitted.close()

    def partitions(self, topic: str) -> int:
        n = self._partitions.get(topic)
        if n is None:
            md = self.admin.list_topics(topic=topic, timeout=10)
            t = md.topics.get(topic)
            if t is None or t.error is not None or not t.partitions:
                raise RuntimeError(f"topic {topic} does not exist")
            n = self._partitions[topic] = len(t.partitions)
        return n

    def end_offsets(self, topic: str, timeout: float = 10.0, isolation: str = "read_committed") -> dict[int, int]:
        """The end of each partition as a reader of ``isolation`` sees it: for ``read_committed``
        (librdkafka's default, every reader here unless told) the last stable offset — below an
        open transaction; for ``read_uncommitted`` the high watermark."""
        meta = self._meta
        if isolation != "read_committed":
            if self._meta_uncommitted is None:
                self._meta_uncommitted = Consumer({
                    "bootstrap.servers": self.bootstrap, "group.id": f"chaos-meta-{uuid.uuid4().hex[:8]}",
                    "enable.auto.commit": False, "isolation.level": "read_uncommitted", **QUIET})  # fmt: skip
            meta = self._meta_uncommitted
        return {p: meta.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)[1]
                for p in range(self.partitions(topic))}  # fmt: skip

    def committed(self, group: str, topic: str, timeout: float = 10.0) -> dict[int, int]:
        """The group's committed offsets (0 where nothing is committed)."""
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": group, "enable.auto.commit": False, **QUIET})
        try:
            tps = c.committed([TopicPartition(topic, p) for p in range(self.partitions(topic))], timeout=timeout)
        finally:
            c.close()
        return {tp.partition: max(tp.offset, 0) for tp in tps}

    def commit(self, group: str, topic: str, offsets: Mapping[int, int]) -> None:
        """Start a NEW group at ``offsets`` (before any member joined): with ``--broker`` the
        topics hold earlier runs' records, which this run's workers must not process."""
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": group, "enable.auto.commit": False, **QUIET})
        try:
            c.commit(offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()], asynchronous=False)
        finally:
            c.close()

    def members(self, group: str) -> list[tuple[str, list[int]]]:
        """``(client id, assigned partitions)`` of each member of ``group``'s current generation."""
        fut = self.admin.describe_consumer_groups([group], request_timeout=10)[group]
        desc = fut.result()
        out = []
        for m in desc.members:
            parts = sorted({tp.partition for tp in (m.assignment.topic_partitions if m.assignment else [])})
            out.append((m.client_id, parts))
        return out

    def _scan(self, topic: str, start: Mapping[int, int], end: Mapping[int, int], *, timeout: float,
              isolation: str = "read_committed", eof_ends: bool = False) -> Iterator[Any]:  # fmt: skip
        """Yield the messages of ``topic`` in [start, end) per partition. A partition is done at
        ``end``, or — ``eof_ends`` — when the reader reaches the partition's end below it: a
        compacted topic (the records just below ``end`` may be gone) or a ``read_committed``
        reader (transaction markers take offsets it never sees; an open transaction stops it at
        the last stable offset). ``self.stopped_short`` keeps those partitions: {p: (at, end)}."""
        c = Consumer({
            "bootstrap.servers": self.bootstrap, "group.id": f"chaos-check-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False, "enable.partition.eof": eof_ends, "isolation.level": isolation,
            "fetch.message.max.bytes": 4 * 1024 * 1024, **QUIET,
        })  # fmt: skip
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
                        if err.code() == KafkaError._PARTITION_EOF:
                            if eof_ends and p in want and p not in done:
                                done.add(p)
                                if (o or 0) < want[p][1]:
                                    self.stopped_short[p] = (o or 0, want[p][1])
                            continue
                        raise KafkaException(err)
                    if p is None or o is None or p not in want or p in done or o >= want[p][1]:
                        continue
                    pos[p] = o + 1
                    if pos[p] >= want[p][1]:
                        done.add(p)
                    yield m
        finally:
            c.close()

    def read(self, topic: str, start: Mapping[int, int], end: Mapping[int, int], timeout: float = 120.0,
             isolation: str = "read_committed") -> list[Rec]:  # fmt: skip
        """Every record of ``topic`` in [start, end) per partition, in (partition, offset) order, as
        a reader with ``isolation.level`` = ``isolation`` sees it (see ``_scan``)."""
        out: list[Rec] = []
        for m in self._scan(topic, start, end, timeout=timeout, isolation=isolation, eof_ends=True):
            raw: Any = m.headers() or []
            pairs = raw.items() if isinstance(raw, dict) else raw
            out.append(Rec(m.partition(), m.offset(), _bytes(m.key()), _bytes(m.value()),
                           {k: _bytes(v) or b"" for k, v in pairs}, m.timestamp()[1]))  # fmt: skip
        out.sort(key=lambda r: (r.partition, r.offset))
        return out

    def count(self, topic: str, end: Mapping[int, int], timeout: float = 300.0) -> dict[int, int]:
        """How many records of ``topic`` with an offset below ``end`` a read_uncommitted reader
        finds per partition now (compaction removes some: the count drops)."""
        got = {p: 0 for p in end}
        for m in self._scan(topic, {}, end, timeout=timeout, isolation="read_uncommitted", eof_ends=True):
            got[m.partition()] += 1
        return got

    def set_topic_config(self, topic: str, configs: Mapping[str, str], timeout: float = 30.0) -> None:
        """Set (incrementally) ``configs`` on ``topic``, e.g. to force the log cleaner on it."""
        res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
            ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in configs.items()])  # fmt: skip
        for fut in self.admin.incremental_alter_configs([res], request_timeout=timeout).values():
            fut.result()

    def topic_config(self, topic: str, timeout: float = 30.0) -> dict[str, str]:
        res = ConfigResource(ResourceType.TOPIC, topic)
        got = self.admin.describe_configs([res], request_timeout=timeout)[res].result()
        return {k: v.value for k, v in got.items()}


def retrying(fn: Any, *args: Any, attempts: int = 1_000_000, deadline: float | None = None) -> Any:
    """Call ``fn`` until it stops raising Kafka errors (the broker may be restarting)."""
    last: Exception | None = None
    for _ in range(attempts):
        if deadline is not None and time.monotonic() > deadline:
            break
        try:
            return fn(*args)
        except (KafkaException, RuntimeError) as exc:
            last = exc
            time.sleep(0.5)
    raise TimeoutError(f"{getattr(fn, '__name__', fn)} kept failing: {last}")
