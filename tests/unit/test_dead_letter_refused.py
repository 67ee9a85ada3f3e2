"""A dead letter the broker refuses for good must not hold its partition up: the record was isolated,
counted twice as undeliverable and dead-lettered again with the same oversized copy, for ever. Once
its dead letter is refused too, the next one goes bare (no value, no source headers), and a copy
larger than a dead letter may carry is never attempted."""

from __future__ import annotations

from pathlib import Path

from pit.events.v1.events_pb2 import NAVUpdateEvent, TradeFillEvent

import pit_streams
from pit_streams.contract import Reason, Rejection
from pit_streams.runtime import deadletter
from pit_streams.runtime.worker import WorkerSettings
from pit_streams.testing import TestHarness
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
        assert dead.headers[deadletter.SOURCE_OMITTED] == b"10000"


def test_a_copy_larger_than_a_dead_letter_carries_goes_bare() -> None:
    big = Record(FILLS, 0, 7, b"k", b"x" * (deadletter.MAX_CARRIED_BYTES - 5), [("trace", b"123456")], 0)
    dead = deadletter.dead_letter_record(big, Rejection(Reason.NOT_ENVELOPE, "no"), group="g", producer="p@1")
    assert len(dead.value) < 1_000
    assert (deadletter.SOURCE_OMITTED, str(deadletter.MAX_CARRIED_BYTES + 6).encode()) in dead.headers
    assert not any(name.startswith(deadletter.SOURCE_HEADER_PREFIX) for name, _ in dead.headers)
    small = Record(FILLS, 0, 7, b"k", b"x" * 100, [("trace", b"1")], 0)
    kept = deadletter.dead_letter_record(small, Rejection(Reason.NOT_ENVELOPE, "no"), group="g", producer="p@1")
    assert deadletter.read_dead_letter(kept.value).value == b"x" * 100
    assert (deadletter.SOURCE_HEADER_PREFIX + "trace", b"1") in kept.headers
