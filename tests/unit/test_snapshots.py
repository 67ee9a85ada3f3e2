"""``ctx.emit`` and ``Producer.send`` snapshot what they are given (issue 10, item 4)."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf.message import Message
from pit.envelope.v1.envelope_pb2 import EventEnvelope
from pit.events.v1.events_pb2 import ExposureSnapshotEvent, NAVUpdateEvent, TradeFillEvent

import pit_streams
from pit_streams.context import with_event_id
from pit_streams.producer import Producer
from pit_streams.testing import TestHarness
from pit_streams.transport.memory import MemoryBroker, MemoryTransport

FILLS = "pit.v1.exec.trade_fill"
NAV = "pit.v1.acct.nav_update"
KEY = "t/demo/s/alpha/c/0001"


def reusing_app(kept: list[NAVUpdateEvent]) -> pit_streams.App:
    app = pit_streams.App("reuse-test")

    @app.handler(FILLS, TradeFillEvent, emits={NAV: NAVUpdateEvent})
    def on_fill(fill: TradeFillEvent, ctx: pit_streams.Context) -> None:
        out = NAVUpdateEvent()
        for n in (1, 2, 3):
            out.nav_usd_micros = n * fill.qty
            ctx.emit(NAV, out)
        kept.append(out)

    return app


async def test_emit_sends_the_values_at_emit_time_and_leaves_the_message_alone(tmp_path: Path) -> None:
    kept: list[NAVUpdateEvent] = []
    async with TestHarness(reusing_app(kept), data_dir=tmp_path, catalog=False) as h:
        await h.send(FILLS, TradeFillEvent(qty=10))
        outs = h.outputs(NAV)
        assert [nav.nav_usd_micros for _, nav in outs] == [10, 20, 30]
        assert len({env.event_id for env, _ in outs}) == 3
        for env, nav in outs:  # each payload carries its own envelope's id and the key's fields
            assert nav.event_id == env.event_id and nav.tenant_id == "demo" and nav.cell_id == "0001"
        [out] = kept
        assert (out.event_id, out.tenant_id, out.series_id, out.cell_id) == ("", "", "", "")


@pytest.mark.parametrize("cls", [NAVUpdateEvent, TradeFillEvent, ExposureSnapshotEvent])
def test_with_event_id_equals_setting_the_field(cls: type[Message]) -> None:
    message = cls(tenant_id="demo", series_id="alpha")  # type: ignore[call-arg]
    message.ts.seconds = 1_700_000_000  # type: ignore[attr-defined]
    expected = cls()
    expected.CopyFrom(message)
    expected.event_id = "0b7e-id"  # type: ignore[attr-defined]
    got = with_event_id(cls, message.SerializeToString(deterministic=True), "0b7e-id")
    assert got == expected.SerializeToString(deterministic=True)


async def test_producer_mints_a_fresh_id_per_send_and_never_writes_the_callers_message() -> None:
    broker = MemoryBroker()
    broker.create_topic(FILLS, 1)
    producer = Producer("feed", version="1.0", transport=MemoryTransport(broker))
    fill = TradeFillEvent(instrument="BTC", qty=1, event_id="stale-id")
    before = fill.SerializeToString(deterministic=True)
    async with producer:
        producer.send(FILLS, fill, key=KEY)
        producer.send(FILLS, fill, key=KEY)
        producer.send(FILLS, fill, key=KEY, event_id="chosen-on-purpose")
        await producer.flush()
    assert fill.SerializeToString(deterministic=True) == before
    envs = [EventEnvelope.FromString(r.value or b"") for r in broker.records(FILLS)]
    ids = [e.event_id for e in envs]
    assert len(set(ids[:2])) == 2 and "stale-id" not in ids and ids[2] == "chosen-on-purpose"
    for env in envs:  # payload and envelope agree
        payload = TradeFillEvent.FromString(env.payload)
        assert payload.event_id == env.event_id and payload.tenant_id == "demo"
        assert payload.ts == env.ts


def own_id_app() -> pit_streams.App:
    app = pit_streams.App("own-id-test")

    @app.handler(FILLS, TradeFillEvent, emits={NAV: NAVUpdateEvent})
    def on_fill(fill: TradeFillEvent, ctx: pit_streams.Context) -> None:
        ctx.emit(NAV, NAVUpdateEvent(event_id="handler-chosen", nav_usd_micros=1))

    return app


async def test_an_outputs_own_event_id_becomes_its_envelopes(tmp_path: Path) -> None:
    """Consumers refuse a payload event_id that differs from the envelope's, so the runtime aligns them."""
    async with TestHarness(own_id_app(), data_dir=tmp_path, catalog=False) as h:
        await h.send(FILLS, TradeFillEvent(qty=1))
        [(env, nav)] = h.outputs(NAV)
        assert nav.event_id == env.event_id != "handler-chosen"
        assert nav.nav_usd_micros == 1
