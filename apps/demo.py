"""The vertical slice end to end on one machine: ``make demo`` (= ``.venv/bin/python -m apps.demo``).

    tradefill-producer ──► pit.v1.exec.trade_fill ──► nav-consumer ──► pit.v1.acct.nav_update ──► nav-analytics
                                                        (apps.nav)                            (live table, PNG)

1. start a private Kafka broker (``infra/kafka/kafka.sh``, free port, temporary data dir),
   unless ``PIT_KAFKA_BOOTSTRAP`` names one;
2. create the topics: ``pit-streams topics apply --replicas-override 1`` when the catalog
   command exists, and any topic the apps need that is still missing directly;
3. start ``pit-streams worker -A apps.nav`` and ``-A apps.nav_analytics`` as subprocesses;
4. produce ``--fills`` fills (default 2 tenants x 4 cells, 2000 fills) at ``--rate`` per second;
5. wait until every fill has its NAV update and nav-analytics has committed all of them;
6. stop the workers (SIGTERM), print the final NAV per cell — checked against the NAV computed
   offline from the same fills — and the chart's path.

Whatever happens (failure, Ctrl-C, SIGTERM) everything it started is stopped, broker included.
Env: ``PIT_KAFKA_BOOTSTRAP`` (use this broker), ``PIT_ANALYTICS_OUT`` (default demo-out/nav.png).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from pit.envelope.v1.envelope_pb2 import EventEnvelope
from pit.events.v1.events_pb2 import NAVUpdateEvent, TradeFillEvent

from apps import nav, nav_analytics
from apps.nav_math import final_navs
from apps.tradefill_producer import generate_fills, produce
from pit_streams import PitStreamsError

REPO = Path(__file__).resolve().parent.parent
KAFKA_SH = REPO / "infra" / "kafka" / "kafka.sh"
PARTITIONS = 8
_T0 = time.monotonic()


def say(line: str) -> None:
    print(f"[demo {time.monotonic() - _T0:6.1f}s] {line}", flush=True)


class DemoError(Exception):
    pass


# --------------------------------------------------------------------------- Kafka helpers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def client_config(bootstrap: str) -> dict[str, str | int | float | bool]:
    """The demo's own (short-lived) clients: quiet about librdkafka's informational logs."""
    return {"bootstrap.servers": bootstrap, "log_level": 3}


def needed_topics() -> dict[str, dict[str, str]]:
    """Every topic the two apps read or write, with its config (changelogs are compacted)."""
    topics: dict[str, dict[str, str]] = {}
    for app in (nav.pit, nav_analytics.pit):
        for topic in (*app.reads(), *app.writes()):
            topics[topic] = {"cleanup.policy": "compact"} if topic == app.changelog_topic else {}
    return topics


def ensure_topics(bootstrap: str, topics: dict[str, dict[str, str]], partitions: int = PARTITIONS) -> list[str]:
    """Create the topics that do not exist yet (and wait until each has a leader); returns those created."""
    admin = AdminClient(client_config(bootstrap))
    existing = set(admin.list_topics(timeout=10).topics)
    missing = [t for t in sorted(topics) if t not in existing]
    if missing:
        futures = admin.create_topics(
            [NewTopic(t, num_partitions=partitions, replication_factor=1, config=topics[t]) for t in missing],
            operation_timeout=30,
        )
        for fut in futures.values():
            try:
                fut.result(30)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
    deadline = time.monotonic() + 30
    while True:
        md = admin.list_topics(timeout=10)
        if all(
            t in md.topics and md.topics[t].partitions and all(p.leader >= 0 for p in md.topics[t].partitions.values())
            for t in topics
        ):
            return missing
        if time.monotonic() > deadline:
            raise DemoError(f"topics {sorted(topics)} have no leader after 30 s")
        time.sleep(0.1)


@dataclass(frozen=True)
class NavRecord:
    envelope: EventEnvelope
    nav: NAVUpdateEvent
    partition: int
    offset: int


class NavTail:
    """Reads ``pit.v1.acct.nav_update`` from the beginning of every partition, incrementally,
    keeping the NAV updates whose envelope passes ``keep`` (e.g. one run's series)."""

    def __init__(self, bootstrap: str, keep: Callable[[EventEnvelope], bool], topic: str = nav.NAV) -> None:
        self.records: list[NavRecord] = []
        self.by_cause: dict[str, list[NavRecord]] = {}
        self._keep = keep
        self._consumer = Consumer(
            {
                **client_config(bootstrap),
                "group.id": f"nav-tail-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "enable.partition.eof": False,
            }
        )
        md = self._consumer.list_topics(topic=topic, timeout=10)
        info = md.topics.get(topic)
        if info is None or info.error is not None:
            raise DemoError(f"topic {topic} is not there")
        self._consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(info.partitions)])

    def poll(self, timeout: float = 0.2, max_seconds: float = 1.0) -> int:
        """Read what is there now (for at most about ``max_seconds``: a live stream never runs dry);
        returns how many kept records arrived."""
        kept = 0
        deadline = time.monotonic() + max_seconds
        while True:
            msgs = self._consumer.consume(num_messages=10_000, timeout=timeout)
            if not msgs:
                return kept
            for m in msgs:
                if m.error() is not None:
                    raise KafkaException(m.error())
                env = EventEnvelope.FromString(m.value())
                if not self._keep(env):
                    continue
                rec = NavRecord(env, NAVUpdateEvent.FromString(env.payload), m.partition() or 0, m.offset() or 0)
                self.records.append(rec)
                self.by_cause.setdefault(env.causation_id, []).append(rec)
                kept += 1
            if time.monotonic() > deadline:
                return kept
            timeout = 0.05

    def close(self) -> None:
        self._consumer.close()


def group_joined(bootstrap: str, group: str) -> bool:
    """Whether some member of ``group`` holds an assignment (False while it is joining or the broker cannot say)."""
    admin = AdminClient(client_config(bootstrap))
    try:
        desc = admin.describe_consumer_groups([group], request_timeout=3)[group].result(5)
    except (KafkaException, TimeoutError):  # e.g. NOT_COORDINATOR while a fresh broker loads offsets
        return False
    return any(m.assignment and m.assignment.topic_partitions for m in desc.members)


def group_lag(bootstrap: str, group: str, topic: str) -> int | None:
    """Records of ``topic`` not yet committed by ``group`` (None if the broker cannot say yet)."""
    admin = AdminClient(client_config(bootstrap))
    probe = Consumer({**client_config(bootstrap), "group.id": f"lag-probe-{uuid.uuid4().hex[:8]}"})
    try:
        parts = probe.list_topics(topic=topic, timeout=10).topics[topic].partitions
        res = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result(10)
        committed = {tp.partition: tp.offset for tp in res.topic_partitions if tp.topic == topic}
        lag = 0
        for p in parts:
            low, high = probe.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            lag += max(0, high - max(committed.get(p, low), low))
        return lag
    except (KafkaException, TimeoutError):
        return None
    finally:
        probe.close()


# --------------------------------------------------------------------------- processes


class Processes:
    """Everything the demo started, stopped in reverse order by ``stop_all``."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.workers: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
        self.broker_dir: Path | None = None

    def start_broker(self) -> str:
        port = free_port()
        self.broker_dir = self.work / "kafka"
        say(f"starting a private Kafka broker on 127.0.0.1:{port} (data {self.broker_dir}) ...")
        res = subprocess.run(
            [
                "bash",
                str(KAFKA_SH),
                "start",
                "--port",
                str(port),
                "--data-dir",
                str(self.broker_dir),
                "--owner-pid",
                str(os.getpid()),
            ],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=300,
            check=False,
        )
        if res.returncode != 0:
            raise DemoError(f"kafka.sh start failed:\n{res.stdout}")
        say(res.stdout.strip().splitlines()[-1] if res.stdout.strip() else "broker started")
        return f"127.0.0.1:{port}"

    def start_worker(
        self, module: str, bootstrap: str, env: dict[str, str] | None = None, stdout: IO[Any] | int | None = None
    ) -> None:
        log = self.work / f"{module}.log"
        cmd = [
            *pit_streams_cmd(),
            "worker",
            "-A",
            module,
            "--broker",
            bootstrap,
            "--data-dir",
            str(self.work / f"data-{module}"),
            "--health-port",
            "-1",
            "--idle-exit",
            "90",
        ]
        with open(log, "wb") as err:
            proc = subprocess.Popen(
                cmd,
                cwd=REPO,
                env={**os.environ, **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=err if stdout is None else stdout,
                stderr=err,
                start_new_session=True,
            )
        self.workers[module] = (proc, log)
        say(f"started pit-streams worker -A {module} (pid {proc.pid}, log {log})")

    def check_alive(self) -> None:
        for module, (proc, log) in self.workers.items():
            if proc.poll() is not None:
                raise DemoError(f"worker {module} exited early with {proc.returncode}:\n{tail(log)}")

    def stop_workers(self, timeout: float = 30) -> dict[str, int]:
        codes: dict[str, int] = {}
        for proc, _ in self.workers.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for module, (proc, _) in self.workers.items():
            try:
                codes[module] = proc.wait(timeout)
            except subprocess.TimeoutExpired:
                say(f"worker {module} (pid {proc.pid}) did not stop in {timeout:.0f}s: SIGKILL")
                proc.kill()
                codes[module] = proc.wait()
        return codes

    def stop_all(self) -> None:
        self.stop_workers()
        self.workers.clear()
        if self.broker_dir is not None:
            res = subprocess.run(
                ["bash", str(KAFKA_SH), "stop", "--data-dir", str(self.broker_dir)],
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            say(res.stdout.strip() or res.stderr.strip() or "broker stopped")
            self.broker_dir = None


def pit_streams_cmd() -> list[str]:
    exe = Path(sys.executable).parent / "pit-streams"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "pit_streams.cli"]


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def apply_catalog(bootstrap: str) -> bool:
    """Run ``pit-streams topics apply`` if this checkout has it; False when it does not."""
    probe = subprocess.run(
        [*pit_streams_cmd(), "topics", "--help"], cwd=REPO, capture_output=True, timeout=60, check=False
    )
    if probe.returncode != 0:
        return False
    res = subprocess.run(
        [*pit_streams_cmd(), "topics", "apply", "--broker", bootstrap, "--replicas-override", "1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if res.returncode != 0:
        raise DemoError(f"pit-streams topics apply failed ({res.returncode}):\n{res.stdout}{res.stderr}")
    return True


def wait_for(
    what: str,
    done: Callable[[], bool],
    timeout: float,
    procs: Processes,
    progress: Callable[[], str] | None = None,
    every: float = 1.0,
) -> None:
    deadline = time.monotonic() + timeout
    last = time.monotonic()
    while not done():
        procs.check_alive()
        now = time.monotonic()
        if now > deadline:
            raise DemoError(f"timed out after {timeout:.0f}s waiting for {what}")
        if progress is not None and now - last >= every:
            say(progress())
            last = now
        time.sleep(0.1)


# --------------------------------------------------------------------------- the run


def run(args: argparse.Namespace, procs: Processes) -> None:
    bootstrap = os.environ.get("PIT_KAFKA_BOOTSTRAP") or procs.start_broker()
    if os.environ.get("PIT_KAFKA_BOOTSTRAP"):
        say(f"using the broker at {bootstrap} (PIT_KAFKA_BOOTSTRAP)")

    topics = needed_topics()
    if apply_catalog(bootstrap):
        say("topics: applied the catalog (pit-streams topics apply --replicas-override 1)")
    else:
        say("topics: 'pit-streams topics apply' is not available in this checkout; creating them directly")
    created = ensure_topics(bootstrap, topics)
    if created:
        say(f"topics: created {', '.join(created)} ({PARTITIONS} partitions, changelogs compacted)")

    out = Path(os.environ.get(nav_analytics.OUT_ENV) or nav_analytics.DEFAULT_OUT)
    out = out if out.is_absolute() else REPO / out
    procs.start_worker("apps.nav", bootstrap)
    procs.start_worker("apps.nav_analytics", bootstrap, env={nav_analytics.OUT_ENV: str(out)}, stdout=sys.stdout)
    for group in (nav.NAME, nav_analytics.NAME):
        wait_for(f"{group} to join", functools.partial(group_joined, bootstrap, group), 90, procs)
        say(f"{group} has joined its consumer group and holds its partitions")

    run_id = uuid.uuid4().hex[:12]
    # On a broker of its own the series is "alpha"; on a given one, nav-consumer may already hold
    # state from earlier runs, so this run gets a series of its own.
    series = "alpha" if procs.broker_dir is not None else f"alpha-{run_id[:6]}"
    step_ms = 250  # simulated market time between fills, ending now: ~8 min of trading for 2000 fills
    fills = generate_fills(
        args.fills, tenants=args.tenants, series=[series], cells=args.cells, seed=args.seed, run_id=run_id,
        start_ms=int(time.time() * 1000) - step_ms * args.fills, step_ms=step_ms,
    )  # fmt: skip
    say(
        f"producing {len(fills)} fills for {len(args.tenants)} tenants x {args.cells} cells (series {series},"
        f" seed {args.seed}) at {args.rate:.0f}/s ..."
    )
    t_prod = time.monotonic()
    acked = asyncio.run(produce(bootstrap, fills, rate=args.rate, flush_every=500))
    say(f"tradefill-producer: {acked} fills acknowledged in {time.monotonic() - t_prod:.1f}s")

    fill_ids = {f.event_id for _, f in fills}
    tail_ = NavTail(bootstrap, keep=lambda env: env.series == series)
    try:
        wait_for(
            "every fill's NAV update",
            lambda: tail_.poll() >= 0 and fill_ids <= tail_.by_cause.keys(),
            120,
            procs,
            progress=lambda: f"NAV updates observed: {len(fill_ids & tail_.by_cause.keys())}/{len(fill_ids)}",
        )
    finally:
        tail_.close()
    say(f"all {len(fill_ids)} NAV updates observed on {nav.NAV}")
    wait_for(
        "nav-analytics to catch up",
        lambda: group_lag(bootstrap, nav_analytics.NAME, nav.NAV) == 0,
        60,
        procs,
        progress=lambda: f"nav-analytics lag: {group_lag(bootstrap, nav_analytics.NAME, nav.NAV)}",
    )
    say("nav-analytics has committed every NAV update; stopping the workers (SIGTERM) ...")
    codes = procs.stop_workers()
    say("workers stopped: " + ", ".join(f"{m} exit {c}" for m, c in codes.items()))
    bad = {m: c for m, c in codes.items() if c != 0}
    if bad:
        raise DemoError(f"workers exited uncleanly: {bad}")

    report(fills, tail_.records, out)


def report(fills: Sequence[tuple[str, TradeFillEvent]], records: Iterable[NavRecord], png: Path) -> None:
    by_cause = {r.envelope.causation_id: r.nav for r in records}
    last_fill = {key: fill.event_id for key, fill in fills}  # per-key order = production order
    counts: dict[str, int] = {}
    for key, _ in fills:
        counts[key] = counts.get(key, 0) + 1
    latest = {key: by_cause[eid] for key, eid in last_fill.items()}
    expected = final_navs(fills)
    mismatched = [
        k
        for k, n in latest.items()
        if (n.nav_usd_micros, n.cash_liquid_usd_micros, n.unrealized_pnl_usd_micros, n.realized_pnl_usd_micros)
        != (expected[k].nav, expected[k].cash, expected[k].unrealized, expected[k].realized)
    ]
    print()
    print("final NAV per cell (USD; from pit.v1.acct.nav_update):")
    print(nav_analytics.nav_table(latest, counts))
    print()
    if mismatched:
        raise DemoError(f"NAV differs from the offline replay of the same fills for {mismatched}")
    say(f"all {len(latest)} cells match the NAV computed offline from the same fills, to the micro")
    if png.exists():
        say(f"chart: {png}")
    else:
        raise DemoError(f"nav-analytics did not write {png}")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m apps.demo", description=__doc__.splitlines()[0])
    p.add_argument("--fills", type=int, default=2000)
    p.add_argument("--rate", type=float, default=400.0, help="fills per second (default 400)")
    p.add_argument("--tenants", type=lambda s: [t for t in s.split(",") if t], default=["demo", "acme"])
    p.add_argument("--cells", type=int, default=4)
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args(argv)

    def on_term(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    work = Path(tempfile.mkdtemp(prefix="pit-demo-"))
    procs = Processes(work)
    ok = interrupted = False
    try:
        run(args, procs)
        ok = True
    except KeyboardInterrupt:
        interrupted = True
        say("interrupted: cleaning up")
    except (DemoError, KafkaException, subprocess.SubprocessError, OSError, RuntimeError, PitStreamsError) as exc:
        say(f"FAILED: {exc!r}")
        if os.environ.get("PIT_DEMO_DEBUG"):
            traceback.print_exc()
        for module, (_, log) in procs.workers.items():
            print(f"---- {module} log ({log}):\n{tail(log)}", file=sys.stderr)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip the cleanup
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        procs.stop_all()
        if ok or interrupted:
            shutil.rmtree(work, ignore_errors=True)
        else:
            say(f"kept the logs in {work}")
    if interrupted:
        return 130
    say(f"done in {time.monotonic() - _T0:.1f}s" if ok else "demo failed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
