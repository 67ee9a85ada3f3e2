"""The chaos scenarios: kill, broker-restart, rebalance, hostile, dead-letter-limit. Each: a
fresh consumer group (so its own changelog) and its own tenant/series/run id, topics applied
from a scenario catalog, the feed in the background, the worker(s) as subprocesses, the fault,
then — once the group's committed offsets reach the end of the input — the checker.

Synchronisation is always on observed conditions (committed offsets, group members, process
exits); the only sleeps are the random pauses that place a fault (workload) and poll intervals.
"""

from __future__ import annotations

import random
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pit.envelope.v1.envelope_pb2 import EventEnvelope

from bench.chaos.broker import Broker
from bench.chaos.checker import Report, check
from bench.chaos.feed import Feed
from bench.chaos.inputs import (
    EXPECT_HEADER,
    FEED_MAX_MESSAGE_BYTES,
    KIND_HEADER,
    InputRecord,
    hostile_records,
    near_limit_records,
    stamp,
    valid_fills,
    valid_records,
)
from bench.chaos.kafka_io import (
    DEAD_LETTER,
    FILLS,
    FORCED_CLEANER,
    NAV,
    Kafka,
    apply_topics,
    changelog_of,
    retrying,
    write_catalog,
)
from bench.chaos.oracle import DUP
from bench.chaos.version import runtime_fingerprint
from bench.chaos.workers import WorkerProc

NAV_VERSION = "0.1.0"  # apps.nav.VERSION: outputs carry producer "<group>@0.1.0"
CELLS = 16
SCENARIOS = ("kill", "broker-restart", "rebalance", "hostile", "dead-letter-limit", "longrun", "zombie", "eos")
GUARANTEES = ("at_least_once", "exactly_once")
#: Scenarios that pin their guarantee (``eos`` is the kill loop in exactly-once mode).
PINNED_GUARANTEE = {"eos": "exactly_once"}


@dataclass(frozen=True)
class Sizes:
    records: int
    actions: int = 0  # kills / broker restarts / rebalance cycles
    rate: float | None = None  # feed rate (records/s), None = as fast as possible
    oversized: int = 0
    handler_errors: int = 0
    ttl_s: float | None = None  # the app's dedupe TTL (None: its default, 7 days)
    resend: int = 0  # already-processed fills re-sent (same bytes) after each restart, inside the TTL
    tail: int = 0  # fills fed to a last fresh-disk worker after the run (at least one per cell)


FULL = {
    "kill": Sizes(100_000, actions=20, rate=400),
    "broker-restart": Sizes(30_000, actions=2, rate=600),
    "rebalance": Sizes(30_000, actions=3, rate=400),
    "hostile": Sizes(10_000, oversized=2, handler_errors=10),
    "dead-letter-limit": Sizes(2_000, actions=3),
    "longrun": Sizes(100_000, actions=4, rate=500, ttl_s=15, resend=20, tail=160),
    "zombie": Sizes(20_000, rate=300, tail=160),
    "eos": Sizes(100_000, actions=20, rate=400),
}
SHORT = {
    "kill": Sizes(3_000, actions=3, rate=100),
    "broker-restart": Sizes(3_000, actions=1, rate=200),
    "rebalance": Sizes(3_000, actions=1, rate=150),
    "hostile": Sizes(1_000, oversized=1, handler_errors=3),
    "dead-letter-limit": Sizes(300, actions=2),
    "longrun": Sizes(3_600, actions=2, rate=60, ttl_s=15, resend=10, tail=64),
    "zombie": Sizes(2_500, rate=150, tail=64),
    "eos": Sizes(3_000, actions=3, rate=100),
}


class Stuck(Exception):
    """An awaited condition did not come in time (reported; the checker still runs)."""


@dataclass
class Run:
    """One scenario run: identity, topics, workers, and its timeline."""

    scenario: str
    short: bool
    broker: Broker
    work_dir: Path
    transport: str = "confluent"
    seed: int = 0
    say: Callable[[str], None] = print
    guarantee: str = "at_least_once"
    run_id: str = ""
    group: str = ""
    tenant: str = ""
    kafka: Kafka | None = None
    catalog: Path | None = None
    start: dict[str, dict[int, int]] = field(default_factory=dict)
    workers: list[WorkerProc] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    anomalies: list[str] = field(default_factory=list)
    feed: Feed | None = None
    extra_feeds: list[Feed] = field(default_factory=list)  # re-sends, tails: run to completion inline
    feed_end: dict[int, int] | None = None
    gave_up: str = ""  # set when a worker keeps crashing: stop waiting for the end
    t0: float = field(default_factory=time.monotonic)
    rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        hexid = uuid.uuid4().hex[:8]
        slug = self.scenario.replace("-", "")
        self.run_id = f"chaos-{slug}-{hexid}"
        self.group = f"chaos-{slug}-{hexid}"
        self.tenant = f"chaos{hexid}"
        self.rng = random.Random(self.seed)
        self.work_dir.mkdir(parents=True, exist_ok=True)

    @property
    def sizes(self) -> Sizes:
        return (SHORT if self.short else FULL)[self.scenario]

    @property
    def producer(self) -> str:
        return f"{self.group}@{NAV_VERSION}"

    def elapsed(self) -> float:
        return round(time.monotonic() - self.t0, 2)

    def event(self, what: str, **info: Any) -> None:
        self.events.append({"t": self.elapsed(), "event": what, **info})
        extra = " ".join(f"{k}={v}" for k, v in info.items())
        self.say(f"  [{self.scenario} {self.elapsed():7.1f}s] {what} {extra}")

    def anomaly(self, text: str) -> None:
        self.anomalies.append(f"t={self.elapsed()}s {text}")
        self.say(f"  [{self.scenario} {self.elapsed():7.1f}s] ANOMALY {text}")

    # -- setup ----------------------------------------------------------------------------------
    def setup(self, changelog_config: dict[str, str] | None = None) -> None:
        self.catalog = write_catalog(self.work_dir / "topics.yaml", [self.group], changelog_config)
        for line in apply_topics(self.broker.bootstrap, self.catalog):
            self.event("topic differs from the catalog (not changed by 'topics apply')", drift=line)
        self.kafka = Kafka(self.broker.bootstrap)
        # Fresh topics may answer NOT_LEADER for a moment after creation: retry.
        deadline = time.monotonic() + 60
        start = {t: retrying(self.kafka.end_offsets, t, deadline=deadline) for t in (FILLS, NAV, DEAD_LETTER)}
        # With a shared broker the input topic holds older runs' records: the group starts after them.
        retrying(self.kafka.commit, self.group, FILLS, start[FILLS], deadline=deadline)
        self.start = start
        self.event("setup", broker=self.broker.bootstrap, group=self.group, tenant=self.tenant)

    def worker(self, name: str) -> WorkerProc:
        w = WorkerProc(name, self.group, self.broker.bootstrap, self.work_dir / f"data-{name}", self.catalog or Path(),
                       self.work_dir / f"{name}.log", self.transport, self.guarantee, self.sizes.ttl_s)  # fmt: skip
        self.workers.append(w)
        return w

    def send_now(self, records: list[InputRecord], what: str) -> None:
        """Produce ``records`` (a second feed) and wait for their acknowledgements; the end of the
        input is looked up again afterwards (they are part of it)."""
        feed = Feed(self.broker.bootstrap, FILLS, records, log_path=self.work_dir / f"feed-{len(self.extra_feeds)}.log")
        self.extra_feeds.append(feed)
        feed.start()
        feed.join(120)
        if not feed.finished.is_set() or feed.failed or feed.error is not None:
            raise Stuck(f"{what}: {feed.acked} of {len(records)} acknowledged ({feed.failed[:3]}, {feed.error!r})")
        self.feed_end = None

    def start_feed(self, records: list[InputRecord], rate: float | None, max_message_bytes: int = 1_000_000) -> None:
        self.feed = Feed(self.broker.bootstrap, FILLS, records, rate=rate, max_message_bytes=max_message_bytes,
                         log_path=self.work_dir / "feed.log")  # fmt: skip
        self.feed.start()
        self.event("feed started", records=len(records), rate=rate or "max")

    # -- observation ----------------------------------------------------------------------------
    def committed(self) -> dict[int, int] | None:
        assert self.kafka is not None
        try:
            return {p: o or 0 for p, o in self.kafka.committed(self.group, FILLS, timeout=5).items()}
        except Exception:  # broker restarting
            return None

    def progress(self) -> int | None:
        """Input records (of every producer) the group has committed past since the run began."""
        got = self.committed()
        if got is None:
            return None
        return sum(max(0, o - self.start[FILLS].get(p, 0)) for p, o in got.items())

    def outputs_end(self, isolation: str = "read_committed") -> int:
        """Records on the output topic (every producer): grows as soon as a worker's outputs are acked
        (exactly-once: once its transaction commits; ``read_uncommitted``: the high watermark)."""
        assert self.kafka is not None
        try:
            return sum(self.kafka.end_offsets(NAV, timeout=5, isolation=isolation).values())
        except Exception:
            return -1

    def done(self) -> bool:
        """The feed is acknowledged and the group committed up to its end."""
        assert self.feed is not None and self.kafka is not None
        if not self.feed.finished.is_set():
            return False
        if self.feed_end is None:
            try:
                self.feed_end = self.kafka.end_offsets(FILLS, timeout=5)
            except Exception:
                return False
            self.event("feed done", acked=self.feed.acked, failed=len(self.feed.failed),
                       seconds=round(self.feed.seconds, 1))
        got = self.committed()
        return got is not None and all(got.get(p, 0) >= e for p, e in self.feed_end.items())

    def wait(self, cond: Callable[[], bool], timeout: float, what: str, *, tick: Callable[[], None] | None = None,
             poll: float = 0.2) -> None:  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            if tick is not None:
                tick()
            if cond():
                return
            if time.monotonic() > deadline:
                raise Stuck(f"{what}: not reached within {timeout:.0f}s")
            time.sleep(poll)

    def members(self) -> list[tuple[str, list[int]]] | None:
        assert self.kafka is not None
        try:
            return self.kafka.members(self.group)
        except Exception:
            return None

    # -- the end --------------------------------------------------------------------------------
    def finish(self, timeout: float, *, tick: Callable[[], None] | None = None, stall: float | None = None) -> None:
        """Wait until done, then SIGTERM every worker; a non-zero exit on SIGTERM is an anomaly.
        ``stall``: also stop waiting once the input is all produced and the group's committed
        offsets have not moved for that many seconds (a wedged worker)."""
        last = [-1, time.monotonic()]

        def stalled() -> bool:
            if stall is None or self.feed is None:
                return False
            # Before the feed is done: its acknowledgements must move; after: the committed offsets.
            now = time.monotonic()
            p = self.progress() if self.feed_end is not None else self.feed.acked
            if p is not None and p != last[0]:
                last[:] = [p, now]
            if now - last[1] > stall:
                self.gave_up = (f"no committed progress for {stall:.0f}s (stuck at {last[0]})" if self.feed_end
                                else f"the feed stalled: {self.feed.acked} of {len(self.feed.records)} records"
                                     f" acknowledged, none for {stall:.0f}s")  # fmt: skip
            return bool(self.gave_up)

        try:
            self.wait(lambda: bool(self.gave_up) or self.done() or stalled(), timeout,
                      "the group committing the whole input", tick=tick, poll=0.5)  # fmt: skip
            if self.gave_up:
                self.anomaly(f"gave up waiting for the end: {self.gave_up} (committed {self.committed()},"
                             f" input end {self.feed_end})")  # fmt: skip
            else:
                self.event("all input committed", progress=self.progress())
        except Stuck as exc:
            self.anomaly(f"{exc} (committed {self.committed()}, input end {self.feed_end})")
        for w in self.workers:
            if w.alive():
                # A SIGTERM before the worker installed its handlers would kill it: a harness artefact.
                try:
                    self.wait(lambda: not w.alive() or w.ready(), 120, f"{w.name} ready before SIGTERM")  # noqa: B023
                except Stuck as exc:
                    self.anomaly(str(exc))
                ex = w.terminate()
                self.event("worker stopped", worker=w.name, pid=ex.pid, rc=ex.returncode, cause=ex.cause)

    def check(self) -> Report:
        assert self.kafka is not None
        if self.feed is not None and self.feed.client_errors:
            self.event("feed client errors", count=len(self.feed.client_errors), first=self.feed.client_errors[:3])
        if self.feed is not None and self.feed.error is not None:
            self.anomaly(f"feed failed: {self.feed.error!r}")
        if self.feed is not None and self.feed.failed:
            self.anomaly(f"feed: {len(self.feed.failed)}+ input records not acknowledged: {self.feed.failed[:3]}")
        for extra in self.extra_feeds:
            if extra.failed or extra.error is not None:
                self.anomaly(f"extra feed: {extra.failed[:3]} {extra.error!r}")
        for w in self.workers:
            for ex in w.unexpected_exits():
                self.anomaly(f"worker {w.name} pid {ex.pid} (spawn #{ex.spawn}) ended rc={ex.returncode}"
                             f" ({ex.cause}) after {ex.uptime_s:.1f}s")  # fmt: skip
        rep = check(self.kafka, run_id=self.run_id, group=self.group, producer=self.producer, start=self.start,
                    committed=self.committed(), count_uncommitted=self.guarantee == "exactly_once")  # fmt: skip
        self.event("checked", inputs=rep.valid_inputs, outputs=rep.distinct_outputs, lost=rep.lost,
                   dup_effects=rep.duplicate_effects, raw_dups=rep.raw_duplicates, wrong=rep.wrong_values,
                   reapplied=rep.reapplied)  # fmt: skip
        if rep.nav_read_short or rep.nav_open_transactions:
            self.anomaly(f"{NAV}: a read_committed reader stopped below the end {rep.nav_read_short} or a"
                         f" transaction is open (partition: (last stable offset, high watermark))"
                         f" {rep.nav_open_transactions}")  # fmt: skip
        return rep

    def cleanup(self) -> None:
        for w in self.workers:
            if w.alive():
                w.kill()
            shutil.rmtree(w.data_dir, ignore_errors=True)
        for feed in [*([self.feed] if self.feed else []), *self.extra_feeds]:
            feed.stop()
            feed.join(30)
        if self.kafka is not None:
            self.kafka.close()


# --------------------------------------------------------------------------- the scenarios


def scenario_kill(run: Run) -> None:
    """SIGKILL the worker at random moments, restart it each time. Each kill picks a moment:
    ``startup`` (0.2-4 s after spawn: import, group join, restore), ``restored`` (0-1 s after it
    restored its partitions: mostly inside the catch-up batch of the backlog the restart left),
    ``outputs`` (0-0.1 s after its first outputs were acknowledged: between the outputs and the
    commit of a batch) or ``progress`` (after a random share of the remaining input, plus 0-0.5 s)."""
    sz = run.sizes
    run.setup()
    records = valid_records(sz.records, tenant=run.tenant, series="kill", cells=CELLS, seed=run.seed, run_id=run.run_id)
    run.start_feed(records, sz.rate)
    w = run.worker("worker")
    for i in range(sz.actions):
        w.start()
        base = run.progress() or 0
        mode = run.rng.choice(("startup", "restored", "outputs", "progress"))
        try:
            if mode == "startup":  # import, group join, changelog restore, first batch
                delay = run.rng.uniform(0.2, 4.0)
                when = f"{delay:.2f}s after spawn"
                deadline = time.monotonic() + delay
                run.wait(lambda: not w.alive() or time.monotonic() >= deadline, delay + 5, "startup delay",  # noqa: B023
                         poll=0.02)  # fmt: skip
            elif mode == "restored":  # its stores restored: somewhere in the catch-up of the backlog
                delay = run.rng.uniform(0.0, 1.0)
                when = f"{delay:.2f}s after restoring its partitions"
                run.wait(lambda: not w.alive() or w.ready() or run.done(),
                         180, f"kill #{i + 1}: partitions restored", poll=0.02)  # fmt: skip
                time.sleep(delay)
            elif mode == "outputs":  # its first outputs reached the broker: the batch is not committed yet
                delay = run.rng.uniform(0.0, 0.1)
                when = f"{delay:.2f}s after its first outputs were acknowledged"
                # High watermark: in exactly-once mode this is inside the open transaction.
                out0 = run.outputs_end("read_uncommitted")
                run.wait(lambda: not w.alive() or run.outputs_end("read_uncommitted") > out0 or run.done(),  # noqa: B023
                         180, f"kill #{i + 1}: first outputs", poll=0.01)  # fmt: skip
                time.sleep(delay)
            else:  # spread over the input: after a random share of what is left
                remaining = max(1, sz.records - base)
                step = run.rng.randint(1, max(1, 2 * remaining // (sz.actions - i + 1)))
                delay = run.rng.uniform(0.0, 0.5)
                when = f"after +{step} committed, then {delay:.2f}s"
                goal = base + step
                run.wait(lambda: not w.alive() or (run.progress() or 0) >= goal or run.done(),  # noqa: B023
                         180, f"kill #{i + 1}: progress +{step}", poll=0.05)  # fmt: skip
                time.sleep(delay)
        except Stuck as exc:
            when = f"after waiting in vain ({exc})"
            run.anomaly(str(exc))
        if not w.alive():
            ex = w.reap()
            run.anomaly(f"worker exited by itself before kill #{i + 1}: rc={ex.returncode if ex else '?'}")
            continue
        ex = w.kill()
        run.event(f"SIGKILL #{i + 1}", pid=ex.pid, mode=mode, when=when, uptime=f"{ex.uptime_s:.1f}s",
                  committed=run.progress())
    w.start()
    run.event("final worker started", pid=w.pid)
    run.finish(600 if not run.short else 180, tick=lambda: _exit_check(run, w), stall=180)


def _exit_check(run: Run, w: WorkerProc, *, restart: bool = False, broker_up: bool = True,
                max_restarts: int = 10) -> None:
    """Notice a worker that exited by itself; restart it if asked (and the broker is up)."""
    if w.alive() or w.pid is None:
        return
    ex = w.reap()
    if ex is None:
        return
    run.event("worker exited by itself", worker=w.name, pid=ex.pid, rc=ex.returncode, uptime=f"{ex.uptime_s:.1f}s")
    if not restart and not any(x.alive() for x in run.workers):
        # Nothing is left to make progress (e.g. a worker refusing its command line): stop waiting.
        run.gave_up = run.gave_up or f"every worker has exited ({w.name} by itself, rc={ex.returncode})"
        return
    if restart and broker_up:
        crashes = sum(1 for e in w.exits if e.cause == "exited by itself")
        if crashes > max_restarts:
            run.gave_up = f"{w.name} exited by itself {crashes} times (last rc={ex.returncode}): not restarted again"
            run.anomaly(run.gave_up)
            return
        w.start()
        run.event("worker restarted", worker=w.name, pid=w.pid)


def scenario_broker_restart(run: Run) -> None:
    """``kafka.sh stop`` / ``start`` the broker (same ports, same data dir) mid-run while the
    feed and the worker keep going; a worker that exits is restarted once the broker is back.
    The last outage lasts longer than the workers' 10 s session timeout (the group forgets the
    member: its next commit fails with UNKNOWN_MEMBER_ID); any earlier ones are short (1-3 s)."""
    if not run.broker.restartable:
        raise RuntimeError("broker-restart needs a broker of its own (a private one)")
    sz = run.sizes
    run.setup()
    records = valid_records(sz.records, tenant=run.tenant, series="restart", cells=CELLS, seed=run.seed,
                            run_id=run.run_id)  # fmt: skip
    run.start_feed(records, sz.rate)
    w = run.worker("worker")
    w.start()
    up = [True]

    def tick() -> None:
        _exit_check(run, w, restart=True, broker_up=up[0])

    for i in range(sz.actions):
        target = (i + 1) * sz.records // (sz.actions + 2)
        try:
            run.wait(lambda: (run.progress() or 0) >= target or run.done(),  # noqa: B023
                     300, f"restart #{i + 1}: progress {target}", tick=tick)
        except Stuck as exc:
            run.anomaly(str(exc))
        time.sleep(run.rng.uniform(0.0, 0.5))
        committed = run.progress()
        up[0] = False
        secs = run.broker.stop_broker()
        run.event(f"broker stopped #{i + 1}", seconds=round(secs, 1), committed=committed,
                  feed_sent=run.feed.sent if run.feed else 0)
        outage = run.rng.uniform(11.0, 14.0) if i == sz.actions - 1 else run.rng.uniform(1.0, 3.0)
        deadline = time.monotonic() + outage
        while time.monotonic() < deadline:
            tick()
            time.sleep(0.1)
        secs = run.broker.start_broker()
        up[0] = True
        run.event(f"broker started #{i + 1}", seconds=round(secs, 1), outage=f"{outage:.1f}s+stop/start")
    run.finish(600, tick=tick, stall=120)


def scenario_rebalance(run: Run) -> None:
    """Two workers in one group: B joins (partitions move A→B), leaves on SIGTERM (B→A), joins
    again, is SIGKILLed (B→A after the session timeout), joins again — per cycle."""
    sz = run.sizes
    run.setup()
    records = valid_records(sz.records, tenant=run.tenant, series="rebalance", cells=CELLS, seed=run.seed,
                            run_id=run.run_id)  # fmt: skip
    a, b = run.worker("worker-a"), run.worker("worker-b")

    def tick() -> None:
        _exit_check(run, a)
        _exit_check(run, b)

    a.start()
    run.wait(lambda: _assignment(run) == [8], 120, "worker A owning every partition", tick=tick)
    run.event("A owns all partitions", pid=a.pid)
    run.start_feed(records, sz.rate)

    def b_joins(n: int) -> None:
        b.start()
        run.wait(lambda: _assignment(run) == [4, 4], 120, f"B joining (#{n})", tick=tick)
        run.event(f"B joined #{n}: partitions moved A->B", pid=b.pid, members=run.members())
        before = run.progress() or 0
        run.wait(lambda: (run.progress() or 0) > before + 50 or run.done(), 120, "progress with two workers",
                 tick=tick)
        time.sleep(run.rng.uniform(0.0, 2.0))

    for cycle in range(1, sz.actions + 1):
        b_joins(2 * cycle - 1)
        ex = b.terminate()
        run.event(f"B SIGTERM #{cycle}", pid=ex.pid, rc=ex.returncode, uptime=f"{ex.uptime_s:.1f}s")
        run.wait(lambda: _assignment(run) == [8], 120, "A taking B's partitions back (SIGTERM)", tick=tick)
        run.event("partitions moved B->A (after SIGTERM)")
        b_joins(2 * cycle)
        ex = b.kill()
        run.event(f"B SIGKILL #{cycle}", pid=ex.pid, uptime=f"{ex.uptime_s:.1f}s")
        run.wait(lambda: _assignment(run) == [8], 120, "A taking B's partitions back (SIGKILL)", tick=tick)
        run.event("partitions moved B->A (after SIGKILL, session timeout)")
    b.start()
    run.wait(lambda: _assignment(run) == [4, 4], 120, "B joining (final)", tick=tick)
    run.event("B joined (final): both run to the end", pid=b.pid)
    run.finish(600, tick=tick, stall=180)


def _assignment(run: Run) -> list[int] | None:
    """Sorted partition counts of the group's members, e.g. [4, 4]; None while unknown."""
    m = run.members()
    return None if m is None else sorted(len(parts) for _, parts in m)


def scenario_hostile(run: Run) -> None:
    """Valid fills interleaved with every kind of bad record; one worker that must not crash."""
    sz = run.sizes
    run.setup()
    records = hostile_records(sz.records, tenant=run.tenant, series="hostile", cells=CELLS, seed=run.seed,
                              run_id=run.run_id, oversized=sz.oversized, handler_errors=sz.handler_errors)  # fmt: skip
    w = run.worker("worker")
    w.start()
    run.start_feed(records, sz.rate)
    run.finish(600, tick=lambda: _exit_check(run, w, restart=True), stall=120)


def scenario_dead_letter_limit(run: Run) -> None:
    """Hostile input at the size limit: an invalid ~1.03 MB record, which the broker accepts but
    whose dead-letter copy exceeds the worker producer's ``message.max.bytes`` (1,000,000).
    Expected: dead-lettered (or at least refused without crashing). A worker that exits is
    restarted ``actions`` times, then the run is checked as it stands."""
    sz = run.sizes
    run.setup()
    records = near_limit_records(sz.records, tenant=run.tenant, series="limit", cells=CELLS, seed=run.seed,
                                 run_id=run.run_id)  # fmt: skip
    w = run.worker("worker")
    w.start()
    run.start_feed(records, sz.rate, max_message_bytes=FEED_MAX_MESSAGE_BYTES)
    run.finish(300, tick=lambda: _exit_check(run, w, restart=True, max_restarts=sz.actions), stall=30)


# --------------------------------------------------------------------------- issue 9: the long run


def _envelope_ids(records: list[InputRecord]) -> dict[str, InputRecord]:
    """``event_id`` -> its input record (valid fills: every value is an envelope)."""
    out: dict[str, InputRecord] = {}
    for rec in records:
        env = EventEnvelope()
        env.ParseFromString(rec.value or b"")
        out[env.event_id] = rec
    return out


def _changelog_counts(run: Run, end: dict[int, int]) -> tuple[int, int]:
    """(records, tombstones) of the changelog below ``end`` a reader finds now."""
    assert run.kafka is not None
    n = t = 0
    for m in run.kafka.scan(changelog_of(run.group), {}, end, timeout=300, isolation="read_uncommitted",
                             eof_ends=True):  # fmt: skip
        n += 1
        t += m.value() is None
    return n, t


def _wait_cleaned(run: Run, what: str) -> dict[str, Any]:
    """Wait until the log cleaner has removed records of the changelog: the records below its
    current end, counted from the beginning, must drop below what they are now (and below the
    offsets written) — and, if tombstones are among them, the tombstones must drop too (removed
    after ``delete.retention.ms``). Returns the figures observed."""
    assert run.kafka is not None
    topic = changelog_of(run.group)
    end = run.kafka.end_offsets(topic)
    written = sum(end.values())
    n0, t0 = _changelog_counts(run, end)
    got: dict[str, Any] = {}

    def cleaned() -> bool:
        n, t = _changelog_counts(run, end)
        got.update(written=written, first_count=n0, first_tombstones=t0, count=n, tombstones=t)
        return n < n0 and n < written and (t0 == 0 or t < t0)

    run.wait(cleaned, 180, f"{what}: the log cleaner removing changelog records", poll=1.0)
    return got


def _recent_outputs(run: Run, per_partition: int = 200) -> list[tuple[str, int]]:
    """(input event_id, event time ms) of the run's latest outputs, newest last: dedupe TTLs run
    on the partition's event time (docs/adr/0008-verification.md), not on when a record was written."""
    assert run.kafka is not None
    end = run.kafka.end_offsets(NAV)
    lo = {p: max(run.start[NAV].get(p, 0), e - per_partition) for p, e in end.items()}
    out = []
    for r in run.kafka.read(NAV, lo, end):
        env = EventEnvelope()
        env.ParseFromString(r.value or b"")
        if env.producer == run.producer:
            out.append((env.causation_id, env.ts.ToMilliseconds()))
    return sorted(out, key=lambda x: x[1])


def _event_frontier(run: Run, per_partition: int = 50) -> int:
    """The newest event time among the fills produced so far: every partition's clock reaches at
    most this by the time a re-send sent now is processed behind them."""
    assert run.kafka is not None
    end = run.kafka.end_offsets(FILLS)
    lo = {p: max(run.start[FILLS].get(p, 0), e - per_partition) for p, e in end.items()}
    newest = 0
    for r in run.kafka.read(FILLS, lo, end):
        env = EventEnvelope()
        try:
            env.ParseFromString(r.value or b"")
        except Exception:  # hostile input on the topic is not a fill
            continue
        newest = max(newest, env.ts.ToMilliseconds())
    return newest


def _as_resend(rec: InputRecord) -> InputRecord:
    """The same key and value (same event_id, same bytes); headers say it is a re-send to dedupe."""
    headers = [(k, b"resend" if k == KIND_HEADER else DUP.encode() if k == EXPECT_HEADER else v)
               for k, v in rec.headers]  # fmt: skip
    return InputRecord(rec.key, rec.value, "resend", DUP, headers)


def _stop(run: Run, w: WorkerProc, how: str, label: str) -> None:
    try:
        run.wait(lambda: not w.alive() or w.ready(), 120, f"{w.name} consuming before {how}")
    except Stuck as exc:
        run.anomaly(str(exc))
    ex = w.kill() if how == "SIGKILL" else w.terminate()
    run.event(f"{label}: {how}", worker=w.name, pid=ex.pid, rc=ex.returncode, uptime=f"{ex.uptime_s:.1f}s",
              committed=run.progress())  # fmt: skip


def _restored(run: Run, w: WorkerProc, what: str, tick: Callable[[], None] | None = None) -> None:
    """Wait until ``w`` restored every input partition's store (its ``/readyz`` says so; the caller
    knows it is the group's only member)."""
    run.wait(lambda: not w.alive() or w.ready(), 180, what, tick=tick)
    if not w.alive():
        raise Stuck(f"{what}: {w.name} exited")


def _tail_records(run: Run, total: int, main: int, series: str) -> tuple[list[InputRecord], list[InputRecord]]:
    """``main`` fills of the run, then a tail of more (at least one per cell: every restored cell is
    checked by its next output)."""
    records = valid_records(total, tenant=run.tenant, series=series, cells=CELLS, seed=run.seed, run_id=run.run_id)
    head, tail = records[:main], records[main:]
    missing = {r.key for r in head} - {r.key for r in tail}
    if missing:
        run.anomaly(f"the tail misses {len(missing)} cell(s): raise Sizes.tail")
    return head, tail


def _final_restore(run: Run, tail: list[InputRecord], name: str) -> None:
    """A FRESH-DISK worker restores every partition from the changelog alone, then processes
    ``tail`` (more fills for every cell): its outputs show the state it restored."""
    w = run.worker(name)

    def tick() -> None:
        _exit_check(run, w)

    w.start(fresh_disk=True)
    _restored(run, w, f"{name} restoring every partition from the changelog", tick)
    run.event("fresh-disk worker restored", worker=name, pid=w.pid)
    run.send_now(tail, "tail fills")
    run.event("tail fed", records=len(tail), cells=len({r.key for r in tail}))
    run.finish(300, tick=tick, stall=120)


def _longrun_records(run: Run) -> tuple[list[InputRecord], list[InputRecord], int, set[bytes]]:
    """(main, tail, quiet_from, quiet keys): the first ``quiet_from`` main fills go to every cell,
    the rest only to the busy half of the cells; the quiet half then gets no fill for longer than
    the TTL (its last checkpoint groups age, their marks expire and are tombstoned, the
    tombstones removed) until the tail, which has at least one fill for every cell."""
    sz = run.sizes
    fills = valid_fills(tenant=run.tenant, series="longrun", cells=CELLS, seed=run.seed, run_id=run.run_id)
    quiet_from = sz.records // 4
    main = [InputRecord(k, v, "valid") for k, v in (next(fills) for _ in range(quiet_from))]
    keys = sorted({r.key for r in main if r.key})
    quiet = set(keys[::2])
    while len(main) < sz.records:
        k, v = next(fills)
        if k not in quiet:
            main.append(InputRecord(k, v, "valid"))
    tail: list[InputRecord] = []
    while len(tail) < sz.tail or {r.key for r in tail} != set(keys):
        k, v = next(fills)
        tail.append(InputRecord(k, v, "valid"))
    # Event time advances with the feed, as a live producer's would: marks expire on the
    # partition's event time (ADR 0008), so the quiet phase must last longer than the TTL in it.
    _event_times([*main, *tail], step_ms=max(1, round(1000 / sz.rate)) if sz.rate else 1)
    stamp([*main, *tail], run.run_id)
    return main, tail, quiet_from, quiet


def _event_times(records: list[InputRecord], *, step_ms: int) -> None:
    """Re-stamp the envelopes' ``ts`` ``step_ms`` apart from now, in feed order."""
    start_ms = int(time.time() * 1000)
    for i, rec in enumerate(records):
        env = EventEnvelope.FromString(rec.value or b"")
        env.ts.FromMilliseconds(start_ms + i * step_ms)
        rec.value = env.SerializeToString()


def scenario_longrun(run: Run) -> None:
    """Kafka's long run, compressed (issue 9): the changelog with the log cleaner forced on it
    (``FORCED_CLEANER``, broker ``log.cleaner.backoff.ms`` 500), a dedupe TTL short enough that
    marks expire (and are tombstoned, and the tombstones removed) mid-run, and ``actions``
    FRESH-DISK restarts (SIGTERM and SIGKILL alternately), each only once the cleaner was seen
    removing changelog records (and tombstones). Half of the cells get no fill from a quarter of
    the run on: their last checkpoint groups age past the TTL, so their marks are tombstoned and
    the tombstones removed. After each restart ``resend`` fills the previous worker processed
    within the TTL are sent again (same bytes): they must be deduplicated by the marks restored
    from the compacted changelog. After the last restart a tail gives every cell a next output."""
    sz = run.sizes
    assert sz.ttl_s is not None
    ttl_ms = int(sz.ttl_s * 1000)
    run.setup(changelog_config=FORCED_CLEANER)
    head, tail, quiet_from, quiet = _longrun_records(run)
    by_id = _envelope_ids(head)
    w = run.worker("worker")

    def tick() -> None:
        _exit_check(run, w, restart=True)

    w.start()
    run.start_feed(head, sz.rate)
    feed = run.feed
    assert feed is not None
    run.wait(lambda: feed.acked >= quiet_from, 600, "the feed reaching the quiet phase", tick=tick)
    quiet_since = time.monotonic()
    run.event("quiet phase: half of the cells get no more fills", quiet_cells=len(quiet), at_record=quiet_from)
    resent: set[str] = set()
    for i in range(sz.actions):
        target = quiet_from + (i + 1) * (sz.records - quiet_from) // (sz.actions + 1)
        # The quiet cells' last marks have expired (TTL counted from their processing) ...
        run.wait(lambda: (run.progress() or 0) >= target and time.monotonic() - quiet_since > sz.ttl_s + 1,  # noqa: B023
                 600, f"restart #{i + 1}: progress {target}, the TTL past the quiet phase", tick=tick)  # fmt: skip
        # ... and the cleaner has removed records (and tombstones) since.
        seen = _wait_cleaned(run, f"restart #{i + 1}")
        run.event(f"cleaner observed #{i + 1}", **seen)
        recent = _recent_outputs(run)
        how = "SIGTERM" if i % 2 == 0 else "SIGKILL"
        _stop(run, w, how, f"restart #{i + 1}")
        w.start(fresh_disk=True)
        _restored(run, w, f"restart #{i + 1}: fresh-disk restore", tick=tick)
        # Processed by the previous worker, with at least 3 s of their TTL left in event time (the
        # feed's clock runs ahead of the newest output while the re-sends wait): they must be skipped.
        now_ms = _event_frontier(run)
        fresh = [(eid, ts) for eid, ts in recent if eid in by_id and eid not in resent and ts + ttl_ms - now_ms > 3000]
        picks = fresh[-sz.resend :]
        run.event(f"restart #{i + 1}: fresh-disk worker restored", pid=w.pid, resend=len(picks),
                  ttl_left_s=sorted({round((ts + ttl_ms - now_ms) / 1000, 1) for _, ts in picks})[:3])  # fmt: skip
        if picks:
            run.send_now([_as_resend(by_id[eid]) for eid, _ in picks], f"restart #{i + 1}: re-sends")
            resent.update(eid for eid, _ in picks)
    if not resent:
        run.anomaly("no restart left time within the TTL to re-send processed fills (raise Sizes.ttl_s)")
    # The last fresh-disk worker restored a changelog the cleaner was seen compacting: the tail
    # gives every cell — the quiet ones for the first time since their marks expired — a next
    # output, which shows the state it restored. (Fed now, while the cleaner still has appends to
    # work on; after the input ends the active segment no longer rolls.)
    run.send_now(tail, "tail fills")
    run.event("tail fed", records=len(tail), cells=len({r.key for r in tail}), resent=len(resent))
    run.finish(900 if not run.short else 240, tick=tick, stall=180)


# --------------------------------------------------------------------------- issue 9: the zombie


ZOMBIE_FEED_LEFT_S = 15.0  # seconds of feed left when the zombie is stopped
ZOMBIE_RESUME_BY_S = 25.0  # resume it by then: its producer's queued writes expire after 30 s (message.timeout.ms)


def _pause_in_flight(run: Run, a: WorkerProc, tick: Callable[[], None], attempts: int = 600) -> float:
    """SIGSTOP ``a`` with a checkpoint in flight: its batch's outputs acknowledged (the output topic
    grew) but its changelog records not yet written (the changelog did not grow), and the input not
    committed — still so half a second later. Otherwise SIGCONT and try again at the next batch.
    Returns when it stopped."""
    assert run.kafka is not None
    kafka, changelog = run.kafka, changelog_of(run.group)
    nav0 = sum(run.start[NAV].values())
    # High watermarks: in exactly-once mode a transaction's records are there before it commits.
    raw = "read_uncommitted"

    def outputs() -> int:
        return run.outputs_end(raw)

    def changelog_end() -> int:
        return sum(kafka.end_offsets(changelog, isolation=raw).values())

    # Exactly-once: outputs and changelog go into one transaction in either order; A stopped with
    # its transaction open (outputs written, not committed) is the moment.
    eos = run.guarantee == "exactly_once"
    for attempt in range(1, attempts + 1):
        if run.feed is not None and run.feed.finished.is_set():
            break
        out0, cl0 = outputs(), changelog_end()
        try:
            run.wait(lambda: outputs() > out0, 10, "A's next outputs acknowledged", tick=tick, poll=0.0005)  # noqa: B023
        except Stuck:
            continue
        a.pause()
        stopped = time.monotonic()
        if eos or changelog_end() == cl0:
            time.sleep(0.5)  # poll interval: is a commit or a changelog write merely on its way?
            out, progress = outputs() - nav0, run.progress() or 0
            # (exactly-once: a transaction open on the outputs — high watermark above last stable offset)
            if (outputs() > run.outputs_end()) if eos else (out > progress and changelog_end() == cl0):
                run.event("A SIGSTOPped with a checkpoint in flight (outputs acknowledged; changelog and commit"
                          " not)", pid=a.pid, attempt=attempt, outputs=out, committed=progress,
                          changelog_end=cl0)  # fmt: skip
                return stopped
        a.resume()
    run.anomaly(f"no SIGSTOP (of {attempt}) caught a checkpoint in flight: A stays stopped where the last one was")
    a.pause()
    return time.monotonic()


def scenario_zombie(run: Run) -> None:
    """A stale owner (issue 9, item 3): worker A owns every partition and processes a paced feed;
    it is SIGSTOPped right after a batch's outputs were acknowledged (its changelog write and
    commit still to come) and kept stopped past its 10 s session timeout, until worker B owns
    every partition (one member holding all of them, B's stores restored) and has committed the
    rest of the input. Then A is SIGCONTed and runs on (until it logged again and the changelog
    has not grown for 2 s: its late writes, if any, are the newest), both stop, and a FRESH-DISK
    worker restores
    from the changelog and processes a tail for every cell: its outputs must equal the oracle,
    i.e. the zombie's late writes were fenced or ignored."""
    sz = run.sizes
    run.setup()
    head, tail = _tail_records(run, sz.records + sz.tail, sz.records, "zombie")
    a, b = run.worker("worker-a"), run.worker("worker-b")

    def tick() -> None:
        _exit_check(run, a)
        _exit_check(run, b)

    a.start()
    run.wait(lambda: _assignment(run) == [8] and a.ready(), 120, "A owning every partition",
             tick=tick)  # fmt: skip
    run.start_feed(head, sz.rate)
    # Stop A late enough that B can finish the input (it takes over after the 10 s session timeout)
    # and A resume within the workers' 30 s delivery timeout: A's queued writes are then still sent.
    assert sz.rate is not None
    goal = max(sz.records // 5, sz.records - int(ZOMBIE_FEED_LEFT_S * sz.rate))
    run.wait(lambda: (run.progress() or 0) >= goal, 600, f"A making progress ({goal} committed)", tick=tick)
    stopped = _pause_in_flight(run, a, tick)
    b.start()
    run.wait(lambda: _assignment(run) == [8] and b.ready(), 180,
             "B owning every partition (A's session expired)", tick=tick)  # fmt: skip
    run.event("B owns every partition", pid=b.pid, a_stopped_for=f"{time.monotonic() - stopped:.1f}s",
              members=run.members())  # fmt: skip
    before = run.progress() or 0
    run.wait(lambda: (run.progress() or 0) > before + 50 or run.done(), 120, "B committing progress", tick=tick)
    # B processes (and commits) the rest of the input: A's late writes, if they land, come last.
    # A resumes in any case before its queued writes would time out (its producer's 30 s).
    run.wait(lambda: run.done() or time.monotonic() - stopped > ZOMBIE_RESUME_BY_S, 120,
             "B committing the whole input", tick=tick, poll=0.2)  # fmt: skip
    if not run.done():
        run.event(f"B had not committed the whole input {ZOMBIE_RESUME_BY_S:.0f}s after A stopped: A resumes anyway")
    assert run.kafka is not None
    changelog = changelog_of(run.group)
    kafka = run.kafka

    def changelog_end() -> int:  # high watermark: writes of a transaction still open, or aborted, count too
        return sum(kafka.end_offsets(changelog, isolation="read_uncommitted").values())

    cl0, out0 = changelog_end(), run.outputs_end("read_uncommitted")
    run.event("B committed the whole input", committed=run.progress(), changelog_end=cl0)
    a_log = len(a.output_since_spawn())
    a.resume()
    run.event("A SIGCONTed (a zombie)", stopped_for=f"{time.monotonic() - stopped:.1f}s")
    # It runs on until it shows it runs (logs — its failed commit, a revocation —, rejoins the group
    # or exits), and until the changelog is quiet.
    try:
        run.wait(lambda: not a.alive() or len(a.output_since_spawn()) > a_log or len(run.members() or []) > 1, 60,
                 "A running again (it logs, rejoins or exits)", tick=tick)  # fmt: skip
    except Stuck as exc:
        run.event(f"A gave no sign of life: {exc}")
    last = [changelog_end(), time.monotonic()]

    def settled() -> bool:
        n = changelog_end()
        if n != last[0]:
            last[:] = [n, time.monotonic()]
        return time.monotonic() - last[1] > 2.0

    run.wait(settled, 60, "the changelog settling after A resumed", tick=tick, poll=0.2)
    assert run.kafka is not None
    cl1 = changelog_end()
    a_said = a.output_since_spawn()[a_log:].decode("utf-8", "replace").strip().splitlines()
    run.event("zombie ran", a_alive=a.alive(), members=run.members(), changelog_records_after_resume=cl1 - cl0,
              outputs_after_resume=run.outputs_end("read_uncommitted") - out0, a_log=[ln[:300] for ln in a_said[-3:]])
    run.finish(600 if not run.short else 180, tick=tick, stall=120)
    _final_restore(run, tail, "worker-c")


def scenario_eos(run: Run) -> None:
    """The kill loop (``kill``: SIGKILLs at startup, after restore, between outputs and commit, and
    spread over the input) in exactly-once mode: a read_committed reader of the outputs must see
    every input's output once — 0 lost, 0 raw duplicate records."""
    scenario_kill(run)


RUNNERS: dict[str, Callable[[Run], None]] = {
    "kill": scenario_kill,
    "broker-restart": scenario_broker_restart,
    "rebalance": scenario_rebalance,
    "hostile": scenario_hostile,
    "dead-letter-limit": scenario_dead_letter_limit,
    "longrun": scenario_longrun,
    "zombie": scenario_zombie,
    "eos": scenario_eos,
}


def run_scenario(name: str, broker: Broker, work_dir: Path, *, short: bool, transport: str = "confluent",
                 seed: int | None = None, say: Callable[[str], None] = print,
                 guarantee: str = "at_least_once") -> dict[str, Any]:  # fmt: skip
    """Run one scenario against ``broker`` and check it; returns its result record. ``guarantee``:
    the workers' ``--guarantee`` (``eos`` always runs exactly-once); in exactly-once mode a
    scenario also needs 0 raw duplicate records for a read_committed reader."""
    if guarantee not in GUARANTEES:
        raise ValueError(f"guarantee {guarantee!r}: one of {GUARANTEES}")
    guarantee = PINNED_GUARANTEE.get(name, guarantee)
    seed = seed if seed is not None else random.randrange(1 << 30)
    run = Run(name, short, broker, work_dir, transport, seed, say, guarantee)
    before = runtime_fingerprint()
    say(f"[chaos] {name} ({'short' if short else 'full'}, {guarantee}): seed {seed}, group {run.group},"
        f" logs {work_dir}")  # fmt: skip
    rep: Report | None = None
    error = ""
    try:
        RUNNERS[name](run)
    except Stuck as exc:
        run.anomaly(str(exc))
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        run.anomaly(f"scenario aborted: {error}")
    finally:
        for w in run.workers:
            if w.alive():
                w.kill()
    try:
        if run.kafka is not None and run.start:
            rep = run.check()
    except Exception as exc:
        error = error or f"checker failed: {type(exc).__name__}: {exc}"
        run.anomaly(f"checker failed: {exc!r}")
    finally:
        run.cleanup()
    after = runtime_fingerprint()
    if after != before:
        run.anomaly(f"the runtime's sources changed during the run ({before} -> {after}): workers spawned"
                    " before and after ran different code")  # fmt: skip
    crashed = [e for w in run.workers for e in w.unexpected_exits()]
    passed = (rep is not None and rep.contract_ok and rep.wrong_values == 0 and not error
              and (name not in ("hostile", "dead-letter-limit") or (rep.dead_letters_ok and not crashed))
              and (guarantee != "exactly_once" or (rep.raw_duplicates == 0 and not rep.nav_read_short
                                               and not rep.nav_open_transactions)))  # fmt: skip
    return {
        "scenario": name,
        "mode": "short" if short else "full",
        "passed": passed,
        "seconds": run.elapsed(),
        "seed": seed,
        "transport": transport,
        "guarantee": guarantee,
        "sizes": run.sizes.__dict__,
        "group": run.group,
        "run_id": run.run_id,
        "broker": broker.bootstrap,
        "runtime": {"before": before, "after": after},
        "figures": rep.as_dict() if rep is not None else None,
        "worker_spawns": sum(w.spawns for w in run.workers),
        "worker_exits": [{"worker": w.name, **e.__dict__} for w in run.workers for e in w.exits],
        "unexpected_exits": len(crashed),
        "feed": ({"sent": run.feed.sent, "acked": run.feed.acked, "failed": run.feed.failed,
                  "client_errors": run.feed.client_errors, "seconds": round(run.feed.seconds, 2),
                  "log": str(work_dir / "feed.log")} if run.feed else None),
        "events": run.events,
        "anomalies": run.anomalies,
        "error": error,
        "logs": {w.name: str(w.log_path) for w in run.workers},
        "log_excerpts": {w.name: w.log_excerpt() for w in run.workers},
        "broker_log": [*getattr(broker, "log_lines", [])],
    }

