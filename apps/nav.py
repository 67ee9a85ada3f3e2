"""nav-consumer: trade fills in, one NAV update per fill out (all integer micros).

    pit-streams worker -A apps.nav

Per-cell state lives in ``ctx.state`` (scoped to the fill's key ``t/{tenant}/s/{series}/c/{cell}``,
durable through the app's changelog); the arithmetic is ``apps.nav_math.CellBook`` — the same
code tests and the demo use to compute the expected NAV offline from the same fills.
"""

from __future__ import annotations

from datetime import timedelta

from pit.events.v1.events_pb2 import NAVUpdateEvent, TradeFillEvent

import pit_streams
from apps.nav_math import CellBook

FILLS = "pit.v1.exec.trade_fill"
NAV = "pit.v1.acct.nav_update"
NAME = "nav-consumer"
VERSION = "0.1.0"
DEDUPE_TTL = timedelta(days=7)  # pit_streams.App's default


def build_app(name: str = NAME, *, dedupe_ttl: timedelta = DEDUPE_TTL) -> pit_streams.App:
    """The nav app under consumer group ``name`` (tests use a unique one for isolation; note
    the changelog topic follows the name: ``pit.v1.runtime.{name with _}_changelog``).
    ``dedupe_ttl``: how long a processed fill's ``event_id`` is remembered (chaos runs shorten it)."""
    app = pit_streams.App(name, version=VERSION, dedupe_ttl=dedupe_ttl)

    @app.handler(FILLS, TradeFillEvent, emits={NAV: NAVUpdateEvent})
    def on_fill(fill: TradeFillEvent, ctx: pit_streams.Context) -> None:
        snap = CellBook(ctx.state).apply(fill)
        ctx.emit(NAV, NAVUpdateEvent(
            ts=fill.ts,
            nav_usd_micros=snap.nav,
            cash_liquid_usd_micros=snap.cash,
            unrealized_pnl_usd_micros=snap.unrealized,
            realized_pnl_usd_micros=snap.realized,
        ))  # fmt: skip

    return app


pit = build_app()
