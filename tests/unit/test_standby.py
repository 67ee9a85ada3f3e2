"""Warm standby stores (``runtime/standby.py``, docs/adr/0012-standby-stores.md), turn by turn over
the memory transport, two members of one group.

The attack: a partition moves to a worker that must fold its whole changelog partition before its
first record (issue 12: ~48 s for 10 M ids). A standby worker keeps the store warm from the
changelog while another member owns the partition, so the move reads only the tail. Each way that
could go wrong is a record processed against a store that misses something the changelog holds:
a mark (a duplicate answered), a state change (a wrong value), or a long-run rule of ADR 0003 (a
resurrected entry, an expired mark honoured, a re-made mark forgotten).
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from test_state_longrun import FILLS, NAV, buy, cash_app

import pit_streams
from pit_streams.contract import Key, murmur2_partition
from pit_streams.runtime.worker import Worker, WorkerSettings
from pit_streams.testing import Sent, TestHarness
from pit_streams.transport.base import Followed, Record, TopicPartition
from pit_streams.transport.memory import MemoryBroker, MemoryTransport


def key_on(partition: int, partitions: int = 2) -> str:
    return next(k for i in range(100) if murmur2_partition((k := str(Key("demo", "alpha", f"{i:04d}"))).encode(),
                                                           partitions) == partition)


K0, K1 = key_on(0), key_on(1)


class Counting(MemoryTransport):
    """The memory transport, counting the changelog records each kind of read hands out."""

    def __init__(self, broker: MemoryBroker, partitions: set[int] | None = None) -> None:
        super().__init__(broker, partitions)
        self.restored: list[Record] = []  # read_partition: a restore of an owned store
        self.followed: list[Record] = []  # read_followed: standby stores

    async def read_partition(self, tp: TopicPartition, start_offset: int, max_records: int | None = None) -> list[
            Record]:
        got = await super().read_partition(tp, start_offset, max_records)
        self.restored.extend(got)
        return got

    async def read_followed(self, starts: Any, max_records: int) -> Followed:
        got = await super().read_followed(starts, max_records)
        self.followed.extend(got.records)
        return got


async def member(app: pit_streams.App, broker: MemoryBroker, data_dir: Path, partitions: set[int], *,
                 standby: bool = False, chunk: int = 1000) -> Worker:
    worker = Worker(app, Counting(broker, partitions), WorkerSettings(data_dir, standby=standby,
                                                                     standby_chunk_records=chunk))
    await worker.start()
    return worker


def counting(worker: Worker) -> Counting:
    assert isinstance(worker.transport, Counting)
    return worker.transport


async def turns(*workers: Worker, n: int = 30) -> None:
    """Every worker's loop, a turn each in turn, ``n`` times: each records whatever is there."""
    for _ in range(n):
        for w in workers:
            await w.run_once()


def changelog(broker: MemoryBroker, app: pit_streams.App, partition: int) -> list[Record]:
    return [r for r in broker.records(app.changelog_topic) if r.partition == partition]


def navs(h: TestHarness, key: str) -> list[tuple[str, int]]:
    """(causing input id, cash) of every NAV output for ``key``, in order."""
    return [(env.causation_id, n.cash_liquid_usd_micros) for env, n in h.outputs(NAV) if env.key == key]


async def test_a_moved_partition_reads_only_the_tail_and_drops_ids_only_the_standby_had(tmp_path: Path) -> None:
    app = cash_app()
    async with TestHarness(app, partitions=2, catalog=False) as h:  # its own worker never runs
        a = await member(app, h.broker, tmp_path / "a", {0, 1})
        for _ in range(3):  # a checkpoint each
            await h.send(FILLS, buy(), key=K0, run=False)
            await h.send(FILLS, buy(), key=K1, run=False)
            await turns(a, n=2)
        early = h.sent[:]
        b = await member(app, h.broker, tmp_path / "b", set(), standby=True)
        await b.run_once()  # b joins, owning nothing ...
        counting(a).rebalance()  # ... and the group rebalances: a keeps both partitions
        await turns(a, b)
        # The standby follows the changelog: each store reflects its partition's last record.
        for p in (0, 1):
            assert b._standby.stores[p].changelog_offset == changelog(h.broker, app, p)[-1].offset
        assert b.metrics.standby_lag_records == 0 and b.metrics.standby_partitions == 2
        for _ in range(2):
            await h.send(FILLS, buy(), key=K0, run=False)
            await h.send(FILLS, buy(), key=K1, run=False)
            await turns(a, b, n=2)
        following = len(h.broker.records(app.changelog_topic))
        assert len(counting(b).followed) == following  # each changelog record read once, by the standby
        # a goes on while b does not get to follow (a tail for the move to read) ...
        await h.send(FILLS, buy(), key=K0, run=False)
        await turns(a)
        tail = len(h.broker.records(app.changelog_topic)) - following
        assert tail > 0
        # ... then leaves: b is given both partitions.
        await a.stop()
        counting(b).rebalance({0, 1})
        await b.run_once()
        assert not b.restoring and b.metrics.ready
        assert len(counting(b).restored) == tail  # the tail only: every store was warm
        # Ids a processed (which b read only as a standby) are dropped; new ones processed once.
        b_before = b.metrics.processed
        for sent in early:
            _resend(h, sent)
        await h.send(FILLS, buy(), key=K0, run=False)
        await h.send(FILLS, buy(), key=K1, run=False)
        await turns(b, n=3)
        await b.stop()
    assert b.metrics.deduped == len(early) and b.metrics.processed - b_before == 2
    # One output per distinct input, and the state is the standby's: cash counts every fill once.
    assert [c for _, c in navs(h, K0)] == [-1_000_000 * n for n in range(1, 8)]
    assert [c for _, c in navs(h, K1)] == [-1_000_000 * n for n in range(1, 7)]


async def test_standby_work_waits_for_the_restores_of_owned_partitions(tmp_path: Path) -> None:
    """Owned partitions come first: while one of them restores, the standby reads nothing."""
    app = cash_app()
    async with TestHarness(app, partitions=2, catalog=False) as h:
        a = await member(app, h.broker, tmp_path / "a", {0, 1})
        for _ in range(5):
            await h.send(FILLS, buy(), key=K0, run=False)
            await h.send(FILLS, buy(), key=K1, run=False)
            await turns(a)
        counting(a).rebalance({0})
        b = Worker(app, Counting(h.broker, {1}), WorkerSettings(tmp_path / "b", standby=True, restore_chunk_records=1))
        await b.start()
        await b.run_once()  # joins owning partition 1, whose restore takes a record a turn
        restoring = 0
        while b.restoring:
            assert counting(b).followed == []
            await b.run_once()
            restoring += 1
        assert restoring >= 10
        await turns(a, b, n=2)
        assert len(counting(b).followed) == len(changelog(h.broker, app, 0)) and b.metrics.standby_lag_records == 0
        await a.stop()
        await b.stop()


async def test_a_store_given_up_mid_restore_is_followed_from_its_own_offset(tmp_path: Path) -> None:
    """Owned for a while, a store moves on without the follower (here over two checkpoints, while
    another partition still restores, so no standby turn comes between). Revoked, both stores stay
    as standbys and are followed from their own offsets, not from where the follower last was.

    Read on from the follower's old position instead, the standby would apply an older state record
    over a newer one (a record a turn here) while the store's changelog offset says it is current,
    and a move back would restore nothing and answer from the older state."""
    app = cash_app()
    async with TestHarness(app, partitions=2, catalog=False) as h:
        b = Worker(app, Counting(h.broker, set()), WorkerSettings(
            tmp_path / "b", standby=True, standby_chunk_records=1, restore_chunk_records=1, batch_size=1))
        await b.start()
        await b.run_once()  # b joins first, owning nothing; a joins after (the newest generation)
        a = await member(app, h.broker, tmp_path / "a", {0, 1})
        await h.send(FILLS, buy(), key=K0, run=False)
        await turns(a, b, n=6)  # a record a turn: b's standby follows a's checkpoint of partition 0
        assert b._standby.stores[0].changelog_offset == changelog(h.broker, app, 0)[-1].offset
        for _ in range(10):  # partition 1 grows a tail b has not followed
            await h.send(FILLS, buy(), key=K1, run=False)
            await turns(a)
        await h.send(FILLS, buy(), key=K0, run=False)
        await h.send(FILLS, buy(), key=K0, run=False)
        counting(a).rebalance(set())
        counting(b).rebalance({0, 1})
        await turns(b, n=2)  # partition 0 ready at once: one fill a turn, two checkpoints; 1 restores
        assert b.restoring and b.metrics.processed == 2
        owned_to = changelog(h.broker, app, 0)[-1].offset
        counting(b).rebalance(set())  # given up mid-restore of partition 1
        counting(a).rebalance({0, 1})
        await turns(b, n=1)
        assert b._standby.stores.keys() == {0, 1} and b._standby.stores[0].changelog_offset == owned_to
        counting(a).rebalance({1})
        counting(b).rebalance({0})  # partition 0 comes back before a has written to it
        await turns(a, b, n=2)
        await h.send(FILLS, buy(), key=K0, run=False)
        await turns(a, b, n=2)
        await a.stop()
        await b.stop()
    assert [c for _, c in navs(h, K0)] == [-1_000_000 * n for n in range(1, 5)]
    assert [c for _, c in navs(h, K1)] == [-1_000_000 * n for n in range(1, 11)]


async def test_a_standby_that_fell_behind_obeys_the_long_run_rules_as_a_same_disk_restart(tmp_path: Path) -> None:
    """While the standby is away, state is deleted, marks expire and are tombstoned, a mark is
    made again after its TTL, and the cleaner removes superseded records and the tombstones
    (delete.retention.ms passed). The returning standby reads on from its offset, as a same-disk
    restart does (ADR 0003): nothing deleted comes back, the expired mark whose tombstone it never
    saw is not honoured, the mark made again is."""
    app = cash_app(dedupe_ttl=timedelta(seconds=60))
    start = int(time.time() * 1000)
    cell = key_on(0, 1)
    async with TestHarness(app, partitions=1, catalog=False) as h:
        b = await member(app, h.broker, tmp_path / "b", set(), standby=True)
        await b.run_once()
        a = await member(app, h.broker, tmp_path / "a", {0})
        eth = await h.send(FILLS, buy(3, "ETH"), key=cell, ts=_ts(start), run=False)
        doge = await h.send(FILLS, buy(1, "DOGE"), key=cell, ts=_ts(start), run=False)
        await turns(a, b, n=3)
        assert b.metrics.standby_lag_records == 0
        await b.stop()  # away: its store stays on disk at its changelog offset
        await h.send(FILLS, buy(-3, "ETH"), key=cell, ts=_ts(start + 1_000), run=False)  # ETH deleted
        await turns(a, n=2)
        # Event time passes the TTL: a's sweep tombstones the expired mark records ...
        await h.send(FILLS, buy(1, "SOL"), key=cell, ts=_ts(start + 120_000), run=False)
        await turns(a, n=2)
        _resend(h, doge)  # ... and an expired id is processed again (by design of the TTL): a new mark
        await turns(a, n=2)
        assert a.metrics.processed == 5
        assert any(r.value is None for r in h.broker.records(app.changelog_topic))
        h.broker.compact(app.changelog_topic)  # the cleaner: superseded records and tombstones gone
        b = await member(app, h.broker, tmp_path / "b", set(), standby=True)
        await b.run_once()
        counting(a).rebalance()
        await turns(a, b, n=3)
        assert b.metrics.standby_lag_records == 0
        await a.stop()
        counting(b).rebalance({0})
        await b.run_once()
        assert not b.restoring and counting(b).restored == []  # the standby was current
        await h.send(FILLS, buy(1, "SOL"), key=cell, ts=_ts(start + 121_000), run=False)
        _resend(h, doge)  # its mark made again after the TTL holds: a duplicate
        _resend(h, eth)  # expired, its tombstone never seen by b: processed again, as it would be on a
        await turns(b, n=3)
        await b.stop()
    assert b.metrics.deduped == 1 and b.metrics.processed == 2
    # (cash, open positions) after the move: the new SOL fill sees DOGE and SOL only (ETH, deleted
    # while b was away, is not back), then the expired ETH fill opens ETH again.
    after = [(nav.cash_liquid_usd_micros, nav.nav_usd_micros) for _, nav in h.outputs(NAV)][-2:]
    assert after == [(-4_000_000, 2), (-7_000_000, 3)]



class Exclusive:
    """Checks, at every follower read and every turn, that no partition's store is both the
    owner's (in use or restoring) and a standby's: the follower and the owner path must never
    write one store (or one RocksDB directory) at once."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.reads = 0
        transport = counting(worker)
        read = transport.read_followed

        async def checked(starts: Any, max_records: int) -> Followed:
            owned = self.owned()
            assert not {tp.partition for tp in starts} & owned, (sorted(starts), owned)
            self.reads += 1
            return await read(starts, max_records)

        transport.read_followed = checked  # type: ignore[method-assign]

    def owned(self) -> set[int]:
        w = self.worker
        return set(w._stores) | set(w._restores.pending) | {tp.partition for tp in w._assigned}

    def check(self) -> None:
        w = self.worker
        standby = w._standby.stores
        assert not set(standby) & self.owned(), (sorted(standby), self.owned())
        owner_side = [*w._stores.values(), *(r.store for r in w._restores.pending.values())]
        paths = [st.path for st in [*owner_side, *standby.values()]]
        assert len(paths) == len(set(paths)), paths  # one open handle per directory
        assert not {id(st) for st in owner_side} & {id(st) for st in standby.values()}


async def test_no_store_is_written_by_its_owner_and_the_follower_at_once(tmp_path: Path) -> None:
    """Partitions move back and forth between two standby members (mid-restore too, with a chunk
    of one record a turn) while fills flow; after every turn and at every follower read, a
    partition is owned or followed, never both. The state is exact at the end."""
    app = cash_app()
    layouts = [({0, 1}, set()), ({0}, {1}), (set(), {0, 1}), ({1}, {0}), ({0, 1}, set()), ({1}, {0})]
    async with TestHarness(app, partitions=2, catalog=False) as h:
        a = Worker(app, Counting(h.broker, set()), WorkerSettings(
            tmp_path / "a", standby=True, standby_chunk_records=2, restore_chunk_records=1, batch_size=1))
        b = Worker(app, Counting(h.broker, set()), WorkerSettings(
            tmp_path / "b", standby=True, standby_chunk_records=2, restore_chunk_records=1, batch_size=1))
        await a.start()
        await b.start()
        checks = [Exclusive(a), Exclusive(b)]
        n = {K0: 0, K1: 0}
        for to_a, to_b in layouts:
            counting(a).rebalance(to_a)
            counting(b).rebalance(to_b)
            for _ in range(3):
                for key in (K0, K1):
                    await h.send(FILLS, buy(), key=key, run=False)
                    n[key] += 1
                for _ in range(4):
                    for w in (a, b):
                        await w._turn()
                        for c in checks:
                            c.check()
        counting(a).rebalance({0, 1})
        counting(b).rebalance(set())
        await turns(a, b, n=40)
        await a.stop()
        await b.stop()
    assert all(c.reads > 0 for c in checks)
    for key in (K0, K1):  # each fill's effect once, in order: nothing applied twice or lost
        ids: dict[str, int] = {}
        for cause, cash in navs(h, key):
            assert ids.setdefault(cause, cash) == cash
        assert sorted(ids.values()) == [-1_000_000 * i for i in range(n[key], 0, -1)]


async def test_tenants_sharing_ids_and_state_names_stay_apart_through_a_standby(tmp_path: Path) -> None:
    """Two tenants' cells on one partition, each event id used by both, the same state name in
    both: the standby's copy keeps every mark and state entry under its own tenant, so after the
    move a re-sent id is dropped for its own tenant only and each tenant's cash is its own."""
    app = cash_app()
    cells = {t: next(k for i in range(200) if murmur2_partition(
        (k := str(Key(t, "alpha", f"{i:04d}"))).encode(), 2) == 0) for t in ("acme", "zeta")}
    async with TestHarness(app, partitions=2, catalog=False) as h:
        b = await member(app, h.broker, tmp_path / "b", set(), standby=True)
        await b.run_once()
        a = await member(app, h.broker, tmp_path / "a", {0, 1})
        sent: list[Sent] = []
        for i in range(3):  # the same id in both tenants; acme buys 1, zeta 5
            sent.append(await h.send(FILLS, buy(1), key=cells["acme"], event_id=f"id-{i}", run=False))
            sent.append(await h.send(FILLS, buy(5), key=cells["zeta"], event_id=f"id-{i}", run=False))
            await turns(a, b, n=2)
        sent.append(await h.send(FILLS, buy(1), key=cells["acme"], event_id="id-3", run=False))  # acme only
        await turns(a, b, n=3)
        assert b._standby.stores[0].changelog_offset == changelog(h.broker, app, 0)[-1].offset
        await a.stop()
        counting(b).rebalance({0, 1})
        await b.run_once()
        assert counting(b).restored == []  # the standby held everything
        for again in sent:  # every record again, as the broker redelivers it
            _resend(h, again)
        await h.send(FILLS, buy(5), key=cells["zeta"], event_id="id-3", run=False)  # zeta's id-3 is new
        await turns(b, n=3)
        await b.stop()
    assert b.metrics.deduped == 7 and b.metrics.processed == 1
    assert [c for _, c in navs(h, cells["acme"])] == [-1_000_000 * n for n in range(1, 5)]
    assert [c for _, c in navs(h, cells["zeta"])] == [-5_000_000 * n for n in range(1, 5)]


def _resend(h: TestHarness, sent: Sent) -> None:
    h.broker.append(sent.topic, sent.value, sent.key, [])


def _ts(ms: int) -> Timestamp:
    ts = Timestamp()
    ts.FromMilliseconds(ms)
    return ts
