"""A partition store restores a chunk per turn of the loop, between polls (runtime/restore.py).

The attack: a partition move whose changelog is large. Restored in one call, the member stops
polling for as long as the restore takes — past ``max.poll.interval.ms`` the group drops it, its
partitions move again and the next owner starts the same restore (issue 12: 10 M ids took about
a minute per partition) — and every other partition waits too, with ``/readyz`` green.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pit.events.v1.events_pb2 import NAVUpdateEvent, TradeFillEvent

import pit_streams
from pit_streams.contract import Key, murmur2_partition
from pit_streams.runtime.worker import Worker, WorkerSettings
from pit_streams.testing import TestHarness
from pit_streams.transport.base import Polled, Record, TopicPartition
from pit_streams.transport.memory import MemoryTransport

FILLS = "pit.v1.exec.trade_fill"
NAV = "pit.v1.acct.nav_update"


def app() -> pit_streams.App:
    app = pit_streams.App("restore-steps", version="1.0.0")

    @app.handler(FILLS, TradeFillEvent, emits={NAV: NAVUpdateEvent})
    async def on_fill(fill: TradeFillEvent, ctx: pit_streams.Context) -> None:
        cash = ctx.state.get("cash") - fill.qty * fill.price_micros
        ctx.state.put("cash", cash)
        ctx.emit(NAV, NAVUpdateEvent(cash_liquid_usd_micros=cash))

    return app


def key_on(partition: int) -> Key:
    return next(k for i in range(100) if murmur2_partition(str(k := Key("demo", "alpha", f"{i:04d}")).encode(), 2)
                == partition)


def buy() -> TradeFillEvent:
    return TradeFillEvent(instrument="BTC", qty=1, price_micros=1_000_000)


class Recording(MemoryTransport):
    """The memory transport, noting each poll and each changelog read in order."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.calls: list[tuple[str, int]] = []  # ("poll", records) / ("read", records)

    async def poll(self, max_records: int, timeout_s: float) -> Polled:
        polled = await super().poll(max_records, timeout_s)
        self.calls.append(("poll", len(polled.records)))
        return polled

    async def read_partition(self, tp: TopicPartition, start_offset: int, max_records: int | None = None) -> list[
            Record]:
        got = await super().read_partition(tp, start_offset, max_records)
        if tp.partition == 0:
            self.calls.append(("read", len(got)))
        return got


async def test_a_large_restore_runs_between_polls_while_other_partitions_flow(tmp_path: Path) -> None:
    p0, p1 = key_on(0), key_on(1)
    async with TestHarness(app(), partitions=2, data_dir=tmp_path / "old", catalog=False) as h:
        first = [await h.send(FILLS, buy(), key=p0) for _ in range(40)]  # a checkpoint each
        changelog = [r for r in h.broker.records(h.app.changelog_topic) if r.partition == 0]
        assert len(changelog) >= 80

        # The partitions move to a worker with an empty disk that reads 10 changelog records a turn.
        transport = Recording(h.broker)
        moved = Worker(h.app, transport, WorkerSettings(tmp_path / "new", restore_chunk_records=10))
        await moved.start()
        try:
            h.broker.append(FILLS, first[0].value, first[0].key, [])  # a restored id, re-sent
            await h.send(FILLS, buy(), key=p0, run=False)
            await h.send(FILLS, buy(), key=p1, run=False)
            ready_seen: list[tuple[bool, bool]] = []  # (restoring, ready) after each turn
            processed_while_restoring = 0
            for _ in range(100):
                await moved.run_once()
                ready_seen.append((moved.restoring, moved.metrics.ready))
                if moved.restoring:
                    processed_while_restoring = moved.metrics.processed
                elif moved.metrics.processed + moved.metrics.deduped >= 3:
                    break
        finally:
            await moved.stop()

    reads = [n for kind, n in transport.calls if kind == "read"]
    assert sum(reads) == len(changelog) and max(reads) <= 10  # memory holds a chunk, not the partition
    # Every chunk after the first comes after a poll: the member never stops polling for a restore.
    kinds = [kind for kind, _ in transport.calls]
    assert all(kinds[i - 1] == "poll" for i, kind in enumerate(kinds) if kind == "read" and i > 0)
    # Partition 1 (nothing to restore) was processed while partition 0 still restored...
    assert processed_while_restoring == 1
    # ... and not ready meant not ready: /readyz stays 503 until every store is restored.
    while_restoring = [ready for restoring, ready in ready_seen if restoring]
    assert len(while_restoring) >= 8 and not any(while_restoring)
    assert ready_seen[-1] == (False, True)
    # Nothing held back during the restore was lost, and the restored marks still drop the re-sent id.
    assert moved.metrics.processed == 2 and moved.metrics.deduped == 1

