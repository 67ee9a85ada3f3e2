"""State over Kafka's long run, on the real broker: the log cleaner is forced to run on the
changelog (tiny segments, dirty ratio 0.01, tombstones kept 200 ms; the session broker's cleaner
backs off 200 ms) and the dedupe TTL is short, so marks expire and their tombstones are removed
while the test runs. The test waits until the cleaner has *observably* removed superseded
records and tombstones, then restores on an empty data dir and checks state and marks against
what the committed inputs say they must be."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest
from itapp import make_app
from kafka_support import create_topic, delete_topics, existing_topics
from pit.events.v1.events_pb2 import NAVUpdateEvent, TradeFillEvent
from support import (
    DEAD_LETTER_PARTITIONS,
    Raw,
    Scenario,
    ensure_topic,
    envelope,
    fill,
    new_worker,
    produce,
    raw_envelope,
    read_all,
    run_until,
)

import pit_streams
from pit_streams import DEAD_LETTER_TOPIC
from pit_streams.contract import Key
from pit_streams.runtime.worker import Worker

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(240)]

CLEANER_FORCED = {
    "cleanup.policy": "compact",
    "segment.ms": "100",
    "min.cleanable.dirty.ratio": "0.01",
    "delete.retention.ms": "200",
    "min.compaction.lag.ms": "0",
}
CELLS = [Key("demo", "alpha", f"{i:04d}") for i in range(4)]
BUSY = CELLS[:2]


def _scenario(bootstrap: str) -> Scenario:
    """A test's topics, its changelog with the cleaner forced on it."""
    sc = Scenario(bootstrap)
    create_topic(bootstrap, sc.source)
    create_topic(bootstrap, sc.output)
    create_topic(bootstrap, sc.changelog, 1, CLEANER_FORCED)
    ensure_topic(bootstrap, DEAD_LETTER_TOPIC, DEAD_LETTER_PARTITIONS)
    return sc


def _cleaned(bootstrap: str, changelog: str, tombstoned: set[bytes], rounds: int) -> bool:
    """True once superseded records are gone and some tombstone was removed as well."""
    records = read_all(bootstrap, changelog)
    for rec in records:
        if rec.key is not None and rec.key.startswith(b"d/") and rec.value is None:
            tombstoned.add(rec.key)
    present = {rec.key for rec in records}
    offset_records = sum(1 for rec in records if rec.key is not None and rec.key.startswith(b"o/"))
    return offset_records < rounds - 2 and bool(tombstoned - present)


async def test_fresh_disk_restore_after_the_cleaner_and_tombstone_expiry(
    transport: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    sc = _scenario(kafka_bootstrap)
    app = make_app(sc.name, sc.source, sc.output)
    app.dedupe_ttl = timedelta(seconds=10)  # marks expire and are tombstoned during the run

    worker = new_worker(transport, kafka_bootstrap, app, tmp_path / "a")
    await worker.start()
    rounds, last_round, fills = 0, [], {}
    tombstoned: set[bytes] = set()
    deadline = time.monotonic() + 120
    try:
        while rounds < 4 or not _cleaned(kafka_bootstrap, sc.changelog, tombstoned, rounds):
            assert time.monotonic() < deadline, f"the cleaner removed nothing in 120 s ({rounds} rounds)"
            # One fill per cell (cash -= 1,000,000); half the cells go quiet after two rounds, so
            # their last state is written by checkpoints whose dedupe marks expire and vanish.
            last_round = [fill(key=k) for k in (CELLS if rounds < 2 else BUSY)]
            produce(kafka_bootstrap, sc.source, last_round)
            rounds += 1
            for rec in last_round:
                fills[rec.key] = fills.get(rec.key, 0) + 1
            await _until_processed(worker, sum(fills.values()))
            time.sleep(0.3)  # noqa: ASYNC251 - workload pacing: lets segments roll (segment.ms), not a sync
    finally:
        await worker.stop()

    # A new pod: empty disk. Redeliver the last round (inside its TTL) and send one more round.
    fresh = new_worker(transport, kafka_bootstrap, app, tmp_path / "b")
    await fresh.start()
    try:
        produce(kafka_bootstrap, sc.source, last_round)
        produce(kafka_bootstrap, sc.source, [fill(key=k) for k in CELLS])
        await run_until([fresh], lambda: fresh.metrics.processed + fresh.metrics.deduped >= len(BUSY + CELLS),
                        what="redelivered and new fills")
    finally:
        await fresh.stop()
    assert fresh.metrics.deduped == len(BUSY), "a redelivered fill inside its TTL was applied again"
    assert fresh.metrics.state_gaps == 0, "a store restored from a compacted changelog was taken for one behind"
    outputs = read_all(kafka_bootstrap, sc.output)
    last_cash = {}
    for out in outputs:
        last_cash[out.envelope.key] = NAVUpdateEvent.FromString(out.envelope.payload).cash_liquid_usd_micros
    assert last_cash == {str(k): -1_000_000 * (fills[str(k).encode()] + 1) for k in CELLS}


async def _until_processed(worker: Worker, n: int) -> None:
    await run_until([worker], lambda: worker.metrics.processed >= n, what=f"{n} fills processed")


def positions_app(sc: Scenario, ttl: timedelta) -> pit_streams.App:
    """Open positions per cell: ``qty/{instrument}``, deleted when it returns to 0; emits their count."""
    app = pit_streams.App(sc.name, version="1.0.0", dedupe_ttl=ttl)

    @app.handler(sc.source, TradeFillEvent, emits={sc.output: NAVUpdateEvent})
    def on_fill(fill: TradeFillEvent, ctx: pit_streams.Context) -> None:
        qty = ctx.state.get(f"qty/{fill.instrument}") + fill.qty
        if qty:
            ctx.state.put(f"qty/{fill.instrument}", qty)
        else:
            ctx.state.delete(f"qty/{fill.instrument}")
        ctx.emit(sc.output, NAVUpdateEvent(nav_usd_micros=len(ctx.state.items("qty/"))))

    return app


async def test_returning_disk_and_ttl_re_mark_under_the_cleaner(
    transport: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    sc = _scenario(kafka_bootstrap)
    app = positions_app(sc, timedelta(seconds=3))
    cell = CELLS[0]
    key_record = f"k/{cell}".encode()

    async def run(disk: str, records: list[Raw], handled: int) -> Worker:
        worker = new_worker(transport, kafka_bootstrap, app, tmp_path / disk)
        await worker.start()
        produce(kafka_bootstrap, sc.source, records)
        try:
            await run_until([worker], lambda: worker.metrics.processed + worker.metrics.deduped >= handled,
                            what=f"{handled} fills handled on disk {disk}")
        finally:
            await worker.stop()
        return worker

    await run("a", [fill(3, instrument="ETH", key=cell)], 1)  # disk a: ETH open
    written = 0
    deadline = time.monotonic() + 90
    closing = [fill(-3, instrument="ETH", key=cell)]  # disk b deletes ETH, then trades SOL ...
    worker_b = new_worker(transport, kafka_bootstrap, app, tmp_path / "b")
    await worker_b.start()
    try:
        while True:  # ... until the cleaner removed every superseded state record of the cell
            produce(kafka_bootstrap, sc.source, closing or [fill(1, instrument="SOL", key=cell)])
            closing, written = [], written + 1
            await run_until([worker_b], lambda n=written: worker_b.metrics.processed >= n, what="a fill")
            kept = sum(1 for r in read_all(kafka_bootstrap, sc.changelog) if r.key == key_record)
            if written > 3 and kept < written - 1:
                break
            assert time.monotonic() < deadline, "the cleaner removed no superseded state record"
            time.sleep(0.3)  # noqa: ASYNC251 - workload pacing: lets segments roll (segment.ms), not a sync
    finally:
        await worker_b.stop()
    # Disk a returns, behind the changelog: ETH, deleted meanwhile, must stay deleted.
    again = fill(1, instrument="SOL", key=cell)
    await run("a", [again], 1)
    assert _last_output(kafka_bootstrap, sc.output).nav_usd_micros == 1  # SOL only

    # TTL re-mark: after expiry a redelivery runs again once; its new mark survives the sweep.
    # The TTL runs on the partition's event time (ADR 0008): a later fill moves it past the mark.
    later = raw_envelope(envelope(TradeFillEvent(instrument="TICK", qty=0, price_micros=1), key=cell,
                                  ts_ms=int(time.time() * 1000) + 4000))
    worker = await run("c", [later, again, again], 3)  # fresh disk, restored after the cleaner
    assert (worker.metrics.processed, worker.metrics.deduped) == (2, 1)
    worker = await run("d", [again], 1)  # another fresh disk: the new mark was restored
    assert (worker.metrics.processed, worker.metrics.deduped) == (0, 1)


def _last_output(bootstrap: str, topic: str) -> NAVUpdateEvent:
    return NAVUpdateEvent.FromString(read_all(bootstrap, topic)[-1].envelope.payload)


async def test_a_changelog_lost_under_a_live_group_is_reported_on_restore(
    transport: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    """The changelog is deleted and created again while the group's offsets stay: a fresh disk
    restores nothing, and the worker says so (``pit_state_gaps``) instead of going on silently."""
    sc = _scenario(kafka_bootstrap)
    app = make_app(sc.name, sc.source, sc.output)
    worker = new_worker(transport, kafka_bootstrap, app, tmp_path / "a")
    await worker.start()
    try:
        produce(kafka_bootstrap, sc.source, [fill(key=CELLS[0]) for _ in range(3)])
        await _until_processed(worker, 3)
    finally:
        await worker.stop()
    delete_topics(kafka_bootstrap, [sc.changelog])
    deadline = time.monotonic() + 60
    while sc.changelog in existing_topics(kafka_bootstrap):  # until the broker's metadata says it is gone
        assert time.monotonic() < deadline, f"{sc.changelog} still listed 60 s after its deletion"
        time.sleep(0.1)  # noqa: ASYNC251 - pacing the metadata requests, not a synchronisation
    create_topic(kafka_bootstrap, sc.changelog, 1, CLEANER_FORCED)

    fresh = new_worker(transport, kafka_bootstrap, app, tmp_path / "b")
    await fresh.start()
    try:
        produce(kafka_bootstrap, sc.source, [fill(key=CELLS[0])])
        await _until_processed(fresh, 1)
    finally:
        await fresh.stop()
    assert fresh.metrics.state_gaps == 1
    assert _last_output(kafka_bootstrap, sc.output).cash_liquid_usd_micros == -1_000_000  # what it reported: state lost
