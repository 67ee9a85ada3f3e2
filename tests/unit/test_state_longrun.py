"""State and dedupe over Kafka's long run, through the in-memory harness: the log cleaner
(``MemoryBroker.compact``: last record per key, tombstones dropped), fresh disks, returning
disks, expired group offsets, TTL re-marks, hostile ids, zombies and poison pills.

Each test is the attack that broke an earlier design (issue 9 / issue 10); the real-broker
versions are in tests/integration/test_longrun.py and ``make chaos``.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from pit.events.v1.events_pb2 import NAVUpdateEvent, TradeFillEvent

import pit_streams
from pit_streams.runtime.worker import Worker, WorkerSettings
from pit_streams.state.store import Mark, PartitionStore, StoreChanges, mark_key
from pit_streams.testing import TestHarness
from pit_streams.transport.memory import MemoryTransport

FILLS = "pit.v1.exec.trade_fill"
NAV = "pit.v1.acct.nav_update"
ECHO = "pit.v1.exec.example_order_echo"
CELL_A = "t/demo/s/alpha/c/0001"
CELL_B = "t/demo/s/alpha/c/0002"


def cash_app(**kwargs: Any) -> pit_streams.App:
    """cash -= qty * price per fill; an entry per instrument that is deleted when it reaches 0."""
    app = pit_streams.App("longrun-test", version="1.0.0", **kwargs)

    @app.handler(FILLS, TradeFillEvent, emits={NAV: NAVUpdateEvent})
    async def on_fill(fill: TradeFillEvent, ctx: pit_streams.Context) -> None:
        if fill.instrument == "BOOM":
            raise RuntimeError("boom")
        cash = ctx.state.get("cash") - fill.qty * fill.price_micros
        ctx.state.put("cash", cash)
        qty = ctx.state.get(f"qty/{fill.instrument}") + fill.qty
        if qty:
            ctx.state.put(f"qty/{fill.instrument}", qty)
        else:
            ctx.state.delete(f"qty/{fill.instrument}")
        ctx.emit(NAV, NAVUpdateEvent(cash_liquid_usd_micros=cash, nav_usd_micros=len(ctx.state.items("qty/"))))

    return app


def buy(qty: int = 1, instrument: str = "BTC") -> TradeFillEvent:
    return TradeFillEvent(instrument=instrument, qty=qty, price_micros=1_000_000)


def cash_of(h: TestHarness, key: str) -> list[int]:
    return [n.cash_liquid_usd_micros for env, n in h.outputs(NAV) if env.key == key]


async def test_state_and_marks_survive_compaction_and_a_fresh_disk(tmp_path: Path) -> None:
    app = cash_app()
    async with TestHarness(app, data_dir=tmp_path / "a", catalog=False) as h:
        sent = []
        for _ in range(4):  # one batch each: every cell's state is rewritten four times
            sent.append(await h.send(FILLS, buy(), key=CELL_A))
            await h.send(FILLS, buy(2), key=CELL_B)
        removed = h.broker.compact(app.changelog_topic)
        assert removed > 0  # the cleaner did remove superseded records
        h.data_dir = tmp_path / "b"  # a new pod: empty data dir, restore from the changelog only
        await h.restart()
        await h.resend(sent[1])  # redelivered inside the TTL: must stay a duplicate
        await h.send(FILLS, buy(), key=CELL_A)
        await h.send(FILLS, buy(2), key=CELL_B)
        assert cash_of(h, CELL_A) == [-1_000_000 * n for n in range(1, 6)]
        assert cash_of(h, CELL_B) == [-2_000_000 * n for n in range(1, 6)]
        assert h.metrics.deduped == 1


async def test_a_returning_disk_does_not_resurrect_state_deleted_while_it_was_away(tmp_path: Path) -> None:
    app = cash_app()
    async with TestHarness(app, data_dir=tmp_path / "a", catalog=False) as h:
        await h.send(FILLS, buy(3, "ETH"), key=CELL_A)  # qty/ETH = 3 on disk a
        h.data_dir = tmp_path / "b"
        await h.restart()
        await h.send(FILLS, buy(-3, "ETH"), key=CELL_A)  # qty/ETH deleted, written by disk b's worker
        for _ in range(3):
            await h.send(FILLS, buy(1, "SOL"), key=CELL_A)
        h.broker.compact(app.changelog_topic)
        h.data_dir = tmp_path / "a"  # disk a comes back, behind the changelog
        await h.restart()
        await h.send(FILLS, buy(1, "SOL"), key=CELL_A)
        [*_, (_, last)] = h.outputs(NAV)
        assert last.nav_usd_micros == 1  # one open position (SOL), no resurrected ETH


async def test_a_mark_made_again_after_its_ttl_is_not_erased_by_the_expiry(tmp_path: Path) -> None:
    app = cash_app(dedupe_ttl=timedelta(seconds=60))
    start = int(time.time() * 1000)
    async with TestHarness(app, data_dir=tmp_path / "a", catalog=False) as h:
        first = await h.send(FILLS, buy(), key=CELL_A, ts=_ts(start))
        # The partition's event time moves past the mark's TTL (ADR 0008: the log is the clock):
        # a redelivery is processed again, by design of the TTL.
        await h.send(FILLS, buy(), key=CELL_B, ts=_ts(start + 120_000))
        await h.resend(first)
        assert h.metrics.processed == 3
        await h.resend(first)  # inside the new mark's TTL: a duplicate
        assert h.metrics.processed == 3 and h.metrics.deduped == 1
        h.broker.compact(app.changelog_topic)
        h.data_dir = tmp_path / "b"
        await h.restart()
        await h.resend(first)
        assert h.metrics.processed == 3 and h.metrics.deduped == 2


def _ts(ms: int) -> Timestamp:
    ts = Timestamp()
    ts.FromMilliseconds(ms)
    return ts


def test_mark_groups_keep_ids_with_any_characters_apart(tmp_path: Path) -> None:
    store = PartitionStore(tmp_path / "p0")
    odd, plain = mark_key("demo", "", "x\ny"), mark_key("demo", "", "x")
    changes = StoreChanges(marks={odd: Mark(1_000, "d", CELL_A), plain: Mark(5_000, "d", CELL_A)},
                           mark_groups={"d/g1": (1_000, [odd]), "d/g2": (5_000, [plain])})
    store.apply(changes, 0)
    expired = store.expired_groups(2_000, 10)
    assert [g.marks for g in expired] == [[odd]]
    store.apply(StoreChanges(), 1, expired)
    assert store.marks([odd, plain]) == [None, Mark(5_000, "d", CELL_A)]


async def test_another_tenants_event_id_neither_suppresses_nor_is_suppressed(tmp_path: Path) -> None:
    async with TestHarness(cash_app(), data_dir=tmp_path, catalog=False) as h:
        await h.send(FILLS, buy(), key="t/evil/s/alpha/c/0001", event_id="shared-id")
        await h.send(FILLS, buy(), key=CELL_A, event_id="shared-id")
        assert cash_of(h, CELL_A) == [-1_000_000] and h.metrics.processed == 2 and h.dead_letters == []
        # Nor do their outputs share an id (a downstream unique constraint on event_id would drop one).
        assert len({env.event_id for env, _ in h.outputs(NAV)}) == 2


async def test_a_repeated_id_with_another_payload_or_key_is_refused_not_dropped(tmp_path: Path) -> None:
    async with TestHarness(cash_app(), data_dir=tmp_path, catalog=False) as h:
        await h.send(FILLS, buy(1), key=CELL_A, event_id="id-1")
        await h.send(FILLS, buy(5), key=CELL_A, event_id="id-1")
        await h.send(FILLS, buy(1), key=CELL_B, event_id="id-1")
        assert [d.reason for d in h.dead_letters] == ["event_id_conflict", "event_id_conflict"]
        assert "key t/demo/s/alpha/c/0001" in h.dead_letters[1].detail
        assert h.metrics.processed == 1


async def test_a_lost_group_offset_resumes_from_the_state(tmp_path: Path) -> None:
    async with TestHarness(cash_app(), data_dir=tmp_path / "a", catalog=False) as h:
        for _ in range(3):
            await h.send(FILLS, buy(), key=CELL_A)
        h.broker.committed.clear()  # offsets.retention.minutes passed while the group was idle
        h.data_dir = tmp_path / "b"
        await h.restart()
        await h.send(FILLS, buy(), key=CELL_A)
        assert cash_of(h, CELL_A) == [-1_000_000, -2_000_000, -3_000_000, -4_000_000]
        assert h.metrics.processed == 4  # history was not applied again


async def test_a_replaced_member_is_fenced_and_its_state_writes_never_land(tmp_path: Path) -> None:
    app = cash_app()
    async with TestHarness(app, data_dir=tmp_path / "a", catalog=False) as h:
        await h.send(FILLS, buy(), key=CELL_A)
        await h.send(FILLS, buy(), key=CELL_A, run=False)
        zombie = h.worker
        held = await zombie.transport.poll(100, 0)  # the zombie holds a batch ...
        assert len(held.records) == 1
        # ... stalls past its session timeout; the group gives the partition to a new member.
        h.worker = Worker(app, MemoryTransport(h.broker), WorkerSettings(tmp_path / "b"), h.metrics)
        await h.worker.start()
        assert await h.run() == 1
        changelog = len(h.broker.records(app.changelog_topic))
        zombie.transport.poll = _returning(held)  # type: ignore[method-assign]
        await zombie.run_once()  # resumes and tries to commit the batch it held
        assert len(h.broker.records(app.changelog_topic)) == changelog  # fenced: no state landed
        await zombie.stop()
        h.broker.compact(app.changelog_topic)
        h.data_dir = tmp_path / "c"
        await h.restart()
        await h.send(FILLS, buy(), key=CELL_A)
        # At least once: the zombie's output may repeat (same event_id); the state never does.
        assert sorted(set(cash_of(h, CELL_A))) == [-3_000_000, -2_000_000, -1_000_000]
        assert cash_of(h, CELL_A)[-1] == -3_000_000


def _returning(polled: Any) -> Any:
    async def poll(max_records: int, timeout_s: float) -> Any:
        return polled

    return poll


async def test_series_state_does_not_reach_its_cells(tmp_path: Path) -> None:
    async with TestHarness(cash_app(), data_dir=tmp_path, catalog=False) as h:
        await h.send(FILLS, buy(1), key="t/demo/s/alpha")
        await h.send(FILLS, buy(2), key=CELL_A)
        await h.send(FILLS, buy(4), key="t/demo/s/alpha")
        assert cash_of(h, "t/demo/s/alpha") == [-1_000_000, -5_000_000]
        assert cash_of(h, CELL_A) == [-2_000_000]


async def test_exactly_once_outputs_appear_only_with_the_commit(tmp_path: Path) -> None:
    app = cash_app(guarantee="exactly_once")
    async with TestHarness(app, data_dir=tmp_path, catalog=False) as h:
        h.broker.unwritable.add(app.changelog_topic)
        await h.send(FILLS, buy(), key=CELL_A, run=False)
        await h.worker.run_once()
        assert h.outputs(NAV) == [] and not h.broker.committed  # aborted: nothing visible
        h.broker.unwritable.clear()
        await h.run()
        assert cash_of(h, CELL_A) == [-1_000_000]


# -- poison pills and bounds (issue 10) ---------------------------------------------------------

def poison_app(**kwargs: Any) -> pit_streams.App:
    attempts: list[int] = []
    app = pit_streams.App("poison-test", version="1.0.0", retry_backoff=timedelta(0), **kwargs)

    @app.handler(FILLS, TradeFillEvent, emits={NAV: NAVUpdateEvent, ECHO: TradeFillEvent})
    async def on_fill(fill: TradeFillEvent, ctx: pit_streams.Context) -> None:
        if fill.instrument == "CANCEL":
            raise asyncio.CancelledError("a library gave up")
        if fill.instrument == "HANG":
            await asyncio.Event().wait()
        if fill.instrument in ("BIG", "LARGE"):
            ctx.emit(ECHO, TradeFillEvent(strategy_ref="x" * (1_100_000 if fill.instrument == "BIG" else 2_000)))
            return
        if fill.instrument == "MUTATE":
            fill.qty += 1000  # a failed attempt's mutation must not reach the retry
            attempts.append(fill.qty)
            if len(attempts) == 1:
                raise RuntimeError("first attempt fails")
        ctx.emit(NAV, NAVUpdateEvent(nav_usd_micros=fill.qty))

    return app


async def test_cancelled_error_and_hanging_handlers_are_handler_failures(tmp_path: Path) -> None:
    app = poison_app(handler_retries=1, handler_timeout=timedelta(milliseconds=50))
    async with TestHarness(app, data_dir=tmp_path, catalog=False) as h:
        await h.send(FILLS, buy(instrument="CANCEL"), run=False)
        await h.send(FILLS, buy(instrument="HANG"), run=False)
        await h.send(FILLS, buy(7), run=False)
        await h.run()
        assert [d.reason for d in h.dead_letters] == ["handler_error", "handler_error"]
        assert "did not return within 0.05 s" in h.dead_letters[1].detail
        assert [n.nav_usd_micros for _, n in h.outputs(NAV)] == [7]


async def test_an_output_too_large_for_kafka_is_refused_and_the_rest_flows(tmp_path: Path) -> None:
    async with TestHarness(poison_app(), data_dir=tmp_path, catalog=False) as h:
        await h.send(FILLS, buy(instrument="BIG"), run=False)
        await h.send(FILLS, buy(3), run=False)
        await h.run()
        assert [d.reason for d in h.dead_letters] == ["output_too_large"]
        assert h.metrics.handler_retries == 0  # permanent: not retried
        assert [n.nav_usd_micros for _, n in h.outputs(NAV)] == [3]


async def test_a_retry_decodes_the_payload_afresh(tmp_path: Path) -> None:
    async with TestHarness(poison_app(handler_retries=1), data_dir=tmp_path, catalog=False) as h:
        await h.send(FILLS, buy(1, "MUTATE"))
        assert [n.nav_usd_micros for _, n in h.outputs(NAV)] == [1001]  # 1 + 1000 once, not twice


async def test_a_record_the_broker_refuses_for_good_is_isolated_and_dead_lettered(tmp_path: Path) -> None:
    async with TestHarness(poison_app(), data_dir=tmp_path, catalog=False) as h:
        h.broker.max_record_bytes[ECHO] = 1_000  # the topic's max.message.bytes
        h.worker.settings = WorkerSettings(tmp_path, delivery_retry_backoff_s=0)
        await h.send(FILLS, buy(1), run=False)
        await h.send(FILLS, buy(instrument="LARGE"), run=False)
        await h.send(FILLS, buy(3), run=False)
        await h.run()
        assert [d.reason for d in h.dead_letters] == ["undeliverable"]
        assert "MSG_SIZE_TOO_LARGE" in h.dead_letters[0].detail
        assert [n.nav_usd_micros for _, n in h.outputs(NAV)] == [1, 3]
        assert h.metrics.healthy


async def test_a_record_refused_once_then_delivered_leaves_no_count_behind(tmp_path: Path) -> None:
    async with TestHarness(poison_app(), data_dir=tmp_path, catalog=False) as h:
        h.broker.max_record_bytes[ECHO] = 1_000
        h.worker.settings = WorkerSettings(tmp_path, delivery_retry_backoff_s=0)
        await h.send(FILLS, buy(instrument="LARGE"), run=False)
        await h.worker.run_once()  # refused once, alone: one more refusal would dead-letter it
        assert h.worker._refusals and not h.outputs(ECHO)
        del h.broker.max_record_bytes[ECHO]  # the topic's limit was raised
        await h.run()
        assert len(h.outputs(ECHO)) == 1 and h.dead_letters == []
        assert h.worker._refusals == {}  # a long-lived worker does not keep one entry per such record


async def test_an_outage_is_retried_never_dead_lettered(tmp_path: Path) -> None:
    async with TestHarness(poison_app(), data_dir=tmp_path, catalog=False) as h:
        h.worker.settings = WorkerSettings(tmp_path, delivery_retry_backoff_s=0)
        h.broker.unwritable.add(NAV)
        await h.send(FILLS, buy(1), run=False)
        await h.send(FILLS, buy(2), run=False)
        for _ in range(6):
            await h.worker.run_once()
        assert h.dead_letters == [] and not h.broker.committed
        h.broker.unwritable.clear()
        await h.run()
        assert [n.nav_usd_micros for _, n in h.outputs(NAV)] == [1, 2]


def test_a_restored_tombstone_forgets_its_marks_unless_made_again() -> None:
    from google.protobuf.timestamp_pb2 import Timestamp

    from pit_streams.contract import Key
    from pit_streams.state.changelog import mark_records, restore_changes
    from pit_streams.transport.base import Record

    key = Key("demo", "alpha", "0001")
    old, new = Timestamp(seconds=1_000), Timestamp(seconds=2_000)
    [(g1, v1, _)] = mark_records(key, [("", "gone", "d1"), ("", "again", "d2")], producer="p@1", ts=old)
    [(g2, v2, _)] = mark_records(key, [("", "again", "d2")], producer="p@1", ts=new)
    records = [Record("cl", 0, 0, g1.encode(), v1), Record("cl", 0, 1, g2.encode(), v2),
               Record("cl", 0, 2, g1.encode(), None)]  # the sweep tombstoned the first group
    changes = restore_changes(records, 60_000).changes
    assert sorted(changes.restored_marks) == [mark_key("demo", "", "again")]
    assert list(changes.mark_groups) == [g2]


async def test_state_too_large_for_one_record_is_refused(tmp_path: Path) -> None:
    app = pit_streams.App("big-state", version="1.0.0")

    @app.handler(FILLS, TradeFillEvent, emits={NAV: NAVUpdateEvent})
    def on_fill(fill: TradeFillEvent, ctx: pit_streams.Context) -> None:
        for i in range(fill.qty):
            ctx.state.put(f"{i:08d}" + "n" * 240, i)
        ctx.emit(NAV, NAVUpdateEvent(nav_usd_micros=fill.qty))

    async with TestHarness(app, data_dir=tmp_path, catalog=False) as h:
        await h.send(FILLS, buy(3_000), run=False)  # ~750 KB of state names for one key
        await h.send(FILLS, buy(3), run=False)
        await h.run()
        assert [d.reason for d in h.dead_letters] == ["state_too_large"]
        assert [n.nav_usd_micros for _, n in h.outputs(NAV)] == [3]
