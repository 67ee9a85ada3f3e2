"""Programming errors stop the partition and say so; data errors keep retry-then-dead-letter."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from pit.events.v1.events_pb2 import NAVUpdateEvent, TradeFillEvent

import pit_streams
from pit_streams.runtime.failures import describe, is_suspected_programming_error
from pit_streams.testing import TestHarness

FILLS = "pit.v1.exec.trade_fill"
NAV = "pit.v1.acct.nav_update"
UNDECLARED = "pit.v1.risk.example_not_in_catalog"


def _app(body: Callable[[TradeFillEvent, pit_streams.Context], None]) -> pit_streams.App:
    app = pit_streams.App("nav-consumer", handler_retries=3, retry_backoff=timedelta(milliseconds=1))

    @app.handler(FILLS, TradeFillEvent, emits={NAV: NAVUpdateEvent})
    def on_fill(fill: TradeFillEvent, ctx: pit_streams.Context) -> None:
        body(fill, ctx)

    return app


def _undeclared(fill: TradeFillEvent, ctx: pit_streams.Context) -> None:
    ctx.emit(UNDECLARED, NAVUpdateEvent())


def _wrong_type(fill: TradeFillEvent, ctx: pit_streams.Context) -> None:
    ctx.emit(NAV, fill)


def _float_into_int64(fill: TradeFillEvent, ctx: pit_streams.Context) -> None:
    half = fill.price_micros / 2
    ctx.emit(NAV, NAVUpdateEvent(cash_liquid_usd_micros=1, nav_usd_micros=half))


def _float_assigned(fill: TradeFillEvent, ctx: pit_streams.Context) -> None:
    nav = NAVUpdateEvent()
    nav.nav_usd_micros = fill.price_micros * 0.5
    ctx.emit(NAV, nav)


def _wrong_message_type(fill: TradeFillEvent, ctx: pit_streams.Context) -> None:
    ctx.state.put("nav", fill.nav_usd_micros)  # type: ignore[attr-defined]  # the bug under test


def _float_state(fill: TradeFillEvent, ctx: pit_streams.Context) -> None:
    ctx.state.put("cash", fill.price_micros * 1.5)  # type: ignore[arg-type]  # the bug under test


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (_float_into_int64, "field pit.events.v1.NAVUpdateEvent.nav_usd_micros (int64) got float 2.5"),
        (_float_assigned, "field pit.events.v1.NAVUpdateEvent.nav_usd_micros (int64)"),
        (_wrong_message_type, "AttributeError: nav_usd_micros"),
        # These fail for every record too, but which topic, class or value a handler uses may come
        # from the data (``LIMITS.get(fill.instrument)`` is None for one tenant's odd instrument).
        (_undeclared, f"{UNDECLARED} is not among this handler's declared outputs"),
        (_wrong_type, f"{NAV} carries pit.events.v1.NAVUpdateEvent, not pit.events.v1.TradeFillEvent"),
        (_float_state, "state 'cash' holds integers"),
    ],
)
async def test_suspected_programming_error_stops_when_a_second_tenant_hits_it(
    tmp_path: Path, body: Callable[[TradeFillEvent, pit_streams.Context], None], says: str
) -> None:
    async with TestHarness(_app(body), data_dir=tmp_path) as h:
        await h.send(FILLS, TradeFillEvent(instrument="BTC", qty=1, price_micros=5), key=_key("acme"))
        [dead] = h.dead_letters  # one tenant alone: its record takes the data path
        assert dead.reason == "handler_error" and says in dead.detail
        assert h.metrics.healthy
        await h.send(FILLS, TradeFillEvent(instrument="ETH", qty=1, price_micros=5), key=_key("demo"))
        assert len(h.dead_letters) == 1  # the second tenant's record is kept, uncommitted
        assert not h.metrics.healthy
        reason = h.metrics.unhealthy_reason
        assert "programming error" in reason and says in reason and "test_programming_errors.py:" in reason
        assert list(h.broker.committed.values()) == [1]  # the dead letter's record only


def _limit_into_state(fill: TradeFillEvent, ctx: pit_streams.Context) -> None:
    ctx.state.put("limit", {"BTC": 5}.get(fill.instrument))  # type: ignore[arg-type]  # None for the unexpected


async def test_one_tenants_data_reaching_a_state_type_error_does_not_stop_the_others(tmp_path: Path) -> None:
    async with TestHarness(_app(_limit_into_state), data_dir=tmp_path) as h:
        await h.send(FILLS, TradeFillEvent(instrument="ODD", qty=1), key=_key("evil"))
        await h.send(FILLS, TradeFillEvent(instrument="ODD", qty=1), key=_key("evil", "0002"))
        await h.send(FILLS, TradeFillEvent(instrument="BTC", qty=1), key=_key("demo"))
        assert [d.reason for d in h.dead_letters] == ["handler_error"] * 2
        assert h.metrics.healthy, h.metrics.unhealthy_reason
        assert h.metrics.processed == 1


def _key(tenant: str, cell: str = "0001") -> str:
    return f"t/{tenant}/s/alpha/c/{cell}"


def _side_from_venue(fill: TradeFillEvent, ctx: pit_streams.Context) -> None:
    side = {"buy": 1, "sell": -1}.get(fill.venue)
    ctx.emit(NAV, NAVUpdateEvent(nav_usd_micros=side * fill.qty))  # type: ignore[operator]  # the data bug


async def test_one_hostile_tenant_never_stops_the_partition(tmp_path: Path) -> None:
    async with TestHarness(_app(_side_from_venue), data_dir=tmp_path) as h:
        for cell in ("0001", "0002", "0003", "0004"):
            await h.send(FILLS, TradeFillEvent(venue="hostile", qty=1), key=_key("evil", cell))
        await h.send(FILLS, TradeFillEvent(venue="buy", qty=3), key=_key("demo"))
        assert [d.reason for d in h.dead_letters] == ["handler_error"] * 4
        assert all("TypeError" in d.detail for d in h.dead_letters)
        assert h.metrics.healthy, h.metrics.unhealthy_reason
        assert h.metrics.processed == 1
        assert [n.nav_usd_micros for n in h.outputs(NAV, NAVUpdateEvent)] == [3]


async def test_a_success_between_two_tenants_failures_resets_the_suspicion(tmp_path: Path) -> None:
    async with TestHarness(_app(_side_from_venue), data_dir=tmp_path) as h:
        await h.send(FILLS, TradeFillEvent(venue="hostile", qty=1), key=_key("evil"))
        await h.send(FILLS, TradeFillEvent(venue="buy", qty=3), key=_key("demo"))
        await h.send(FILLS, TradeFillEvent(venue="hostile", qty=1), key=_key("other"))
        assert [d.reason for d in h.dead_letters] == ["handler_error"] * 2
        assert h.metrics.healthy and h.metrics.processed == 1


async def test_overflowing_state_named_from_the_data_is_a_data_error(tmp_path: Path) -> None:
    from apps.nav import build_app

    async with TestHarness(build_app(), data_dir=tmp_path) as h:
        await h.send(FILLS, TradeFillEvent(instrument="X holds integers", qty=10**12, price_micros=10**12))
        await h.send(FILLS, TradeFillEvent(instrument="BTC", qty=1, price_micros=5))
        assert h.metrics.healthy, h.metrics.unhealthy_reason
        assert [d.reason for d in h.dead_letters] == ["handler_error"]
        assert h.metrics.processed == 1


def test_a_float_into_state_is_a_state_type_error_whatever_the_name() -> None:
    from pit_streams.context import KeyedState
    from pit_streams.contract import key_of
    from pit_streams.errors import StateTypeError, StateValueError
    from pit_streams.state.overlay import StateOverlay

    key = key_of("demo", "alpha", "0001")
    assert not isinstance(key, pit_streams.contract.Rejection)
    state = KeyedState(key, StateOverlay.__new__(StateOverlay))
    with pytest.raises(StateTypeError):
        state.put("x", 1.5)  # type: ignore[arg-type]
    with pytest.raises(StateValueError) as big:
        state.put("holds integers", 2**63)
    assert not isinstance(big.value, StateTypeError)
    with pytest.raises(StateValueError) as bad_name:
        state.put(1.5, 1.5)  # type: ignore[arg-type]  # the name is checked first
    assert not isinstance(bad_name.value, StateTypeError)


async def test_data_error_keeps_retry_then_dead_letter(tmp_path: Path) -> None:
    def body(fill: TradeFillEvent, ctx: pit_streams.Context) -> None:
        if fill.instrument == "BAD":
            raise ValueError("no price for instrument BAD")
        ctx.emit(NAV, NAVUpdateEvent(nav_usd_micros=fill.price_micros))

    async with TestHarness(_app(body), data_dir=tmp_path) as h:
        await h.send(FILLS, TradeFillEvent(instrument="BAD", qty=1, price_micros=5))
        await h.send(FILLS, TradeFillEvent(instrument="OK", qty=1, price_micros=7))
        [dead] = h.dead_letters
        assert dead.reason == "handler_error" and "no price for instrument BAD" in dead.detail
        assert h.metrics.handler_retries == 3 and h.metrics.healthy
        assert [n.nav_usd_micros for _, n in h.outputs(NAV)] == [7]


def test_classifier() -> None:
    suspected = is_suspected_programming_error
    assert suspected(pit_streams.errors.StateTypeError("x"))
    assert not suspected(pit_streams.errors.StateValueError("state 'holds integers' = 1 does not fit"))
    assert suspected(TypeError("x")) and suspected(AttributeError("x"))
    assert suspected(pit_streams.errors.EmitDeclarationError("x"))
    assert suspected(ValueError('Protocol message NAVUpdateEvent has no "navv" field.'))
    assert not suspected(ValueError("no price")) and not suspected(KeyError("k"))
    assert not suspected(pit_streams.errors.EmitError("cross-tenant"))  # a data error
    assert describe(KeyError("k")) == "KeyError: 'k'"


async def test_healthz_turns_unhealthy_naming_the_programming_error(tmp_path: Path) -> None:
    import asyncio

    from pit_streams.observe import HealthServer

    async with TestHarness(_app(_undeclared), data_dir=tmp_path) as h:
        health = HealthServer(h.metrics, "nav-consumer", 0, host="127.0.0.1")
        await health.start()
        try:
            async def get(path: str) -> bytes:
                reader, writer = await asyncio.open_connection("127.0.0.1", health.port)
                writer.write(f"GET {path} HTTP/1.1\r\n\r\n".encode())
                body = await reader.read()
                writer.close()
                return body

            assert (await get("/healthz")).startswith(b"HTTP/1.1 200 OK\r\n")
            for tenant in ("acme", "demo"):  # the second tenant failing at the same site stops it
                await h.send(FILLS, TradeFillEvent(instrument="BTC", qty=1, price_micros=5), key=_key(tenant))
            answer = await get("/healthz")
            assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
            assert b"programming error" in answer and UNDECLARED.encode() in answer
            assert (await get("/readyz")).startswith(b"HTTP/1.1 503")
        finally:
            await health.stop()


def test_describe_never_raises_and_runs_no_user_code() -> None:
    calls: list[str] = []

    class Sneaky:
        def __index__(self) -> int:
            calls.append("index")
            return 1

    class Unprintable(TypeError):
        def __str__(self) -> str:
            raise RuntimeError("no")

    sneaky = Sneaky()
    try:
        NAVUpdateEvent(nav_usd_micros=sneaky, cash_liquid_usd_micros=1.5)  # type: ignore[arg-type]  # under test
    except TypeError as exc:
        calls.clear()
        text = describe(exc)
    assert calls == []  # the Sneaky value was not tried again
    assert "cash_liquid_usd_micros" in text and "got float 1.5" in text
    assert describe(Unprintable()) == "Unprintable"


def test_describe_slices_source_by_utf8_bytes() -> None:
    nav = NAVUpdateEvent()
    try:
        café = "é" * 3; nav.nav_usd_micros = 0.5  # type: ignore[assignment]  # noqa: E702
    except TypeError as exc:
        text = describe(exc)
    assert "field pit.events.v1.NAVUpdateEvent.nav_usd_micros (int64)" in text, text
    assert café


async def test_a_stop_holds_every_topic_of_the_partition_and_counts_what_was_committed(tmp_path: Path) -> None:
    app = pit_streams.App("nav-consumer")
    navs: list[int] = []

    @app.handler(FILLS, TradeFillEvent, emits={NAV: NAVUpdateEvent})
    def on_fill(fill: TradeFillEvent, ctx: pit_streams.Context) -> None:
        if fill.instrument == "BUG":
            _undeclared(fill, ctx)

    @app.handler(NAV, NAVUpdateEvent)
    def on_nav(nav: NAVUpdateEvent, ctx: pit_streams.Context) -> None:
        navs.append(nav.nav_usd_micros)

    async with TestHarness(app, data_dir=tmp_path, catalog=False) as h:
        await h.send(FILLS, TradeFillEvent(instrument="BTC", qty=1), run=False)
        await h.send(FILLS, TradeFillEvent(instrument="BUG", qty=1), key=_key("acme"), run=False)  # dead-lettered
        await h.send(FILLS, TradeFillEvent(instrument="BUG", qty=1), key=_key("demo"), run=False)  # stops it
        await h.run()
        assert not h.metrics.healthy
        assert h.metrics.committed_records == 2  # the fills before the stopping one
        await h.send(NAV, NAVUpdateEvent(nav_usd_micros=5))  # partition 0 of another topic
        assert navs == []


def test_describe_names_no_field_for_a_failure_that_only_reads_one() -> None:
    fill = TradeFillEvent(qty=1)
    try:
        total = fill.qty + "x"  # type: ignore[operator]  # the bug under test
    except TypeError as exc:
        text = describe(exc)
    assert "field" not in text, text
    assert not locals().get("total")


async def test_handler_messages_cannot_forge_log_lines(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    def body(fill: TradeFillEvent, ctx: pit_streams.Context) -> None:
        if fill.instrument.startswith("BAD"):
            raise ValueError(f"no price for {fill.instrument}")
        raise TypeError(f"cannot use {fill.instrument}")

    forged = "\nERROR pit_streams.runtime all good"
    async with TestHarness(_app(body), data_dir=tmp_path) as h:
        await h.send(FILLS, TradeFillEvent(instrument="BAD" + forged), key=_key("acme"))
        await h.send(FILLS, TradeFillEvent(instrument="X" + forged), key=_key("acme"))
        await h.send(FILLS, TradeFillEvent(instrument="Y" + forged), key=_key("demo"))
        assert not h.metrics.healthy and "\n" not in h.metrics.unhealthy_reason
    logged = [r.getMessage() for r in caplog.records if r.name.startswith("pit_streams")]
    assert any("all good" in m for m in logged) and not any("\n" in m for m in logged)
