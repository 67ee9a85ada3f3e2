"""The demo's closing report: the final NAV per cell, checked against an offline replay."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from pit.events.v1.events_pb2 import TradeFillEvent

from apps import nav_analytics
from apps.nav_math import final_navs
from demo.navtail import NavRecord
from demo.say import DemoError, say


def report(fills: Sequence[tuple[str, TradeFillEvent]], records: Iterable[NavRecord], png: Path) -> None:
    by_cause = {r.envelope.causation_id: r.nav for r in records}
    last_fill = {key: fill.event_id for key, fill in fills}  # per-key order = production order
    counts: dict[str, int] = {}
    for key, _ in fills:
        counts[key] = counts.get(key, 0) + 1
    latest = {key: by_cause[eid] for key, eid in last_fill.items()}
    expected = final_navs(fills)
    mismatched = [
        k
        for k, n in latest.items()
        if (n.nav_usd_micros, n.cash_liquid_usd_micros, n.unrealized_pnl_usd_micros, n.realized_pnl_usd_micros)
        != (expected[k].nav, expected[k].cash, expected[k].unrealized, expected[k].realized)
    ]
    print()
    print("final NAV per cell (USD; from pit.v1.acct.nav_update):")
    print(nav_analytics.nav_table(latest, counts))
    print()
    if mismatched:
        raise DemoError(f"NAV differs from the offline replay of the same fills for {mismatched}")
    say(f"all {len(latest)} cells match the NAV computed offline from the same fills, to the micro")
    if png.exists():
        say(f"chart: {png}")
    else:
        raise DemoError(f"nav-analytics did not write {png}")


