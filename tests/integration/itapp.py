"""The app the integration tests run: one fill in, one NAV update out, with keyed state.

``make_app`` builds it under a unique name and unique topics per test, so tests sharing one
broker never see each other's groups, changelogs or records. ``worker_app`` builds the same
app from environment variables for ``pit-streams worker`` subprocesses.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection
from datetime import timedelta

from pit.events.v1.events_pb2 import NAVUpdateEvent, TradeFillEvent

import pit_streams

BOOM = "BOOM"  # a fill with this instrument makes the handler raise


def make_app(
    name: str,
    source: str,
    output: str,
    *,
    tenants: Collection[str] | None = None,
    handler_retries: int = 0,
    work_s: float = 0.0,
) -> pit_streams.App:
    """``work_s``: CPU-ish work per record (a blocking sleep, then a yield to the event loop),
    to give a batch a measurable duration — workload, never synchronisation."""
    app = pit_streams.App(
        name, version="1.0.0", tenants=tenants, handler_retries=handler_retries, retry_backoff=timedelta(0)
    )

    @app.handler(source, TradeFillEvent, emits={output: NAVUpdateEvent})
    async def on_fill(fill: TradeFillEvent, ctx: pit_streams.Context) -> None:
        if fill.instrument == BOOM:
            raise RuntimeError("boom: this fill is poison")
        if work_s:
            time.sleep(work_s)  # noqa: ASYNC251 - stands in for CPU-bound work that holds the loop
            await asyncio.sleep(0)
        cash = ctx.state.get("cash") - fill.qty * fill.price_micros
        ctx.state.put("cash", cash)
        ctx.emit(output, NAVUpdateEvent(cash_liquid_usd_micros=cash))

    return app
