"""Restart-to-ready of a pit-streams worker holding N dedupe ids (goal < 10 s; reported, never asserted).

    python -m bench.restart [--ids 1000000] [--broker H:P] [--transport confluent|aiokafka]

1. Fresh topics for a throw-away group of the bench pit app (``bench.contenders.pit_app``, catalog
   via ``PIT_CATALOG`` as the throughput runs do): input and output (8 partitions), the group's
   changelog (compact, 8 partitions), ``pit.v1.ops.dead_letter`` if missing.
2. N dedupe ids are written straight into the changelog, the way the runtime's checkpoint writes
   them (``pit_streams.state.changelog.mark_records``): ids spread evenly over
   the partitions; per partition, checkpoints of ``batch / partitions`` ids (what a poll of ``batch``
   records over evenly loaded partitions gives each); per checkpoint one record per canonical key
   (the bench input's 64 keys, each on its murmur2 partition). Running the worker over N real
   inputs would write the same records, N / ~20k s slower.
3. The worker runs as a subprocess (``python -m pit_streams.cli worker``) and is measured from outside:
   a. fresh disk (a partition moved to a new worker): empty data dir; right after the spawn one probe
      per input partition (a valid enveloped TradeFillEvent, new event id), each preceded on its
      partition (same key, so same output partition) by a re-sent restored id. Ready = spawn -> all
      probe outputs observed on the output topic; the re-sent ids must produce no output.
   b. same disk: SIGTERM (must exit 0), spawn again on the same data dir, probe again.
   The worker's ``/readyz`` gives when it held and had restored every partition (its log text is
   not an API); its ``/metrics`` the changelog records it restored; ``/proc`` its peak RSS.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from pit.envelope.v1.envelope_pb2 import EventEnvelope
from pit.events.v1.events_pb2 import TradeFillEvent

from bench import registry, topics
from bench.input import CELLS, PRODUCER, SERIES, TENANTS, fill_envelope, partition_of, producer_config
from bench.measure import ProcTreeSampler
from bench.registry import RunSpec
from devkit.broker import broker
from devkit.tail import Tail
from devkit.topics import delete_topics
from devkit.workers import WorkerError, WorkerProcess
from pit_streams.contract import sha256_hex
from pit_streams.contract.envelope import wrap
from pit_streams.contract.keys import Key
from pit_streams.state.changelog import changelog_topic, mark_records

GOAL_S = 10.0
PIT_APP_VERSION = "0.1.0"  # bench/contenders/pit_app.py: App(GROUP, version="0.1.0")
#: A counter of the worker's /metrics, when its runtime exports it (None in the result otherwise).
RESTORED_METRIC = "pit_changelog_records_restored"


class RestartBenchError(RuntimeError):
    pass


def log(msg: str) -> None:
    print(f"[restart {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def short_count(n: int) -> str:
    """1000000 -> '1M', 20000 -> '20k'."""
    if n >= 1_000_000 and n % 100_000 == 0:
        return f"{n / 1_000_000:g}M"
    if n >= 1_000 and n % 100 == 0:
        return f"{n / 1_000:g}k"
    return f"{n:,}"


def keys_for(count: int) -> list[Key]:
    """``count`` canonical keys; the first 64 are the bench input's (``bench.input.all_keys``)."""
    out: list[Key] = []
    cell = 0
    while len(out) < count:
        out.extend(Key(t, s, f"{c:04d}") for t in TENANTS for s in SERIES for c in range(cell, cell + CELLS))
        cell += CELLS
    return out[:count]


# -- 2. the changelog ---------------------------------------------------------------------------------


@dataclass
class Written:
    ids: int
    records: int
    checkpoints: int
    seconds: float
    bytes: int
    #: per partition: (event id, key) of the first and of the last id written there
    samples: dict[int, list[tuple[str, Key]]] = field(default_factory=dict)


def write_changelog(
    bootstrap: str, topic: str, *, group: str, ids: int, partitions: int, batch: int, keys: int, input_topic: str,
    seed: int = 11,
) -> Written:
    """Dedupe records for ``ids`` random UUIDs, grouped as ``runtime/checkpoint.py`` groups them."""
    from confluent_kafka import Producer

    rng = random.Random(seed)
    producer_name = f"{group}@{PIT_APP_VERSION}"
    all_keys = keys_for(keys)
    placed = {k: partition_of(k.text.encode(), partitions) for k in all_keys}
    by_partition = {p: [k for k in all_keys if placed[k] == p] for p in range(partitions)}
    if ids < partitions:
        raise RestartBenchError(f"--ids {ids} is fewer than the {partitions} partitions")
    if any(not ks for ks in by_partition.values()):
        raise RestartBenchError(f"--keys {keys} leaves a partition without keys (need >= {partitions})")
    per_partition = [ids // partitions + (1 if p < ids % partitions else 0) for p in range(partitions)]
    per_checkpoint = max(1, batch // partitions)
    ts = Timestamp()
    ts.GetCurrentTime()  # expiry = ts + the app's dedupe TTL (7 days)
    producer = Producer(producer_config(bootstrap))
    done = [0] * partitions
    out = Written(ids, 0, 0, 0.0, 0, {p: [] for p in range(partitions)})
    t0 = time.monotonic()
    while any(done[p] < per_partition[p] for p in range(partitions)):
        out.checkpoints += 1
        for p in range(partitions):
            n = min(per_checkpoint, per_partition[p] - done[p])
            if n <= 0:
                continue
            grouped: dict[Key, list[str]] = {}
            for _ in range(n):
                key = rng.choice(by_partition[p])
                event_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
                digest = "0" * 32  # the payload hash of ids that are never re-sent does not matter
                if done[p] in (0, per_partition[p] - 1):  # the ids the probes re-send: their real hash
                    out.samples[p].append((event_id, key))
                    digest = sha256_hex(EventEnvelope.FromString(resent_fill(key, event_id, input_topic)).payload)[:32]
                grouped.setdefault(key, []).append(("", event_id, digest))
                done[p] += 1
            for key, marks in grouped.items():
                for record_key, value, _ in mark_records(key, marks, producer=producer_name, ts=ts):
                    while True:
                        try:
                            producer.produce(topic, value=value, key=record_key.encode(), partition=p)
                            break
                        except BufferError:
                            producer.poll(0.05)
                    out.records += 1
                    out.bytes += len(value) + len(record_key)
        producer.poll(0)
    left = producer.flush(120)
    if left:
        raise RestartBenchError(f"{left} changelog record(s) not acknowledged by the broker")
    out.seconds = time.monotonic() - t0
    return out


# -- 3. probes and the observer ------------------------------------------------------------------------


def resent_fill(key: Key, event_id: str, topic: str) -> bytes:
    """The very envelope upstream sends again for ``event_id``: same bytes, so the same payload hash."""
    return fill_with_id(random.Random(event_id), key, event_id, topic, ts_ns=1_700_000_000_000_000_000)


def fill_with_id(rng: random.Random, key: Key, event_id: str, topic: str, ts_ns: int | None = None) -> bytes:
    """A valid enveloped TradeFillEvent with the given event id (a re-sent input, as upstream would)."""
    _, raw = fill_envelope(rng, key, time.time_ns() if ts_ns is None else ts_ns, topic)
    env = EventEnvelope.FromString(raw)
    fill = TradeFillEvent.FromString(env.payload)
    fill.event_id = event_id
    out = wrap(fill, key=key, event_id=event_id, producer=PRODUCER, ts=env.ts, topic=topic)
    return bytes(out.SerializeToString())


class ProbeObserver(threading.Thread):
    """Reads the output topic (assigned, no group join) and notes when each causation id first shows up."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(daemon=True, name=f"restart-observer-{topic}")
        self._tail = Tail(bootstrap, topic, **{"fetch.wait.max.ms": 10, "fetch.error.backoff.ms": 10})
        self.seen: dict[str, float] = {}  # causation id -> time.monotonic() first observed
        self.records = 0
        self._cond = threading.Condition()
        self._stop_evt = threading.Event()

    def run(self) -> None:
        try:
            while not self._stop_evt.is_set():
                got = self._tail.poll(timeout=0.05, max_seconds=0)
                now = time.monotonic()
                with self._cond:
                    for r in got:
                        self.records += 1
                        self.seen.setdefault(r.envelope.causation_id, now)
                    self._cond.notify_all()
        finally:
            self._tail.close()

    def wait_for(self, ids: set[str], until: float, alive: Any) -> bool:
        """Block until every id in ``ids`` was observed (True), ``until`` passes or ``alive()`` is False."""
        with self._cond:
            while not ids <= self.seen.keys():
                if time.monotonic() > until or not alive():
                    return False
                self._cond.wait(0.05)
            return True

    def snapshot(self) -> dict[str, float]:
        with self._cond:
            return dict(self.seen)

    def stop(self) -> None:
        self._stop_evt.set()
        self.join(timeout=10)


# -- the worker ------------------------------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    ok: bool = False
    status: str = "not run"
    ready_s: float | None = None
    probes_answered: int = 0
    probes_sent: int = 0
    #: restored ids re-sent as inputs (one per partition, before that partition's probe)
    duplicates_sent: int = 0
    duplicate_outputs: int = 0
    changelog_records_restored: int | None = None
    #: seconds after spawn until ``/readyz`` answered 200 (in the group, every partition restored)
    readyz_s: float | None = None
    peak_rss_mb: float = 0.0
    cpu_s_to_ready: float | None = None
    exit_code: int | None = None
    stop_s: float | None = None
    log: str = ""
    #: standby-move only: partitions the standby worker followed, and the records it had applied
    standby_partitions: int | None = None
    standby_records_applied: int | None = None


def restored_records(metrics_text: str) -> int | None:
    """``RESTORED_METRIC`` summed over its samples in a Prometheus text page (None: not exported)."""
    values = [float(line.rsplit(None, 1)[1]) for line in metrics_text.splitlines()
              if line.startswith(RESTORED_METRIC) and not line.startswith("#")]  # fmt: skip
    return int(sum(values)) if values else None


def _tail(path: Path, n: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


@dataclass
class Setup:
    bootstrap: str
    plan: topics.TopicPlan
    spec: RunSpec
    transport: str
    batch: int
    partitions: int
    samples: dict[int, list[tuple[str, Key]]]
    log_dir: Path


def probe_messages(s: Setup, sample_index: int, rng: random.Random) -> tuple[
        list[tuple[int, bytes, bytes]], set[str], set[str]]:
    """Per partition, a restored id sent again (must be dropped) and a fresh probe (must be
    answered): the (partition, key, value) messages in send order, the probe ids, the re-sent ids."""
    probes: set[str] = set()
    dups: set[str] = set()
    messages: list[tuple[int, bytes, bytes]] = []
    for p in range(s.partitions):
        dup_id, key = s.samples[p][sample_index % len(s.samples[p])]
        dups.add(dup_id)
        messages.append((p, key.text.encode(), resent_fill(key, dup_id, s.plan.input)))
        probe_id = str(uuid.uuid4())
        probes.add(probe_id)
        messages.append((p, key.text.encode(), fill_with_id(rng, key, probe_id, s.plan.input)))
    return messages, probes, dups


def run_phase(s: Setup, name: str, sample_index: int, observer: ProbeObserver, timeout: float) -> Phase:
    """Spawn the worker, probe every partition, wait for the answers, SIGTERM it (exit 0 expected)."""
    from confluent_kafka import Producer

    phase = Phase(name)
    log_path = s.log_dir / f"worker-{name}.log"
    phase.log = str(log_path)
    contender = registry.pit_streams(s.transport)
    messages, probes, dups = probe_messages(s, sample_index, random.Random(name))
    producer = Producer(producer_config(s.bootstrap, **{"linger.ms": 0}))
    producer.list_topics(s.plan.input, timeout=10)  # connected before the clock starts
    phase.probes_sent, phase.duplicates_sent = len(probes), len(dups)

    worker = WorkerProcess(name, registry.PIT_APP_MODULE, s.bootstrap, Path(s.spec.data_dir), log_path,
                           env=contender.process_env(s.spec), drop_env=(), cli_args=["--log-level", "INFO"],
                           args=["--transport", s.transport, "--batch-size", str(s.batch)])  # fmt: skip
    t_spawn = time.monotonic()
    worker.start()
    assert worker.pid is not None
    sampler = ProcTreeSampler(worker.pid, interval=0.05)
    sampler.start()
    try:
        for p, record_key, value in messages:
            producer.produce(s.plan.input, value=value, key=record_key, partition=p)
        if producer.flush(10):
            raise RestartBenchError("probe records were not acknowledged by the broker")
        try:
            phase.readyz_s = round(worker.wait_ready(timeout), 3)
        except WorkerError as exc:
            log(f"{name}: {str(exc).splitlines()[0]}")
        answered = observer.wait_for(probes, t_spawn + timeout, worker.alive)
        cpu_at = sampler.cpu_now()
        seen = observer.snapshot()
        phase.probes_answered = sum(1 for i in probes if i in seen)
        phase.changelog_records_restored = restored_records(worker.metrics())
        if answered:
            phase.ready_s = round(max(seen[i] for i in probes) - t_spawn, 3)
            phase.cpu_s_to_ready = round(cpu_at, 2)
            # Each re-sent id went to its partition before that partition's probe, with the probe's
            # key: any output it had caused would precede the probe's on the same output partition.
            time.sleep(0.5)
            phase.duplicate_outputs = sum(1 for i in dups if i in observer.snapshot())
            phase.status = "ok" if not phase.duplicate_outputs else f"{phase.duplicate_outputs} duplicate(s) answered"
        elif not worker.alive():
            phase.status = f"worker exited rc={worker.returncode} before answering every probe"
        else:
            phase.status = f"timeout: {phase.probes_answered}/{len(probes)} probes answered after {timeout:g}s"
        # A clean stop: the worker finishes its batch, commits and exits 0.
        t_stop = time.monotonic()
        ex = worker.terminate(60)
        phase.exit_code = ex.returncode
        if ex.cause.startswith("did not exit"):
            phase.status += "; did not exit within 60s of SIGTERM (killed)"
        elif ex.cause.startswith("SIGTERM"):
            phase.stop_s = round(time.monotonic() - t_stop, 2)
        if phase.exit_code != 0 and phase.status == "ok":
            phase.status = f"exit code {phase.exit_code} after SIGTERM (expected 0)"
    finally:
        sampler.stop()
        if worker.alive():
            worker.kill()
    phase.peak_rss_mb = round(sampler.peak_rss / 2**20, 1)
    phase.ok = phase.status == "ok"
    if not phase.ok:
        log(f"{name}: {phase.status}; worker log tail:\n{_tail(log_path)}")
    return phase



def standby_metric(metrics_text: str, name: str) -> int | None:
    names = (name, name + "_total")  # prometheus_client exports counters with a _total suffix
    values = [float(line.rsplit(None, 1)[1]) for line in metrics_text.splitlines()
              if line.split("{", 1)[0].split(" ", 1)[0] in names]  # fmt: skip
    return int(sum(values)) if values else None


def run_standby_move(s: Setup, sample_index: int, observer: ProbeObserver, timeout: float) -> Phase:
    """A partition move to a warm standby (docs/adr/0012): an owner on the same-disk store and a
    second worker with ``--standby`` on an empty data dir join the group (half the partitions
    each); once the second's standby stores have caught up with the changelog, the owner is
    stopped (SIGTERM) and its partitions move to the standby worker. Ready = owner's exit ->
    every probe's output observed (the group's rebalance included)."""
    from confluent_kafka import Producer

    phase = Phase("standby-move")
    contender = registry.pit_streams(s.transport)
    env = contender.process_env(s.spec)
    common = ["--transport", s.transport, "--batch-size", str(s.batch)]
    owner = WorkerProcess("standby-owner", registry.PIT_APP_MODULE, s.bootstrap, Path(s.spec.data_dir),
                          s.log_dir / "worker-standby-owner.log", env=env, drop_env=(),
                          cli_args=["--log-level", "INFO"], args=common)  # fmt: skip
    standby_dir = Path(s.spec.data_dir).with_name("state-standby")
    mover = WorkerProcess("standby", registry.PIT_APP_MODULE, s.bootstrap, standby_dir,
                          s.log_dir / "worker-standby.log", env=env, drop_env=(), cli_args=["--log-level", "INFO"],
                          args=[*common, "--standby"])  # fmt: skip
    phase.log = str(mover.log_path)
    messages, probes, dups = probe_messages(s, sample_index, random.Random("standby-move"))
    producer = Producer(producer_config(s.bootstrap, **{"linger.ms": 0}))
    producer.list_topics(s.plan.input, timeout=10)
    phase.probes_sent, phase.duplicates_sent = len(probes), len(dups)
    try:
        owner.start()
        owner.wait_ready(timeout)
        mover.start(fresh_disk=True)
        deadline = time.monotonic() + timeout * 3
        while True:  # the standby worker restores its own half, then follows the owner's
            text = mover.metrics()
            lag = standby_metric(text, "pit_standby_lag_records")
            followed = standby_metric(text, "pit_standby_partitions") or 0
            if mover.ready() and followed > 0 and lag == 0:
                break
            if not mover.alive() or not owner.alive() or time.monotonic() > deadline:
                raise RestartBenchError(f"standby did not catch up (lag {lag}, {followed} partitions followed)")
            time.sleep(0.1)  # an HTTP probe of another process: there is no event to await
        before = restored_records(mover.metrics()) or 0
        phase.standby_partitions = followed
        phase.standby_records_applied = standby_metric(text, "pit_standby_records_applied")
        sampler = ProcTreeSampler(mover.pid or 0, interval=0.05)
        sampler.start()
        t0 = time.monotonic()
        ex = owner.terminate(60)
        if ex.returncode != 0:
            raise RestartBenchError(f"the owner exited {ex.returncode} after SIGTERM (expected 0)")
        phase.stop_s = round(time.monotonic() - t0, 2)
        t_moved = time.monotonic()
        for p, record_key, value in messages:
            producer.produce(s.plan.input, value=value, key=record_key, partition=p)
        if producer.flush(10):
            raise RestartBenchError("probe records were not acknowledged by the broker")
        answered = observer.wait_for(probes, t_moved + timeout, mover.alive)
        cpu_at = sampler.cpu_now()
        sampler.stop()
        seen = observer.snapshot()
        phase.probes_answered = sum(1 for i in probes if i in seen)
        after = restored_records(mover.metrics())
        phase.changelog_records_restored = None if after is None else after - before
        phase.peak_rss_mb = round(sampler.peak_rss / 2**20, 1)
        if answered:
            phase.ready_s = round(max(seen[i] for i in probes) - t_moved, 3)
            phase.cpu_s_to_ready = round(cpu_at, 2)
            time.sleep(0.5)  # as run_phase: a duplicate's output would precede its probe's
            phase.duplicate_outputs = sum(1 for i in dups if i in observer.snapshot())
            phase.status = "ok" if not phase.duplicate_outputs else f"{phase.duplicate_outputs} duplicate(s) answered"
        else:
            phase.status = f"timeout: {phase.probes_answered}/{len(probes)} probes answered after {timeout:g}s"
        phase.exit_code = mover.terminate(60).returncode
    except (RestartBenchError, WorkerError) as exc:
        phase.status = str(exc).splitlines()[0]
    finally:
        for w in (owner, mover):
            if w.alive():
                w.kill()
    phase.ok = phase.status == "ok"
    if not phase.ok:
        log(f"standby-move: {phase.status}; worker log tail:\n{_tail(mover.log_path)}")
    return phase


# -- the whole measurement ------------------------------------------------------------------------------


def measure(
    bootstrap: str,
    *,
    ids: int,
    run_id: str | None = None,
    partitions: int = 8,
    batch: int = 2000,
    keys: int = 64,
    transport: str = "confluent",
    timeout: float = 120.0,
    log_dir: Path | None = None,
    created: list[str] | None = None,
    standby: bool = False,
) -> dict[str, Any]:
    """Write ``ids`` dedupe ids to a fresh group's changelog, then time a fresh-disk start and a
    same-disk restart of its worker. Returns the ``restart`` section of ``latest.json``."""
    run_id = run_id or "r" + time.strftime("%Y%m%d%H%M%S")
    plan = topics.plan(run_id, "restart", platform=True, input_topic=None, partitions=partitions)
    changelog = changelog_topic(plan.group)
    if changelog != topics.changelog_of(plan.group):
        raise RestartBenchError(f"bench.topics.changelog_of disagrees with the runtime: {changelog}")
    if created is not None:
        created.extend(plan.names())
    own_logs = log_dir is None
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="pit-bench-restart-logs-"))
    work = Path(tempfile.mkdtemp(prefix="pit-bench-restart-"))
    result: dict[str, Any] = {
        "ids": ids,
        "partitions": partitions,
        "transport": transport,
        "group": plan.group,
        "topics": {"input": plan.input, "output": plan.output, "changelog": changelog},
        "goal_s": GOAL_S,
        "logs": str(log_dir),
    }
    observer: ProbeObserver | None = None
    try:
        plan.ensure(bootstrap)
        catalog = plan.write_catalog(work / "topics.yaml")
        spec = RunSpec(bootstrap, plan.input, plan.output, plan.group, str(work / "state"), batch,
                       "bench-restart/0.1", str(catalog))  # fmt: skip
        log(f"writing {ids:,} dedupe ids to {changelog} (direct, as the checkpoint groups them) ...")
        written = write_changelog(bootstrap, changelog, group=plan.group, ids=ids, partitions=partitions,
                                  batch=batch, keys=keys, input_topic=plan.input)  # fmt: skip
        result["changelog"] = {
            "method": (
                "direct: pit_streams.state.changelog.mark_records, one record per key per"
                f" checkpoint of {max(1, batch // partitions)} ids per partition ({keys} keys, each on its"
                f" murmur2 partition of {partitions}); not the worker over {ids:,} inputs"
            ),
            "records": written.records,
            "checkpoints": written.checkpoints,
            "ids_per_record": round(ids / max(1, written.records), 1),
            "mib": round(written.bytes / 2**20, 1),
            "write_s": round(written.seconds, 2),
        }
        log(f"changelog: {written.records:,} records ({ids / max(1, written.records):.1f} ids each,"
            f" {written.bytes / 2**20:.1f} MiB) in {written.seconds:.1f}s")  # fmt: skip
        observer = ProbeObserver(bootstrap, plan.output)
        observer.start()
        setup = Setup(bootstrap, plan, spec, transport, batch, partitions, written.samples, log_dir)
        log("fresh disk (partition move): spawning the worker on an empty data dir ...")
        fresh = run_phase(setup, "fresh-disk", 0, observer, timeout)
        result["fresh_disk"] = fresh.__dict__
        _say(fresh)
        if fresh.exit_code is None:
            raise RestartBenchError("the fresh-disk worker did not stop: same-disk restart not measured")
        log("same disk: spawning it again on the same data dir ...")
        same = run_phase(setup, "same-disk", 1, observer, timeout)
        result["same_disk"] = same.__dict__
        _say(same)
        if standby:
            log("standby move: an owner and a --standby worker, then the owner stops ...")
            moved = run_standby_move(setup, 2, observer, timeout)
            result["standby_move"] = moved.__dict__
            _say(moved)
        if fresh.changelog_records_restored is not None and fresh.changelog_records_restored != written.records:
            result["note"] = (
                f"fresh disk restored {fresh.changelog_records_restored:,} records, {written.records:,} were written"
            )
    except Exception as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
        log(f"restart measurement failed: {result['error']}")
    finally:
        if observer is not None:
            observer.stop()
        shutil.rmtree(work, ignore_errors=True)
        if (
            own_logs
            and "error" not in result
            and all((result.get(k) or {}).get("ok") for k in ("fresh_disk", "same_disk"))
        ):
            shutil.rmtree(log_dir, ignore_errors=True)
            result["logs"] = None
    result["summary"] = summary_line(result)
    return result


def _say(p: Phase) -> None:
    ready = f"{p.ready_s:.2f}s" if p.ready_s is not None else "not ready"
    log(f"  {p.name}: {p.status}; ready {ready}; {p.probes_answered}/{p.probes_sent} probes answered,"
        f" {p.duplicate_outputs}/{p.duplicates_sent} re-sent restored ids answered (0 expected);"
        f" changelog records restored {p.changelog_records_restored}; /readyz 200 at {p.readyz_s}s;"
        f" peak RSS {p.peak_rss_mb:.0f} MB; exit {p.exit_code}")  # fmt: skip


def summary_line(r: dict[str, Any]) -> str:
    def t(phase: str) -> str:
        p = r.get(phase) or {}
        return f"{p['ready_s']:.2f} s" if p.get("ready_s") is not None else "not measured"

    n = short_count(int(r.get("ids", 0)))
    warm = f"; partition move to a warm standby: {t('standby_move')}" if "standby_move" in r else ""
    return (
        f"restart-to-ready (same disk, {n} ids): {t('same_disk')}; partition move (fresh disk, {n} ids):"
        f" {t('fresh_disk')}{warm}; goal < {r.get('goal_s', GOAL_S):g} s"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.restart", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--ids", type=int, default=1_000_000, help="dedupe ids in the changelog")
    p.add_argument("--broker", help="use this running loopback broker (host:port) instead of a private one")
    p.add_argument("--partitions", type=int, default=8)
    p.add_argument("--batch", type=int, default=2000, help="the worker's --batch-size (and the checkpoint size)")
    p.add_argument("--keys", type=int, default=64, help="keys the ids spread over (more: fewer ids per record)")
    p.add_argument("--transport", default="confluent", choices=("confluent", "aiokafka"))
    p.add_argument("--timeout", type=float, default=120.0, help="seconds a worker may take to answer every probe")
    p.add_argument("--json", type=Path, help="also write the result here")
    p.add_argument("--keep-topics", action="store_true", help="with --broker: do not delete the topics")
    p.add_argument("--standby", action="store_true",
                   help="also measure a move to a warm standby worker (docs/adr/0012-standby-stores.md)")
    args = p.parse_args(argv)

    def _terminate(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)  # unwinds through every finally: worker, broker

    signal.signal(signal.SIGTERM, _terminate)
    created: list[str] = []
    with broker(args.broker, label="restart") as bootstrap:
        try:
            result = measure(bootstrap, ids=args.ids, partitions=args.partitions, batch=args.batch, keys=args.keys,
                             transport=args.transport, timeout=args.timeout, created=created,
                             standby=args.standby)  # fmt: skip
        finally:
            if args.broker and not args.keep_topics and created:
                with contextlib.suppress(Exception):
                    delete_topics(bootstrap, created)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps(result, default=str))
    print(result["summary"])
    return 0 if "error" not in result else 1


if __name__ == "__main__":
    sys.exit(main())
