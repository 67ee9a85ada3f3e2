"""A dead letter the broker refuses for good must not hold its partition up: the record was isolated,
counted twice as undeliverable and dead-lettered again with the same oversized copy, for ever. Once
its dead letter is refused too, the next one goes bare (no value, no source headers), and a copy
larger than a dead letter may carry is never attempted."""

from __future__ import annotations

from pathlib import Path

import pytest
from pit.events.v1.events_pb2 import NAVUpdateEvent, TradeFillEvent

import pit_streams
from pit_streams.contract import Reason, Rejection
from pit_streams.runtime import deadletter
from pit_streams.runtime.worker import WorkerSettings
from pit_streams.testing import TestHarness
from pit_streams.tools import replay_checks
from pit_streams.transport.base import Record

FILLS = "pit.v1.exec.trade_fill"
NAV = "pit.v1.acct.nav_update"


def app() -> pit_streams.App:
    a = pit_streams.App("dlq-refused", version="1.0.0")

    @a.handler(FILLS, TradeFillEvent, emits={NAV: NAVUpdateEvent})
    async def on_fill(fill: TradeFillEvent, ctx: pit_streams.Context) -> None:
        ctx.emit(NAV, NAVUpdateEvent(nav_usd_micros=fill.qty))

    return a


async def test_a_dead_letter_refused_for_good_does_not_stall_the_partition(tmp_path: Path) -> None:
    async with TestHarness(app(), data_dir=tmp_path, catalog=False) as h:
        h.worker.settings = WorkerSettings(tmp_path, delivery_retry_backoff_s=0)
        # The dead-letter topic's max.message.bytes; the hostile record's copy is over it.
        h.broker.max_record_bytes[pit_streams.DEAD_LETTER_TOPIC] = 5_000
        await h.send(FILLS, b"\xff" * 10_000, run=False)  # not an envelope, large
        await h.send(FILLS, TradeFillEvent(qty=3), run=False)
        for _ in range(20):  # bounded: each turn is one isolation attempt
            await h.worker.run_once()
        navs = [n.nav_usd_micros for _, n in h.outputs(NAV)]
        assert navs == [3], "the partition stalled behind an undeliverable dead letter"
        [dead] = h.dead_letters
        assert dead.reason == "undeliverable" and dead.source_offset == 0 and dead.value is None
        assert int(dead.headers[deadletter.SOURCE_OMITTED]) >= 10_000
        # It still names what made the record undeliverable, then that its dead letter was refused too.
        assert "its dead letter was refused too" in dead.detail


def test_a_copy_larger_than_a_dead_letter_carries_goes_bare() -> None:
    big = Record(FILLS, 0, 7, b"k", b"x" * (deadletter.MAX_CARRIED_BYTES - 5), [("trace", b"123456")], 0)
    dead = deadletter.dead_letter_record(big, Rejection(Reason.NOT_ENVELOPE, "no"), group="g", producer="p@1")
    assert len(dead.value) < 1_000
    assert (deadletter.SOURCE_OMITTED, str(deadletter.MAX_CARRIED_BYTES + 7).encode()) in dead.headers
    assert not any(name.startswith(deadletter.SOURCE_HEADER_PREFIX) for name, _ in dead.headers)
    small = Record(FILLS, 0, 7, b"k", b"x" * 100, [("trace", b"1")], 0)
    kept = deadletter.dead_letter_record(small, Rejection(Reason.NOT_ENVELOPE, "no"), group="g", producer="p@1")
    assert deadletter.read_dead_letter(kept.value).value == b"x" * 100
    assert (deadletter.SOURCE_HEADER_PREFIX + "trace", b"1") in kept.headers


def test_a_bare_dead_letter_is_small_whatever_the_key() -> None:
    # A key, like a value, can pass its topic compressed: a bare dead letter leaves out one longer
    # than a canonical key may be, or the loop of refusals would go on.
    huge_key = b"k" * (5 * 1024 * 1024)
    rec = Record(FILLS, 0, 1, huge_key, b"v", [], 0)
    dead = deadletter.dead_letter_record(rec, Rejection(Reason.UNDELIVERABLE, "x"), group="g", producer="p@1",
                                         bare=True)
    assert len(dead.value) + len(dead.key) + sum(len(k) + len(v) for k, v in dead.headers) < 10_000
    assert (deadletter.SOURCE_OMITTED, str(len(huge_key) + 1).encode()) in dead.headers
    short = Record(FILLS, 0, 1, b"t/demo/s/alpha/c/0001", b"v", [], 0)
    kept = deadletter.dead_letter_record(short, Rejection(Reason.UNDELIVERABLE, "x"), group="g", producer="p@1",
                                         bare=True)
    assert (deadletter.SOURCE_KEY, b"t/demo/s/alpha/c/0001") in kept.headers  # a real key stays, for the tenant


def test_a_large_dead_letter_written_before_bare_ones_existed_is_not_called_forged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    big = Record(FILLS, 0, 7, b"k", b"x" * 3_500_000, [], 1_700_000_000_000)
    monkeypatch.setattr(deadletter, "MAX_CARRIED_BYTES", 1 << 40)  # what the previous release wrote
    old = deadletter.dead_letter_record(big, Rejection(Reason.NOT_ENVELOPE, "no"), group="g", producer="p@1")
    monkeypatch.undo()
    why = replay_checks.forged(old.key, old.value, old.headers, source_topic=big.topic, source_partition=0,
                               source_offset=7, reason="not_envelope", detail="no", group="g", key=b"k",
                               value=big.value, source_headers=[])
    assert why == ""
