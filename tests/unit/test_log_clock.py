"""Decisions that depend only on the log (ADR 0008): dedupe expiry runs on the partition's
event-time clock, and a dead letter after retries never depends on how long they took."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from pit.envelope.v1.envelope_pb2 import EventEnvelope
from pit.events.v1.events_pb2 import NAVUpdateEvent, TradeFillEvent

import pit_streams
from pit_streams.runtime.batch import MAX_CLOCK_SKEW_MS
from pit_streams.runtime.worker import WorkerSettings
from pit_streams.testing import Sent, TestHarness

FILLS = "pit.v1.exec.trade_fill"
NAV = "pit.v1.acct.nav_update"
CELL_A = "t/demo/s/alpha/c/0001"
EVIL = "t/evil/s/alpha/c/0001"
TTL = timedelta(minutes=10)


def counting_app(calls: list[str], *, fail: bool = False, retries: int = 0) -> pit_streams.App:
    app = pit_streams.App("clock-test", version="1.0.0", dedupe_ttl=TTL, handler_retries=retries,
                          retry_backoff=timedelta(0))

    @app.handler(FILLS, TradeFillEvent, emits={NAV: NAVUpdateEvent})
    def on_fill(fill: TradeFillEvent, ctx: pit_streams.Context) -> None:
        calls.append(ctx.event_id)
        if fail:
            raise RuntimeError("always fails")
        ctx.emit(NAV, NAVUpdateEvent(cash_liquid_usd_micros=fill.qty))

    return app


def ts(ms: int) -> Timestamp:
    out = Timestamp()
    out.FromMilliseconds(ms)
    return out


async def send_at(h: TestHarness, key: str, event_ms: int, broker_ms: int, event_id: str) -> Sent:
    """A fill whose envelope says ``event_ms`` and whose broker timestamp is ``broker_ms``."""
    sent = await h.send(FILLS, TradeFillEvent(qty=1), key=key, ts=ts(event_ms), event_id=event_id, run=False)
    h.broker.topics[FILLS][0].pop()  # re-append with the broker's timestamp, as Kafka stamps it
    h.broker.append(FILLS, sent.value, sent.key, [], timestamp_ms=broker_ms)
    await h.run()
    return sent


async def test_the_wall_clock_does_not_expire_marks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    now = int(time.time() * 1000)
    async with TestHarness(counting_app(calls), data_dir=tmp_path, catalog=False) as h:
        first = await send_at(h, CELL_A, now, now, "fill-1")
        monkeypatch.setattr(time, "time", lambda: now / 1000 + 10 * 86400)  # the worker runs ten days later
        await h.resend(first)
        assert calls == ["fill-1"] and h.metrics.deduped == 1


async def test_a_far_future_ts_cannot_expire_another_tenants_marks(tmp_path: Path) -> None:
    calls: list[str] = []
    now = int(time.time() * 1000)
    async with TestHarness(counting_app(calls), data_dir=tmp_path, catalog=False) as h:
        first = await send_at(h, CELL_A, now, now, "victim-fill")
        # A hostile producer on the same partition claims an event time a year ahead.
        await send_at(h, EVIL, now + 365 * 86400_000, now + 1000, "attack")
        await h.resend(first)
        assert calls == ["victim-fill", "attack"], "the forged ts expired the victim's mark"
        assert h.metrics.deduped == 1
        batch_clock = h.worker._stores[0].clock_ms
        assert batch_clock == now + 1000 + MAX_CLOCK_SKEW_MS  # clamped to the broker's time + skew


async def test_the_clock_is_monotone_and_outlives_a_fresh_disk(tmp_path: Path) -> None:
    calls: list[str] = []
    now = int(time.time() * 1000)
    async with TestHarness(counting_app(calls), data_dir=tmp_path / "a", catalog=False) as h:
        first = await send_at(h, CELL_A, now, now, "early")
        late = now + 2 * int(TTL.total_seconds() * 1000)
        await send_at(h, CELL_A, late, late, "later")  # the partition's time passes the first mark's TTL
        await send_at(h, CELL_A, now, late, "late-arrival")  # an old ts cannot turn the clock back
        assert h.worker._stores[0].clock_ms == late
        h.data_dir = tmp_path / "b"  # a new pod: the clock comes back from the changelog
        await h.restart()
        await h.resend(first)
        assert h.worker._stores[0].clock_ms == late
        assert calls == ["early", "later", "late-arrival", "early"], "an expired mark was honoured"


async def test_a_spent_failure_budget_rereads_and_dead_letters_after_exactly_the_attempts(tmp_path: Path) -> None:
    calls: list[str] = []
    app = counting_app(calls, fail=True, retries=2)
    async with TestHarness(app, data_dir=tmp_path, catalog=False) as h:
        # A budget the first failing attempt already spends: before, the record was dead-lettered
        # after one attempt; how many attempts it got depended on the handler's speed.
        h.worker.settings = WorkerSettings(tmp_path, failure_budget_s=1e-9)
        h.worker._processor._failure_budget_s = 1e-9
        await h.send(FILLS, TradeFillEvent(qty=1), key=CELL_A, event_id="poison")
        assert calls == ["poison"] * 3
        [dead] = h.dead_letters
        assert dead.reason == "handler_error"
        env = EventEnvelope.FromString(dead.value or b"")
        assert env.event_id == "poison"


async def test_a_migration_record_whose_handler_spends_the_budget_is_read_again_not_a_crash(tmp_path: Path) -> None:
    calls: list[int] = []
    app = pit_streams.App("clock-migration", version="1.0.0", handler_retries=2, retry_backoff=timedelta(0))

    @app.handler(FILLS, TradeFillEvent, emits={NAV: NAVUpdateEvent}, migration_only=True)
    def on_fill(fill: TradeFillEvent, ctx: pit_streams.Context) -> None:
        calls.append(fill.qty)
        raise RuntimeError("always fails")

    async with TestHarness(app, data_dir=tmp_path, catalog=False) as h:
        h.worker.settings = WorkerSettings(tmp_path, failure_budget_s=1e-9)
        h.worker._processor._failure_budget_s = 1e-9
        h.broker.append(FILLS, TradeFillEvent(qty=7).SerializeToString(), CELL_A.encode(), [])
        await h.run()  # the worker's loop: it must survive the spent budget and read the record again
        assert calls == [7] * 3, "the attempts carry over the re-reads, as for enveloped records"
        [dead] = h.dead_letters
        assert dead.reason == "handler_error"
        assert h.metrics.healthy
