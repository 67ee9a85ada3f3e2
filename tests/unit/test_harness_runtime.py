"""The runtime's guarantees through the in-memory harness (the production loop, no broker)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pit.envelope.v1.envelope_pb2 import EventEnvelope
from pit.events.v1.events_pb2 import NAVUpdateEvent, TradeFillEvent

import pit_streams
from pit_streams.testing import TestHarness

FILLS = "pit.v1.exec.trade_fill"
NAV = "pit.v1.acct.nav_update"


def make_app(**kwargs: object) -> pit_streams.App:
    app = pit_streams.App("nav-test", version="9.9.9", **kwargs)  # type: ignore[arg-type]

    @app.handler(FILLS, TradeFillEvent, emits={NAV: NAVUpdateEvent})
    async def on_fill(fill: TradeFillEvent, ctx: pit_streams.Context) -> None:
        if fill.instrument == "BOOM":
            raise RuntimeError("boom")
        cash = ctx.state.get("cash") - fill.qty * fill.price_micros
        ctx.state.put("cash", cash)
        ctx.emit(NAV, NAVUpdateEvent(cash_liquid_usd_micros=cash))

    return app


def fill(**kw: object) -> TradeFillEvent:
    return TradeFillEvent(instrument="BTC", qty=2, price_micros=1_500_000, **kw)  # type: ignore[arg-type]


async def test_output_is_enveloped_with_derived_id_and_causation(tmp_path: Path) -> None:
    async with TestHarness(make_app(), data_dir=tmp_path, catalog=False) as h:
        sent = await h.send(FILLS, fill())
        [(env, nav)] = h.outputs(NAV)
        assert env.causation_id == sent.event_id
        assert env.producer == "nav-test@9.9.9"
        assert env.payload_type == "pit.events.v1.NAVUpdateEvent"
        assert (env.key, env.tenant, env.series, env.cell) == ("t/demo/s/alpha/c/0001", "demo", "alpha", "0001")
        assert nav.cash_liquid_usd_micros == -3_000_000
        assert nav.tenant_id == "demo" and nav.event_id == env.event_id
        assert h.broker.committed  # the source offset was committed


async def test_duplicate_event_id_is_skipped_also_after_restart(tmp_path: Path) -> None:
    async with TestHarness(make_app(), data_dir=tmp_path, catalog=False) as h:
        sent = await h.send(FILLS, fill())
        await h.resend(sent)
        assert len(h.outputs(NAV)) == 1 and h.metrics.deduped == 1
        await h.restart()
        await h.resend(sent)
        assert len(h.outputs(NAV)) == 1 and h.metrics.deduped == 2


async def test_state_and_dedupe_restore_from_changelog_on_a_fresh_disk(tmp_path: Path) -> None:
    async with TestHarness(make_app(), data_dir=tmp_path / "a", catalog=False) as h:
        sent = await h.send(FILLS, fill())
        await h.send(FILLS, fill())
        h.data_dir = tmp_path / "b"  # a second worker with an empty disk takes the partition over
        await h.restart()
        await h.resend(sent)
        await h.send(FILLS, fill())
        navs = [n.cash_liquid_usd_micros for _, n in h.outputs(NAV)]
        assert navs == [-3_000_000, -6_000_000, -9_000_000]


@pytest.mark.parametrize(
    ("value", "record_key", "reason"),
    [
        (b"\xff\xfe garbage", None, "not_envelope"),
        (EventEnvelope(event_id="x").SerializeToString(), None, "missing_field"),
    ],
)
async def test_rejects_go_to_dead_letter_byte_for_byte(
    tmp_path: Path, value: bytes, record_key: bytes | None, reason: str
) -> None:
    async with TestHarness(make_app(), data_dir=tmp_path, catalog=False) as h:
        await h.send(FILLS, value, record_key=record_key)
        [dl] = h.dead_letters
        assert (dl.reason, dl.value, dl.source_topic) == (reason, value, FILLS)
        assert h.outputs(NAV) == []


async def test_handler_error_retried_then_dead_lettered(tmp_path: Path) -> None:
    app = make_app(handler_retries=2, retry_backoff=__import__("datetime").timedelta(0))
    async with TestHarness(app, data_dir=tmp_path, catalog=False) as h:
        await h.send(FILLS, TradeFillEvent(instrument="BOOM"))
        [dl] = h.dead_letters
        assert dl.reason == "handler_error" and "boom" in dl.detail
        assert h.metrics.handler_retries == 2


async def test_unwritable_output_topic_blocks_commit_until_writable(tmp_path: Path) -> None:
    async with TestHarness(make_app(), data_dir=tmp_path, catalog=False) as h:
        h.worker.settings = type(h.worker.settings)(tmp_path, delivery_retry_backoff_s=0)
        h.broker.unwritable.add(NAV)
        await h.send(FILLS, fill(), run=False)
        await h.worker.run_once()
        assert not h.broker.committed and not h.metrics.healthy
        h.broker.unwritable.clear()
        await h.run()
        assert len(h.outputs(NAV)) == 1 and h.broker.committed


def zeroing_app() -> pit_streams.App:
    app = pit_streams.App("zero-test")

    @app.handler(FILLS, TradeFillEvent, emits={NAV: NAVUpdateEvent})
    def on_fill(fill: TradeFillEvent, ctx: pit_streams.Context) -> None:
        qty = ctx.state.get("qty", 100) + fill.qty
        ctx.state.put("qty", qty)
        ctx.emit(NAV, NAVUpdateEvent(nav_usd_micros=qty))

    return app


async def test_zero_state_survives_restore_on_a_fresh_disk(tmp_path: Path) -> None:
    async with TestHarness(zeroing_app(), data_dir=tmp_path / "a", catalog=False) as h:
        await h.send(FILLS, TradeFillEvent(qty=-100))  # qty becomes 0: an empty Int64Value payload
        h.data_dir = tmp_path / "b"
        await h.restart()
        await h.send(FILLS, TradeFillEvent(qty=5))
        assert [n.nav_usd_micros for _, n in h.outputs(NAV)] == [0, 5]


async def test_stop_mode_holds_back_every_topic_of_the_failed_partition(tmp_path: Path) -> None:
    other = "pit.v1.exec.example_order_fill"
    app = make_app(on_handler_error="stop", handler_retries=0)

    @app.handler(other, TradeFillEvent, emits={NAV: NAVUpdateEvent})
    def on_other(fill: TradeFillEvent, ctx: pit_streams.Context) -> None:
        ctx.emit(NAV, NAVUpdateEvent(nav_usd_micros=fill.qty))

    async with TestHarness(app, data_dir=tmp_path, catalog=False) as h:
        await h.send(FILLS, TradeFillEvent(instrument="BOOM"), run=False)
        await h.send(other, TradeFillEvent(qty=10), run=False)
        await h.send(other, TradeFillEvent(qty=20), run=False)
        await h.run()
        await h.send(other, TradeFillEvent(qty=30))
        assert not h.metrics.healthy and h.dead_letters == []
        # The harness polls example_order_fill before trade_fill: its first two records precede the failure.
        assert [n.nav_usd_micros for _, n in h.outputs(NAV)] == [10, 20]
        committed = {tp.topic: offset for (_, tp), offset in h.broker.committed.items()}
        assert committed == {other: 2}  # nothing of trade_fill, and not the record sent after the stop


async def test_commit_lag_is_measured_per_partition(tmp_path: Path) -> None:
    async with TestHarness(make_app(), data_dir=tmp_path, catalog=False) as h:
        await h.send(FILLS, fill())
        await h.send(FILLS, fill())
        tp = f"{FILLS}[0]"
        assert h.metrics.end_offsets[tp] == 2 and h.metrics.committed_offsets[tp] == 2


async def test_harness_refuses_an_app_the_worker_would_refuse(tmp_path: Path) -> None:
    from pit_streams.errors import ConfigError

    with pytest.raises(ConfigError, match=r"changelog topic pit.v1.runtime.nav_test_changelog is not in the catalog"):
        TestHarness(make_app(), data_dir=tmp_path)
    wrong = pit_streams.App("nav-consumer")

    @wrong.handler(FILLS, NAVUpdateEvent)
    def on_fill(nav: NAVUpdateEvent, ctx: pit_streams.Context) -> None:
        return None

    with pytest.raises(ConfigError, match=r"declares pit.events.v1.NAVUpdateEvent but the catalog lists"):
        TestHarness(wrong, data_dir=tmp_path)


async def test_send_to_a_topic_the_app_does_not_read_is_a_declaration_error(tmp_path: Path) -> None:
    from pit_streams.errors import DeclarationError

    async with TestHarness(make_app(), data_dir=tmp_path, catalog=False) as h:
        with pytest.raises(DeclarationError, match=r"does not read pit.v1.exec.trade_fills \(did you mean"
                                                   r" pit.v1.exec.trade_fill\?\): send to one of"):
            await h.send("pit.v1.exec.trade_fills", fill())


async def test_typed_outputs(tmp_path: Path) -> None:
    from pit_streams.errors import DeclarationError

    async with TestHarness(make_app(), data_dir=tmp_path, catalog=False) as h:
        await h.send(FILLS, fill())
        navs: list[NAVUpdateEvent] = h.outputs(NAV, NAVUpdateEvent)
        assert [n.cash_liquid_usd_micros for n in navs] == [-3_000_000]
        [(env, untyped)] = h.outputs(NAV)  # the untyped form still works
        assert env.payload_type == "pit.events.v1.NAVUpdateEvent" and untyped == navs[0]
        with pytest.raises(DeclarationError, match=r"carries pit\.events\.v1\.NAVUpdateEvent, not"):
            h.outputs(NAV, TradeFillEvent)
