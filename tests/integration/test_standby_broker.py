"""Standby stores on the real broker (docs/adr/0012-standby-stores.md).

Two workers of one group, standby on: each owns one partition and keeps a warm copy of the
other's store by following its changelog partition. The owner of partition P then writes a tail
the standby does not follow (held back, as a lagging standby would be) and leaves; P moves to the
standby worker, whose restore must read exactly that tail and nothing before it.

The attacks:
- a restore that ignores the standby's offset reads the whole changelog partition (the counts
  below would equal the partition's size);
- a follower that reads ``read_uncommitted`` applies an aborted transaction's state record (one is
  written into P's changelog while the standby follows it, for a cell that gets no later record
  before the move): that cell's cash would then continue from the aborted value;
- a standby that missed or double-applied anything answers a re-sent id or shifts the running
  cash of a cell: every cell's outputs must carry exactly -1 .. -n (M), one value per event id.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from google.protobuf.timestamp_pb2 import Timestamp
from itapp import make_app
from pit.events.v1.events_pb2 import NAVUpdateEvent
from support import Raw, Scenario, fill, new_worker, produce, read_all, run_until

from pit_streams.contract import Key, murmur2_partition
from pit_streams.runtime.worker import Worker, WorkerSettings
from pit_streams.state.changelog import key_state_record
from pit_streams.state.store import PartitionStore
from pit_streams.transport.base import Record, TopicPartition
from pit_streams.transport.factory import make_transport

pytestmark = pytest.mark.kafka

PARTITIONS = 2
CELLS = [Key("demo", "alpha", f"{i:04d}") for i in range(12)]


def on(cell: Key) -> int:
    return murmur2_partition(str(cell).encode(), PARTITIONS)


def fills(cells: list[Key], n: int) -> list[Raw]:
    return [fill(key=cell, partition=on(cell)) for _ in range(n) for cell in cells]


async def test_a_partition_moved_to_its_standby_reads_only_the_tail(transport: str, kafka_bootstrap: str,
                                                                     tmp_path: Path) -> None:
    sc = Scenario(kafka_bootstrap, partitions=PARTITIONS)
    sc.create()
    app = make_app(sc.name, sc.source, sc.output)

    def worker(name: str) -> Worker:
        settings = WorkerSettings(tmp_path / name, batch_size=10, standby=True, standby_chunk_records=50)
        return new_worker(transport, kafka_bootstrap, app, tmp_path / name, settings=settings,
                          transport=make_transport(transport, kafka_bootstrap, client_id=f"{app.producer}-{name}"))

    a, b = worker("a"), worker("b")
    restored: dict[int, int] = defaultdict(int)  # changelog records b's restores read, per partition
    read = b.transport.read_partition

    async def counting(tp: TopicPartition, start: int, max_records: int | None = None) -> list[Record]:
        got = await read(tp, start, max_records)
        restored[tp.partition] += len(got)
        return got

    b.transport.read_partition = counting  # type: ignore[method-assign]
    sources = [TopicPartition(sc.source, p) for p in range(PARTITIONS)]

    ends: dict[TopicPartition, int] = {}

    def send(records: list[Raw]) -> None:
        for rec, offset in zip(records, produce(kafka_bootstrap, sc.source, records), strict=True):
            tp = sources[rec.partition]
            ends[tp] = max(ends.get(tp, 0), offset + 1)

    def caught_up(*workers: Worker) -> Any:
        """Every source partition committed up to the end of what was sent."""
        return lambda: all(max(w.metrics.committed_offsets.get(str(tp), 0) for w in workers) >= end
                           for tp, end in ends.items())

    sent: list[Raw] = []
    await a.start()
    await b.start()
    try:
        await run_until([a, b], lambda: a.metrics.ready and b.metrics.ready and len(a._assigned) == 1
                        and len(b._assigned) == 1, within_s=60, what="a and b own a partition each")
        pa = next(iter(a._assigned)).partition
        on_a = [c for c in CELLS if on(c) == pa]
        marked, rest = on_a[0], on_a[1:]
        # Phase 1: both partitions, 20 fills a cell; an aborted state record of `marked`, then 20
        # more fills a cell except `marked`, while b follows partition pa's changelog.
        first = fills(CELLS, 20)
        send(first)
        sent += first
        await run_until([a, b], caught_up(a, b), within_s=120, what="phase 1a committed")
        _aborted_state_record(kafka_bootstrap, sc.changelog, pa, marked, app.producer)
        more = fills([c for c in CELLS if c != marked], 20)  # none for `marked` until b owns it
        send(more)
        sent += more
        await run_until([a, b], caught_up(a, b), within_s=120, what="phase 1b committed")
        last = max(r.offset for r in read_all(kafka_bootstrap, sc.changelog) if r.partition == pa)
        await run_until([a, b], lambda: b._standby.stores[pa].changelog_offset == last,
                        within_s=60, what="b's standby of partition pa at the changelog's end")
        assert b.metrics.standby_partitions == 1 and b.metrics.standby_records > 0

        # Phase 2: b's standby is held back; a writes a tail (none of it for `marked`), then leaves.
        frozen = True
        step, store_for = b._standby.step, b._standby.store_for
        handed: dict[int, int] = {}

        async def held_step(owned: Any) -> None:
            if not frozen:
                await step(owned)

        def handing(partition: int) -> PartitionStore:
            nonlocal frozen
            store = store_for(partition)
            handed.setdefault(partition, store.changelog_offset)
            frozen = False
            return store

        b._standby.step = held_step  # type: ignore[method-assign]
        b._standby.store_for = handing  # type: ignore[method-assign]
        tail = fills(rest, 5)
        send(tail)
        sent += tail
        await run_until([a], caught_up(a, b), within_s=120, what="the tail committed by a")
    finally:
        await a.stop()
    try:
        restored.clear()
        await run_until([b], lambda: b.metrics.ready and len(b._assigned) == PARTITIONS,
                        within_s=60, what="b owns both partitions, restored")
        changelog = [r for r in read_all(kafka_bootstrap, sc.changelog) if r.partition == pa]
        behind = [r for r in changelog if r.offset > handed[pa]]
        assert handed[pa] == last  # the standby was warm up to the tail
        assert restored[pa] == len(behind) > 0  # the restore read the tail, nothing before it
        assert len(behind) < len(changelog) // 4, (len(behind), len(changelog))  # and that is a small part

        # Phase 3: b owns both; new fills (also of `marked`), and every first-phase id re-sent.
        after = fills(CELLS, 3)
        send([*after, *first])
        deduped = b.metrics.deduped
        sent += after
        await run_until([b], caught_up(b), within_s=120, what="phase 3 committed")
        assert b.metrics.deduped - deduped == len(first)
    finally:
        await b.stop()

    # Exact: per cell one value per output id, and the values are -1 .. -n (M) — nothing lost,
    # nothing twice, no aborted record folded (it would shift `marked` by its bogus value).
    cash: dict[str, dict[str, int]] = defaultdict(dict)
    for out in read_all(kafka_bootstrap, sc.output):
        env = out.envelope
        value = NAVUpdateEvent.FromString(env.payload).cash_liquid_usd_micros
        assert cash[env.key].setdefault(env.event_id, value) == value, env.event_id
    for cell in CELLS:
        n = sum(1 for r in sent if r.key == str(cell).encode())
        assert sorted(cash[str(cell)].values()) == [-k * 1_000_000 for k in range(n, 0, -1)], cell


def _aborted_state_record(bootstrap: str, changelog: str, partition: int, key: Key, producer_name: str) -> None:
    """A state record of ``key`` (cash 999) written into the changelog in a transaction that aborts."""
    ts = Timestamp()
    ts.GetCurrentTime()
    record_key, value = key_state_record(key, {"cash": 999}, cause="aborted", producer=producer_name, ts=ts)
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"{changelog}-aborting"})
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(changelog, value, record_key, partition=partition)
    producer.flush(30)
    producer.abort_transaction(30)
