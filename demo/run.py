"""One demo run: broker, topics, the two workers, the fills, waiting for every NAV update."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from apps import nav, nav_analytics
from apps.tradefill_producer import generate_fills, produce
from demo.navtail import NavTail
from demo.report import report
from demo.say import DemoError, say
from demo.steps import DemoRun, final_step
from devkit.broker import REPO_ROOT, Broker, new_broker
from devkit.records import group_lag
from devkit.topics import create_topics
from devkit.workers import WorkerProcess, pit_streams_cmd, worker

PARTITIONS = 8


class Processes:
    """Everything the demo started, stopped in reverse order by ``stop_all``."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.workers: dict[str, WorkerProcess] = {}
        self.broker: Broker | None = None

    def start_broker(self) -> str:
        self.broker = new_broker(self.work / "kafka")
        say(f"starting a private Kafka broker on {self.broker.bootstrap} (data {self.broker.data_dir}) ...")
        self.broker.start()
        out = self.broker.startup_output
        say(out.splitlines()[-1] if out else "broker started")
        return self.broker.bootstrap

    def start_worker(self, module: str, bootstrap: str, env: dict[str, str] | None = None,
                     show_output: bool = False) -> WorkerProcess:  # fmt: skip
        w = worker(module, module, bootstrap, self.work, env=env, args=["--idle-exit", "90"])
        w.drop_env = ()  # the demo's own PIT_KAFKA_BOOTSTRAP is the broker it runs on anyway
        if show_output:
            w.stdout = sys.stdout.fileno()
        w.start()
        self.workers[module] = w
        say(f"started pit-streams worker -A {module} (pid {w.pid}, log {w.log_path})")
        return w

    def check_alive(self) -> None:
        for module, w in self.workers.items():
            if not w.alive():
                raise DemoError(f"worker {module} exited early with {w.returncode}:\n{w.log_tail()}")

    def stop_workers(self, timeout: float = 30) -> dict[str, int]:
        """SIGTERM every running worker at once, then wait for each (SIGKILL after ``timeout``)."""
        running = {m: w for m, w in self.workers.items() if w.alive()}
        for w in running.values():
            w.signal(signal.SIGTERM)
        codes: dict[str, int] = {}
        for module, w in running.items():
            try:
                codes[module] = w.wait(timeout).returncode
            except subprocess.TimeoutExpired:
                say(f"worker {module} (pid {w.pid}) did not stop in {timeout:.0f}s: SIGKILL")
                codes[module] = w.kill().returncode
        return codes

    def stop_all(self) -> None:
        self.stop_workers()
        if self.broker is not None:
            self.broker.close(keep=True)
            say(self.broker.log_lines[-1] if self.broker.log_lines else "broker stopped")
            self.broker = None


def needed_topics() -> dict[str, dict[str, str]]:
    """Every topic the two apps read or write, with its config (changelogs are compacted)."""
    topics: dict[str, dict[str, str]] = {}
    for app in (nav.pit, nav_analytics.pit):
        for topic in (*app.reads(), *app.writes()):
            topics[topic] = {"cleanup.policy": "compact"} if topic == app.changelog_topic else {}
    return topics


def apply_catalog(bootstrap: str) -> bool:
    """Run ``pit-streams topics apply`` if this checkout has it; False when it does not."""
    probe = subprocess.run([*pit_streams_cmd(), "topics", "--help"], cwd=REPO_ROOT, capture_output=True,
                           timeout=60, check=False)  # fmt: skip
    if probe.returncode != 0:
        return False
    res = subprocess.run([*pit_streams_cmd(), "topics", "apply", "--broker", bootstrap, "--replicas-override", "1"],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    if res.returncode != 0:
        raise DemoError(f"pit-streams topics apply failed ({res.returncode}):\n{res.stdout}{res.stderr}")
    return True


def wait_for(what: str, done: Callable[[], bool], timeout: float, procs: Processes,
             progress: Callable[[], str] | None = None, every: float = 1.0) -> None:  # fmt: skip
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


def run(args: argparse.Namespace, procs: Processes) -> None:
    given = os.environ.get("PIT_KAFKA_BOOTSTRAP")
    bootstrap = given or procs.start_broker()
    if given:
        say(f"using the broker at {bootstrap} (PIT_KAFKA_BOOTSTRAP)")

    topics = needed_topics()
    if apply_catalog(bootstrap):
        say("topics: applied the catalog (pit-streams topics apply --replicas-override 1)")
    else:
        say("topics: 'pit-streams topics apply' is not available in this checkout; creating them directly")
    created: list[str] = []
    for name, config in sorted(topics.items()):
        created += create_topics(bootstrap, [name], PARTITIONS, config, exist_ok=True)
    if created:
        say(f"topics: created {', '.join(created)} ({PARTITIONS} partitions, changelogs compacted)")

    out = Path(os.environ.get(nav_analytics.OUT_ENV) or nav_analytics.DEFAULT_OUT)
    out = out if out.is_absolute() else REPO_ROOT / out
    workers = [procs.start_worker("apps.nav", bootstrap),
               procs.start_worker("apps.nav_analytics", bootstrap, env={nav_analytics.OUT_ENV: str(out)},
                                  show_output=True)]  # fmt: skip
    for w in workers:
        w.wait_ready(90, check=procs.check_alive)
        say(f"{w.name} is ready (/readyz): in its consumer group, its partitions restored")

    run_id = uuid.uuid4().hex[:12]
    # On a broker of its own the series is "alpha"; on a given one, nav-consumer may already hold
    # state from earlier runs, so this run gets a series of its own.
    series = "alpha" if procs.broker is not None else f"alpha-{run_id[:6]}"
    step_ms = 250  # simulated market time between fills, ending now: ~8 min of trading for 2000 fills
    fills = generate_fills(
        args.fills, tenants=args.tenants, series=[series], cells=args.cells, seed=args.seed, run_id=run_id,
        start_ms=int(time.time() * 1000) - step_ms * args.fills, step_ms=step_ms,
    )  # fmt: skip
    say(f"producing {len(fills)} fills for {len(args.tenants)} tenants x {args.cells} cells (series {series},"
        f" seed {args.seed}) at {args.rate:.0f}/s ...")  # fmt: skip
    t_prod = time.monotonic()
    acked = asyncio.run(produce(bootstrap, fills, rate=args.rate, flush_every=500))
    say(f"tradefill-producer: {acked} fills acknowledged in {time.monotonic() - t_prod:.1f}s")

    fill_ids = {f.event_id for _, f in fills}
    tail = NavTail(bootstrap, keep=lambda env: env.series == series)
    try:
        wait_for("every fill's NAV update", lambda: tail.poll() >= 0 and fill_ids <= tail.by_cause.keys(), 120, procs,
                 progress=lambda: f"NAV updates observed: {len(fill_ids & tail.by_cause.keys())}/{len(fill_ids)}")
    finally:
        tail.close()
    say(f"all {len(fill_ids)} NAV updates observed on {nav.NAV}")
    wait_for("nav-analytics to catch up", lambda: group_lag(bootstrap, nav_analytics.NAME, nav.NAV) == 0, 60, procs,
             progress=lambda: f"nav-analytics lag: {group_lag(bootstrap, nav_analytics.NAME, nav.NAV)}")
    say("nav-analytics has committed every NAV update; stopping the workers (SIGTERM) ...")
    codes = procs.stop_workers()
    say("workers stopped: " + ", ".join(f"{m} exit {c}" for m, c in codes.items()))
    bad = {m: c for m, c in codes.items() if c != 0}
    if bad:
        raise DemoError(f"workers exited uncleanly: {bad}")

    report(fills, tail.records, out)
    final_step(DemoRun(bootstrap, nav.FILLS, nav.NAV, series, fills, tail.records, out, procs.work))
