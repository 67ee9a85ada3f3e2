"""The vertical slice on the real broker: fill -> nav-consumer -> NAV update, also across SIGKILLs.

Isolation on the session's shared broker: each test runs the nav app under a consumer group of
its own (``apps.nav.build_app(name)``, so also its own changelog topic), starts that group at
the current end of ``pit.v1.exec.trade_fill`` (other tests' fills are not its business), and
counts only NAV updates of a series it generated (``s<hex>``) written by its own group.
"""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from kafka_support import create_topic
from pit.events.v1.events_pb2 import NAVUpdateEvent, TradeFillEvent

import pit_streams
from pit_streams.runtime.worker import Worker, WorkerSettings
from pit_streams.transport.factory import make_transport

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # apps/ lives at the repo root
from apps import nav  # noqa: E402
from apps.nav_math import CellBook, MemoryState, Snapshot, final_navs, replay  # noqa: E402
from apps.tradefill_producer import generate_fills, produce  # noqa: E402
from demo.navtail import NavTail  # noqa: E402
from devkit.records import group_lag  # noqa: E402

pytestmark = pytest.mark.kafka

USD = 1_000_000
PARTITIONS = 8
FILL_RATE = 120  # fills per second in the kill/restart test: 3000 fills take 25 s


@dataclass
class Isolated:
    bootstrap: str
    hexid: str
    group: str
    series: str
    app: pit_streams.App

    def keep(self, env: object) -> bool:
        return env.series == self.series and env.producer == self.app.producer  # type: ignore[attr-defined]


def ensure_topic(bootstrap: str, name: str, partitions: int, config: dict[str, str] | None = None) -> int:
    """Create ``name`` unless it exists (tests share the broker); returns its partition count."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    info = admin.list_topics(topic=name, timeout=10).topics.get(name)
    if info is None or info.error is not None or not info.partitions:
        try:
            create_topic(bootstrap, name, partitions, config)
        except Exception as exc:  # created meanwhile by someone else: fine
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
        info = admin.list_topics(topic=name, timeout=10).topics[name]
    return len(info.partitions)


def start_group_at_end(bootstrap: str, group: str, topic: str) -> None:
    """Commit the current end offsets of ``topic`` for ``group`` before it ever runs."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        parts = c.list_topics(topic=topic, timeout=10).topics[topic].partitions
        ends = [TopicPartition(topic, p, c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1])
                for p in sorted(parts)]  # fmt: skip
        c.commit(offsets=ends, asynchronous=False)
    finally:
        c.close()


@pytest.fixture
def iso(kafka_bootstrap: str) -> Isolated:
    hexid = uuid.uuid4().hex[:10]
    app = nav.build_app(f"nav-vs-{hexid}")
    fills_partitions = ensure_topic(kafka_bootstrap, nav.FILLS, PARTITIONS)
    ensure_topic(kafka_bootstrap, nav.NAV, PARTITIONS)
    ensure_topic(kafka_bootstrap, pit_streams.DEAD_LETTER_TOPIC, 3)
    ensure_topic(kafka_bootstrap, app.changelog_topic, max(PARTITIONS, fills_partitions), {"cleanup.policy": "compact"})
    start_group_at_end(kafka_bootstrap, app.group, nav.FILLS)
    return Isolated(kafka_bootstrap, hexid, app.group, f"s{hexid}", app)


def wait_until(what: str, cond: Callable[[], bool], timeout: float = 120.0,
               alive: subprocess.Popen[bytes] | None = None, log: Path | None = None) -> None:  # fmt: skip
    deadline = time.monotonic() + timeout
    while not cond():
        if alive is not None and alive.poll() is not None:
            raise AssertionError(f"worker exited with {alive.returncode} while waiting for {what}:\n{_tail(log)}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}:\n{_tail(log)}")
        time.sleep(0.05)


def seen_at_least(tail: NavTail, n: int) -> bool:
    tail.poll()
    return len(tail.by_cause) >= n


def _tail(log: Path | None) -> str:
    return "" if log is None or not log.exists() else "\n".join(log.read_text(errors="replace").splitlines()[-30:])


def as_tuple(n: NAVUpdateEvent) -> tuple[int, int, int, int]:
    return (n.nav_usd_micros, n.cash_liquid_usd_micros, n.unrealized_pnl_usd_micros, n.realized_pnl_usd_micros)


def snap_tuple(s: Snapshot) -> tuple[int, int, int, int]:
    return (s.nav, s.cash, s.unrealized, s.realized)


# --------------------------------------------------------------------------- 1. smoke


async def test_smoke_one_fill_one_nav_update(iso: Isolated, tmp_path: Path) -> None:
    key = f"t/vs/s/{iso.series}/c/0001"
    price = 60_123 * USD + 450_000
    fill = TradeFillEvent(event_id=str(uuid.uuid4()), instrument="BTC-USD", venue="sim-a", qty=3, price_micros=price,
                          notional_usd_micros=3 * price, fee_usd_micros=3 * price // 10_000)  # fmt: skip
    expected = CellBook(MemoryState()).apply(fill)

    worker = Worker(iso.app, make_transport("confluent", iso.bootstrap, client_id=iso.app.producer),
                    WorkerSettings(tmp_path / "data"))  # fmt: skip
    await worker.start()
    try:
        async with pit_streams.Producer("tradefill-producer", version="0.1.0", broker=iso.bootstrap) as producer:
            producer.send(nav.FILLS, fill, key=key, event_id=fill.event_id)
            await producer.flush()
        deadline = time.monotonic() + 60
        while worker.metrics.processed < 1:
            assert time.monotonic() < deadline, "the worker did not process the fill within 60 s"
            await worker.run_once()
    finally:
        await worker.stop()

    tail = NavTail(iso.bootstrap, keep=iso.keep)
    try:
        wait_until("the NAV update", lambda: tail.poll() >= 0 and len(tail.records) >= 1, 30)
        tail.poll(0.5)  # anything else would show up here: exactly one is expected
    finally:
        tail.close()
    [rec] = tail.records
    env, out = rec.envelope, rec.nav
    assert env.causation_id == fill.event_id
    assert env.payload_type == "pit.events.v1.NAVUpdateEvent" and env.producer == f"{iso.group}@0.1.0"
    assert (env.key, env.tenant, env.series, env.cell) == (key, "vs", iso.series, "0001")
    assert (out.tenant_id, out.series_id, out.cell_id, out.event_id) == ("vs", iso.series, "0001", env.event_id)
    assert as_tuple(out) == snap_tuple(expected)
    assert out.nav_usd_micros == 1_000_000 * USD - fill.fee_usd_micros  # bought at the mark: only the fee is lost
    assert out.cash_liquid_usd_micros == 1_000_000 * USD - 3 * price - fill.fee_usd_micros


# --------------------------------------------------------------------------- 2. kill / restart


def test_sigkill_and_restart_lose_nothing_and_count_nothing_twice(iso: Isolated, tmp_path: Path) -> None:
    fills = generate_fills(3000, tenants=["vs1", "vs2"], series=[iso.series], cells=6, seed=42, run_id=iso.hexid)
    keys = {k for k, _ in fills}
    catalog = catalog_with(tmp_path, iso.app.changelog_topic, iso.group)
    (tmp_path / f"navvs_{iso.hexid}.py").write_text(
        f"from apps.nav import build_app\n\npit = build_app({iso.group!r})\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    pit_streams_bin = Path(sys.executable).parent / "pit-streams"
    log = tmp_path / "worker.log"

    def start(data_dir: Path) -> subprocess.Popen[bytes]:
        cmd = [str(pit_streams_bin), "worker", "-A", f"navvs_{iso.hexid}", "--broker", iso.bootstrap,
               "--data-dir", str(data_dir), "--health-port", "-1", "--batch-size", "50"]  # fmt: skip
        if catalog is not None:
            cmd += ["--catalog", str(catalog)]
        with open(log, "ab") as out:
            return subprocess.Popen(cmd, cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                    start_new_session=True)  # fmt: skip

    produced: list[int | BaseException] = []

    def produce_steadily() -> None:  # a live stream: the worker cannot run ahead of it
        try:
            produced.append(asyncio.run(produce(iso.bootstrap, fills, rate=FILL_RATE, flush_every=50)))
        except BaseException as exc:
            produced.append(exc)

    producer = threading.Thread(target=produce_steadily, name="tradefill-producer", daemon=True)
    tail = NavTail(iso.bootstrap, keep=iso.keep)
    procs: list[subprocess.Popen[bytes]] = []
    kills: list[tuple[int, bool]] = []  # (NAV updates seen, was the producer still producing)
    try:
        producer.start()
        # Run 1 and 2 end in SIGKILL while fills keep arriving; run 2 restarts on the same disk,
        # run 3 on a fresh one (its state comes from the changelog alone).
        for data_dir, kill_after in (("a", 400), ("a", 1400), ("b", None)):
            proc = start(tmp_path / data_dir)
            procs.append(proc)
            if kill_after is None:
                break
            wait_until(f"{kill_after} NAV updates", functools.partial(seen_at_least, tail, kill_after),
                       alive=proc, log=log)  # fmt: skip
            proc.send_signal(signal.SIGKILL)
            kills.append((len(tail.by_cause), producer.is_alive()))
            proc.wait(30)
        producer.join(120)
        assert produced == [len(fills)], produced
        wanted = {f.event_id for _, f in fills}
        wait_until("a NAV update for every fill", lambda: tail.poll() >= 0 and wanted <= tail.by_cause.keys(),
                   alive=procs[-1], log=log)  # fmt: skip
        wait_until("the group to commit every fill", lambda: group_lag(iso.bootstrap, iso.group, nav.FILLS) == 0,
                   alive=procs[-1], log=log)  # fmt: skip
        procs[-1].send_signal(signal.SIGTERM)
        assert procs[-1].wait(60) == 0, _tail(log)
        tail.poll(0.5)
    finally:
        tail.close()
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()

    assert [producing for _, producing in kills] == [True, True], f"the kills were not mid-stream: {kills}"
    # No fill lost: every fill caused at least one NAV update.
    assert wanted <= tail.by_cause.keys()
    assert tail.by_cause.keys() <= wanted
    # None counted twice: a redelivered fill's NAV update has the same derived event id and values.
    nav_ids = {r.envelope.event_id for r in tail.records}
    assert len(nav_ids) == len(fills)
    for recs in tail.by_cause.values():
        assert len({(r.envelope.event_id, as_tuple(r.nav)) for r in recs}) == 1
    # Every NAV update equals the offline computation over the same fills in the same per-key order.
    expected = replay(fills)
    position: dict[str, int] = {}
    for key, fill in fills:
        i = position[key] = position.get(key, -1) + 1
        rec = tail.by_cause[fill.event_id][0]
        assert rec.envelope.key == key
        assert as_tuple(rec.nav) == snap_tuple(expected[key][i]), f"fill #{i} of {key}"
    # And the final NAV per cell: the NAV update of each cell's last fill.
    last = {key: fill.event_id for key, fill in fills}
    finals = final_navs(fills)
    assert {k: as_tuple(tail.by_cause[last[k]][0].nav) for k in keys} == {k: snap_tuple(finals[k]) for k in keys}
    redelivered = len(tail.records) - len(nav_ids)
    print(f"kills after {[n for n, _ in kills]} NAV updates; {redelivered} NAV update(s) re-sent after them")


def catalog_with(tmp_path: Path, changelog: str, group: str) -> Path | None:
    """infra/topics.yaml plus this test's changelog, with this test's group as the owner of the NAV
    topic it writes (the worker CLI checks the app against the catalog, ownership included)."""
    source = REPO / "infra" / "topics.yaml"
    if not source.exists():
        return None
    doc = yaml.safe_load(source.read_text())
    template = next(t for t in doc["topics"] if t["name"] == "pit.v1.runtime.nav_consumer_changelog")
    doc["topics"].append({**template, "name": changelog, "owner": group,
                          "description": "changelog of a test's nav group"})
    for topic in doc["topics"]:
        if topic["name"] == "pit.v1.acct.nav_update":
            topic["owner"] = group
    out = tmp_path / "topics.yaml"
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out
