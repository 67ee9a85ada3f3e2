"""The record's path has no call back up: assignment changes come back from ``poll`` as a
``Polled``, folded so that the worker's one reaction (close revoked, restore assigned, then
process) ends where applying every change in order would (docs/adr/0007-record-path.md)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from test_state_longrun import CELL_A, FILLS, NAV, buy, cash_app, cash_of

from pit_streams.runtime.worker import Worker, WorkerSettings
from pit_streams.testing import TestHarness
from pit_streams.transport.base import Fenced, Rebalances, Subscription, TopicPartition
from pit_streams.transport.memory import MemoryBroker, MemoryTransport

A, B = TopicPartition("t", 0), TopicPartition("t", 1)


def test_a_partition_assigned_then_revoked_in_one_poll_is_not_reported_assigned() -> None:
    changes = Rebalances()
    changes.assign([A, B])
    changes.revoke([A, B])
    changes.assign([B])
    polled = changes.take([])
    assert polled.revoked == (A, B)  # any store held from before must go
    assert polled.assigned == (B,)  # only B is ours at the end
    assert polled.joined


def test_a_partition_revoked_then_assigned_is_reported_both_ways() -> None:
    changes = Rebalances()
    changes.revoke([A])
    changes.assign([A])
    polled = changes.take([])
    assert (polled.revoked, polled.assigned) == ((A,), (A,))  # closed, then re-read from the changelog


def test_an_empty_assignment_is_a_join_and_take_starts_afresh() -> None:
    changes = Rebalances()
    assert not changes.pending()
    changes.assign([])
    assert changes.pending()
    first = changes.take([])
    assert first.joined and first.assigned == ()
    second = changes.take([])
    assert not second.joined and not changes.pending()


async def test_a_partition_handed_back_is_restored_with_what_its_other_owner_wrote(tmp_path: Path) -> None:
    """Revoked and assigned in one poll, the store is re-read from the changelog before the
    poll's records: the state another member committed meanwhile is not lost."""
    app = cash_app()
    async with TestHarness(app, data_dir=tmp_path / "a", catalog=False) as h:
        await h.send(FILLS, buy(), key=CELL_A)
        first = h.worker
        other = Worker(app, MemoryTransport(h.broker), WorkerSettings(tmp_path / "b"), h.metrics)
        await other.start()
        h.worker = other
        await h.send(FILLS, buy(), key=CELL_A)  # committed by the other member: cash -2
        await other.stop()
        h.worker = first
        assert isinstance(first.transport, MemoryTransport)
        first.transport.rebalance()  # the group gives the partition back to the first member
        await h.send(FILLS, buy(), key=CELL_A)
        assert cash_of(h, CELL_A) == [-1_000_000, -2_000_000, -3_000_000]


async def test_one_loop_stops_when_asked_and_when_idle(tmp_path: Path) -> None:
    async with TestHarness(cash_app(), data_dir=tmp_path, catalog=False) as h:
        await h.send(FILLS, buy(), key=CELL_A, run=False)
        await h.send(FILLS, buy(), key=CELL_A, run=False)
        assert await h.worker.run(idle_exit_s=0) == 2
        stop = asyncio.Event()
        stop.set()
        await h.send(FILLS, buy(), key=CELL_A, run=False)
        assert await h.worker.run(stop) == 0  # set before the first batch: nothing is polled
        assert len(cash_of(h, CELL_A)) == 2


async def test_a_member_never_reads_a_partition_taken_from_it(tmp_path: Path) -> None:
    """A rewind after the group took a partition away (the revocation not yet polled) must not
    seek it back into this member's reads: two owners would write one store."""
    app = cash_app()
    async with TestHarness(app, catalog=False) as h:
        a = Worker(app, MemoryTransport(h.broker, {0}), WorkerSettings(tmp_path / "a", delivery_retry_backoff_s=0))
        await a.start()
        await h.send(FILLS, buy(), key=CELL_A, run=False)
        await a._turn()  # handled, waiting for its checkpoint
        assert isinstance(a.transport, MemoryTransport)
        a.transport.rebalance(set())  # the group moves partition 0 away from a ...
        h.broker.unwritable.add(NAV)
        await a._commit_waiting()  # ... and the waiting batch's commit fails: the rewind seeks it
        h.broker.unwritable.clear()
        await a._turn()
        assert not a._stores and not a._restores.pending, "a reads partition 0 though it owns nothing"
        await a.stop()


async def test_members_rebalanced_together_end_in_one_generation() -> None:
    # A member whose first poll comes after rebalance() joined by that rebalance: its first poll
    # must not start yet another generation, which would fence the members rebalanced with it.
    broker = MemoryBroker()
    broker.create_topic("t", 2)
    broker.create_topic("t-changelog", 2)
    a, b = MemoryTransport(broker, {0, 1}), MemoryTransport(broker, set())
    for member in (a, b):
        await member.start(Subscription(["t"], "g"))
    await a.poll(10, 0)
    a.rebalance({0})  # b joins: the group splits the partitions in one rebalance
    b.rebalance({1})
    for member in (a, b):
        await member.poll(10, 0)
    for member, tp in ((a, A), (b, B)):
        await member.commit("t-changelog", {}, {tp: 0})  # neither is fenced
    a.rebalance({0})
    with pytest.raises(Fenced):  # ... while a transaction begun before a rebalance still is
        await b.commit("t-changelog", {}, {B: 0})
