"""Programming errors stop the partition and say so; data errors keep retry-then-dead-letter."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from pit.events.v1.events_pb2 import NAVUpdateEvent, TradeFillEvent

import pit_streams
from pit_streams.runtime.failures import describe, is_programming_error
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
        (_undeclared, f"{UNDECLARED} is not among this handler's declared outputs"),
        (_wrong_type, f"{NAV} carries pit.events.v1.NAVUpdateEvent, not pit.events.v1.TradeFillEvent"),
        (_float_into_int64, "field pit.events.v1.NAVUpdateEvent.nav_usd_micros (int64) got float 2.5"),
        (_float_assigned, "field pit.events.v1.NAVUpdateEvent.nav_usd_micros (int64)"),
        (_wrong_message_type, "AttributeError: nav_usd_micros"),
        (_float_state, "state 'cash' holds integers"),
    ],
)
async def test_programming_error_stops_the_partition_unhealthy_with_the_message(
    tmp_path: Path, body: Callable[[TradeFillEvent, pit_streams.Context], None], says: str
) -> None:
    async with TestHarness(_app(body), data_dir=tmp_path) as h:
        await h.send(FILLS, TradeFillEvent(instrument="BTC", qty=1, price_micros=5))
        await h.send(FILLS, TradeFillEvent(instrument="ETH", qty=1, price_micros=7))
        assert h.dead_letters == []  # not bad data: nothing is dead-lettered
        assert h.metrics.handler_retries == 0  # and it is not retried either
        assert not h.metrics.healthy
        assert "programming error" in h.metrics.unhealthy_reason and says in h.metrics.unhealthy_reason
        assert h.broker.committed == {} or all(o == 0 for o in h.broker.committed.values())


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
    assert is_programming_error(TypeError("x")) and is_programming_error(AttributeError("x"))
    assert is_programming_error(ValueError('Protocol message NAVUpdateEvent has no "navv" field.'))
    assert not is_programming_error(ValueError("no price")) and not is_programming_error(KeyError("k"))
    assert not is_programming_error(pit_streams.errors.EmitError("cross-tenant"))  # may depend on the data
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
            await h.send(FILLS, TradeFillEvent(instrument="BTC", qty=1, price_micros=5))
            answer = await get("/healthz")
            assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
            assert b"programming error" in answer and UNDECLARED.encode() in answer
            assert (await get("/readyz")).startswith(b"HTTP/1.1 503")
        finally:
            await health.stop()
