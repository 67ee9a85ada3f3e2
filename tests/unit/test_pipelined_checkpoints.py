"""Pipelined checkpoints (runtime/checkpoint.py): the loop handles batch N+1 while batch N's
checkpoint is in flight, so N+1 must see N's state and dedupe marks before they reach the store,
and must be dropped with N when N's checkpoint fails.

One record per batch makes every batch the in-flight one's successor.
"""

from __future__ import annotations

from pathlib import Path

from pit.events.v1.events_pb2 import NAVUpdateEvent, TradeFillEvent

import pit_streams
from pit_streams.contract import Key, murmur2_partition
from pit_streams.runtime.worker import Worker, WorkerSettings
from pit_streams.testing import TestHarness
from pit_streams.transport.base import TopicPartition
from pit_streams.transport.memory import MemoryTransport

FILLS = "pit.v1.exec.trade_fill"
NAV = "pit.v1.acct.nav_update"


def app() -> pit_streams.App:
    app = pit_streams.App("pipelined", version="1.0.0")

    @app.handler(FILLS, TradeFillEvent, emits={NAV: NAVUpdateEvent})
    async def on_fill(fill: TradeFillEvent, ctx: pit_streams.Context) -> None:
        cash = ctx.state.get("cash") - fill.qty * fill.price_micros
        ctx.state.put("cash", cash)
        ctx.emit(NAV, NAVUpdateEvent(cash_liquid_usd_micros=cash))

    return app


def buy(qty: int) -> TradeFillEvent:
    return TradeFillEvent(instrument="BTC", qty=qty, price_micros=1)


def one_record_batches(h: TestHarness, tmp_path: Path) -> None:
    h.worker.settings = WorkerSettings(tmp_path, batch_size=1, delivery_retry_backoff_s=0)


async def test_the_next_batch_reads_the_state_of_the_batch_in_flight(tmp_path: Path) -> None:
    async with TestHarness(app(), data_dir=tmp_path, catalog=False) as h:
        one_record_batches(h, tmp_path)
        for qty in (1, 2, 3, 4):
            await h.send(FILLS, buy(qty), run=False)
        await h.run()
        assert [n.cash_liquid_usd_micros for n in h.outputs(NAV, NAVUpdateEvent)] == [-1, -3, -6, -10]


async def test_a_duplicate_of_the_batch_in_flight_is_dropped(tmp_path: Path) -> None:
    async with TestHarness(app(), data_dir=tmp_path, catalog=False) as h:
        one_record_batches(h, tmp_path)
        first = await h.send(FILLS, buy(1), run=False)
        h.broker.append(FILLS, first.value, first.key, [])  # redelivered right behind it
        await h.send(FILLS, buy(2), run=False)
        await h.run()
        assert [n.cash_liquid_usd_micros for n in h.outputs(NAV, NAVUpdateEvent)] == [-1, -3]
        assert h.metrics.deduped == 1


async def test_a_failed_checkpoint_takes_the_batch_handled_on_top_of_it_along(tmp_path: Path) -> None:
    p0, p1 = key_on(0), key_on(1)
    async with TestHarness(app(), partitions=2, data_dir=tmp_path, catalog=False) as h:
        one_record_batches(h, tmp_path)
        await h.send(FILLS, buy(1), key=p0)
        h.broker.unwritable.add(NAV)  # the next checkpoints fail: their outputs are refused
        await h.send(FILLS, buy(2), key=p0, run=False)
        await h.send(FILLS, buy(3), key=p1, run=False)
        await h.worker._turn()  # partition 0's fill: its checkpoint begins (and will fail) ...
        await h.worker._turn()  # ... while partition 1's is handled
        assert h.broker.committed[(h.app.group, TopicPartition(FILLS, 0))] == 1  # only the first batch
        h.broker.unwritable.clear()
        await h.run()
        # Both are read again: the failed batch and the one handled on top of it, whatever its partition.
        cash = {env.key: n.cash_liquid_usd_micros for env, n in h.outputs(NAV)}
        assert cash == {str(p0): -3, str(p1): -3} and len(h.outputs(NAV)) == 3
        assert h.broker.committed[(h.app.group, TopicPartition(FILLS, 1))] == 1


def key_on(partition: int) -> Key:
    return next(k for i in range(100) if murmur2_partition(str(k := Key("demo", "alpha", f"{i:04d}")).encode(), 2)
                == partition)


async def test_a_stop_in_the_batch_discarded_with_a_failed_checkpoint_strands_nothing(tmp_path: Path) -> None:
    stopping = pit_streams.App("pipelined-stop", version="1.0.0", on_handler_error="stop")

    @stopping.handler(FILLS, TradeFillEvent, emits={NAV: NAVUpdateEvent})
    async def on_fill(fill: TradeFillEvent, ctx: pit_streams.Context) -> None:
        if fill.qty == 99:
            raise ValueError("a record this handler refuses")
        ctx.emit(NAV, NAVUpdateEvent(cash_liquid_usd_micros=fill.qty))

    async with TestHarness(stopping, data_dir=tmp_path, catalog=False) as h:
        one_record_batches(h, tmp_path)
        await h.send(FILLS, buy(1), run=False)
        await h.send(FILLS, buy(99), run=False)
        h.broker.unwritable.add(NAV)
        await h.worker._turn()  # the first fill's checkpoint begins (and will fail) ...
        await h.worker._turn()  # ... while the second stops the partition, then goes with it
        h.broker.unwritable.clear()
        await h.run()
        # The first fill is read again and committed; only then does the second stop the partition.
        assert [n.cash_liquid_usd_micros for n in h.outputs(NAV, NAVUpdateEvent)] == [1]
        assert h.broker.committed[(h.app.group, TopicPartition(FILLS, 0))] == 1
        assert not h.metrics.healthy and "a record this handler refuses" in h.metrics.unhealthy_reason


async def test_a_batch_waiting_for_its_checkpoint_is_dropped_when_the_group_moves(tmp_path: Path) -> None:
    """A handled batch waits for the next poll to begin its checkpoint. If that poll reports the
    partition moved, another member may have committed the same records meanwhile: committing the
    waiting batch's state over theirs would roll the cell back. It is dropped and read again."""
    async with TestHarness(app(), data_dir=tmp_path / "a", catalog=False) as h:
        one_record_batches(h, tmp_path / "a")
        first = h.worker
        await h.send(FILLS, buy(1), run=False)
        await first._turn()  # handled (cash -1), its checkpoint not begun
        other = Worker(first.app, MemoryTransport(h.broker), WorkerSettings(tmp_path / "b"), h.metrics)
        await other.start()
        h.worker = other
        await h.send(FILLS, buy(2))  # the other member commits both fills meanwhile: cash -3
        await other.stop()
        h.worker = first
        assert isinstance(first.transport, MemoryTransport)
        first.transport.rebalance()  # and the partition comes back
        await h.send(FILLS, buy(4))
        assert [n.cash_liquid_usd_micros for n in h.outputs(NAV, NAVUpdateEvent)] == [-1, -3, -7]
        assert h.broker.committed[(h.app.group, TopicPartition(FILLS, 0))] == 3


def collecting_for(h: TestHarness, tmp_path: Path, *, interval_s: float = 3600.0, batch_size: int = 100) -> None:
    """A batch takes in polls for ``interval_s`` (an hour: only its size or an idle poll ends it)."""
    h.worker.settings = WorkerSettings(tmp_path, batch_size=batch_size, checkpoint_interval_s=interval_s,
                                       delivery_retry_backoff_s=0)


async def test_a_batch_takes_in_later_polls_until_its_checkpoint_is_due(tmp_path: Path) -> None:
    """ADR 0001, "A checkpoint per interval": polls between checkpoints follow the handlers. The
    second poll's records join the waiting batch — reading its state and dedupe marks — and one
    checkpoint makes both durable."""
    async with TestHarness(app(), data_dir=tmp_path, catalog=False) as h:
        collecting_for(h, tmp_path)
        first = await h.send(FILLS, buy(1), run=False)
        await h.worker._turn()
        h.broker.append(FILLS, first.value, first.key, [])  # redelivered, a poll later
        await h.send(FILLS, buy(2), run=False)
        await h.worker._turn()
        assert h.metrics.commits == 0 and (h.app.group, TopicPartition(FILLS, 0)) not in h.broker.committed
        await h.run()  # an empty poll: idle, so the waiting batch is committed at once
        assert h.metrics.commits == 1
        assert h.broker.committed[(h.app.group, TopicPartition(FILLS, 0))] == 3
        assert [n.cash_liquid_usd_micros for n in h.outputs(NAV, NAVUpdateEvent)] == [-1, -3]
        assert h.metrics.deduped == 1


async def test_a_batch_is_due_once_it_holds_batch_size_records(tmp_path: Path) -> None:
    async with TestHarness(app(), data_dir=tmp_path, catalog=False) as h:
        collecting_for(h, tmp_path, batch_size=2)
        await h.send(FILLS, buy(1), run=False)
        await h.worker._turn()  # one record: it waits for more
        for qty in (2, 3):
            await h.send(FILLS, buy(qty), run=False)
        await h.worker._turn()  # it takes in one more, all it has room for: due
        await h.worker._turn()  # its checkpoint begins, the third is handled meanwhile
        assert h.metrics.commits == 1
        assert h.broker.committed[(h.app.group, TopicPartition(FILLS, 0))] == 2
        await h.run()
        assert [n.cash_liquid_usd_micros for n in h.outputs(NAV, NAVUpdateEvent)] == [-1, -3, -6]


async def test_a_batch_is_due_once_its_interval_is_up(tmp_path: Path) -> None:
    async with TestHarness(app(), data_dir=tmp_path, catalog=False) as h:
        collecting_for(h, tmp_path, interval_s=0.0)  # due as soon as handled: a checkpoint per poll
        await h.send(FILLS, buy(1), run=False)
        await h.worker._turn()
        await h.send(FILLS, buy(2), run=False)
        await h.worker._turn()
        assert h.metrics.commits == 1
        assert h.broker.committed[(h.app.group, TopicPartition(FILLS, 0))] == 1


async def test_a_batch_of_several_polls_is_dropped_whole_when_the_group_moves(tmp_path: Path) -> None:
    """Every poll's records of a batch whose checkpoint has not begun are read again after a
    rebalance, and none of its state survives into the store: re-reading applies each once."""
    async with TestHarness(app(), data_dir=tmp_path, catalog=False) as h:
        collecting_for(h, tmp_path)
        for qty in (1, 2):
            await h.send(FILLS, buy(qty), run=False)
            await h.worker._turn()
        assert isinstance(h.worker.transport, MemoryTransport)
        h.worker.transport.rebalance()
        await h.send(FILLS, buy(4))
        assert [n.cash_liquid_usd_micros for n in h.outputs(NAV, NAVUpdateEvent)] == [-1, -3, -7]
        assert h.broker.committed[(h.app.group, TopicPartition(FILLS, 0))] == 3


async def test_a_failed_checkpoint_of_a_batch_of_several_polls_reads_every_poll_again(tmp_path: Path) -> None:
    async with TestHarness(app(), data_dir=tmp_path, catalog=False) as h:
        collecting_for(h, tmp_path, batch_size=2)
        for qty in (1, 2):  # two polls, one batch
            await h.send(FILLS, buy(qty), run=False)
            await h.worker._turn()
        h.broker.unwritable.add(NAV)  # its checkpoint fails: the outputs are refused
        await h.send(FILLS, buy(3), run=False)
        await h.worker._turn()  # begins (and fails) while the third fill is handled on top of it
        assert h.metrics.commits == 0 and (h.app.group, TopicPartition(FILLS, 0)) not in h.broker.committed
        h.broker.unwritable.clear()
        await h.run()
        assert [n.cash_liquid_usd_micros for n in h.outputs(NAV, NAVUpdateEvent)] == [-1, -3, -6]
        assert h.broker.committed[(h.app.group, TopicPartition(FILLS, 0))] == 3
