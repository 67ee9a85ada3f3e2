"""Measuring a contender from the outside.

* :class:`ProcTreeSampler` polls ``/proc`` for the contender's process tree: summed RSS (peak),
  and CPU seconds (user + system of live processes plus reaped children).
* :class:`OutputObserver` reads the contender's output topic with its own confluent consumer:
  first-output time, the moment the expected set of distinct outputs is complete, and (for the
  latency phase) ``observed time - envelope ts`` per output.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from pit.envelope.v1.envelope_pb2 import EventEnvelope

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 2 (comm) may contain spaces: split after the closing parenthesis.
    return raw.rsplit(")", 1)[1].split()


def _children(pid: int) -> list[int] | None:
    """Direct children from ``/proc/PID/task/*/children`` (None if the kernel lacks it)."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    out: list[int] = []
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out.extend(int(x) for x in f.read().split())
        except FileNotFoundError:
            return None
        except OSError:
            continue
    return out


def descendants(root: int) -> list[int]:
    """``root`` and every process below it."""
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        kids = _children(pid)
        if kids is None:
            return _descendants_by_scan(root)
        out.append(pid)
        todo.extend(kids)
    return out


def _descendants_by_scan(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        st = _stat(int(entry))
        if st is None:
            continue
        children.setdefault(int(st[1]), []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def _hwm_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _cpu_seconds(pid: int, *, with_reaped: bool) -> float:
    st = _stat(pid)
    if st is None:
        return 0.0
    # Fields after comm, 0-based: state=0 ppid=1 ... utime=11 stime=12 cutime=13 cstime=14.
    ticks = int(st[11]) + int(st[12])
    if with_reaped:
        ticks += int(st[13]) + int(st[14])
    return ticks / CLK_TCK


class ProcTreeSampler(threading.Thread):
    """Poll a subprocess tree every ``interval`` seconds for RSS and CPU."""

    def __init__(self, root: int, interval: float = 0.1) -> None:
        super().__init__(daemon=True, name=f"sampler-{root}")
        self.root = root
        self.interval = interval
        self.peak_rss = 0
        self.peak_pids = 1
        self._last_cpu = 0.0
        self._stop_evt = threading.Event()
        self._lock = threading.Lock()

    def cpu_now(self) -> float:
        """CPU seconds used so far by the tree (live processes + children they reaped)."""
        pids = descendants(self.root)
        total = 0.0
        for pid in pids:
            total += _cpu_seconds(pid, with_reaped=True)
        with self._lock:
            # A child that exits between scans and is not reaped yet is lost: never go backwards.
            self._last_cpu = max(self._last_cpu, total)
            return self._last_cpu

    def sample(self) -> None:
        pids = descendants(self.root)
        rss = sum(_rss_bytes(p) for p in pids)
        hwm = max((_hwm_bytes(p) for p in pids), default=0)
        self.peak_rss = max(self.peak_rss, rss, hwm)
        self.peak_pids = max(self.peak_pids, len(pids))
        self.cpu_now()

    def run(self) -> None:
        while not self._stop_evt.is_set():
            self.sample()
            self._stop_evt.wait(self.interval)

    def stop(self) -> None:
        self._stop_evt.set()
        self.join(timeout=5)


@dataclass
class Observation:
    first_output: float | None = None  # wall-clock seconds (time.time())
    complete_at: float | None = None
    records: int = 0  # output records seen, duplicates included (parsed or not)
    distinct: set[str] = field(default_factory=set)  # causation ids (= input event ids) answered
    output_ids: set[str] = field(default_factory=set)
    unexpected: int = 0  # outputs whose causation id is not an input id
    latencies_ms: list[float] = field(default_factory=list)
    produced_ms: list[float] = field(default_factory=list)
    latest_output: float | None = None


class OutputObserver(threading.Thread):
    """Consume ``topic`` from the beginning and track which inputs were answered.

    An output answers the input named by its envelope's ``causation_id`` (every contender sets
    it; their output event ids differ, being derived from each one's app name). ``expected``:
    the input ids that must all be answered; the observer is complete when they are.
    ``parse_all``: decode every output as it arrives (latency mode); otherwise outputs are decoded
    only once enough have arrived. ``latency_from_ns``: record ``now - envelope ts`` for outputs
    whose ts is at or after this instant (ns since the epoch); ``None`` records none.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        *,
        expected: frozenset[str] | None,
        expected_count: int | None = None,
        latency_from_ns: int | None = None,
        latency_until_ns: int | None = None,
        parse_all: bool = False,
    ) -> None:
        super().__init__(daemon=True, name=f"observer-{topic}")
        from confluent_kafka import Consumer

        self.topic = topic
        self.expected = expected
        self.expected_count = expected_count if expected_count is not None else len(expected or ())
        self.latency_from_ns = latency_from_ns
        self.latency_until_ns = latency_until_ns
        self.parse_all = parse_all
        self.obs = Observation()
        self.done = threading.Event()
        self._stop_evt = threading.Event()
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"{topic}.observer",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                # What a downstream reader sees: an exactly-once contender's outputs count once their
                # transaction commits (for the others, whose producers are not transactional, the same).
                "isolation.level": "read_committed",
                "fetch.wait.max.ms": 10,
                "fetch.error.backoff.ms": 10,
                "enable.partition.eof": False,
            }
        )
        self._consumer.subscribe([topic])

    def run(self) -> None:
        c = self._consumer
        obs = self.obs
        # (value, record timestamp ms) not parsed yet (throughput mode parses lazily)
        pending: list[tuple[bytes, int]] = []
        try:
            while not self._stop_evt.is_set():
                # consume(n, timeout) waits for n records or the timeout: block for one record
                # only, then take what is already fetched, so no wait is added to observed times.
                msgs = c.consume(num_messages=1, timeout=0.05)
                if not msgs:
                    continue
                now = time.time()
                now_ns = time.time_ns()
                msgs += c.consume(num_messages=5000, timeout=0)
                for m in msgs:
                    value = m.value()
                    if m.error() is None and value is not None:
                        pending.append((value, m.timestamp()[1]))
                obs.records += len(msgs)
                if obs.first_output is None:
                    obs.first_output = now
                obs.latest_output = now
                # Parsing every output while the contender runs would steal CPU from it on a
                # small machine: in throughput mode, parse only once enough records arrived.
                if self.parse_all or (obs.records >= self.expected_count > 0 and obs.complete_at is None):
                    self._parse(pending, now_ns)
                    pending.clear()
                if obs.complete_at is None and len(obs.distinct) >= self.expected_count > 0:
                    obs.complete_at = now
                    self.done.set()
            self._parse(pending, time.time_ns())
        finally:
            c.close()

    def _parse(self, values: list[tuple[bytes, int]], now_ns: int) -> None:
        obs = self.obs
        lat_from, lat_until = self.latency_from_ns, self.latency_until_ns
        for value, record_ts_ms in values:
            env = EventEnvelope.FromString(value)
            cause = env.causation_id
            if self.expected is not None and cause not in self.expected:
                obs.unexpected += 1
            else:
                obs.distinct.add(cause)
                obs.output_ids.add(env.event_id)
            if lat_from is not None:
                ts_ns = env.ts.seconds * 1_000_000_000 + env.ts.nanos
                if ts_ns >= lat_from and (lat_until is None or ts_ns < lat_until):
                    obs.latencies_ms.append((now_ns - ts_ns) / 1e6)
                    # The output record's CreateTime is stamped by the contender's producer: it
                    # splits the latency into "input to output produced" and "output delivered".
                    obs.produced_ms.append(record_ts_ms - ts_ns / 1e6)

    def stop(self) -> None:
        self._stop_evt.set()
        self.join(timeout=10)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    idx = min(len(s) - 1, max(0, round(q / 100.0 * (len(s) - 1))))
    return s[idx]
