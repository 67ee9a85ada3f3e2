"""nav-analytics: NAV updates in; a live per-cell table on stdout and a PNG chart of NAV over time.

    PIT_ANALYTICS_OUT=demo-out/nav.png pit-streams worker -A apps.nav_analytics

Display only: what this module keeps (the latest NAV per cell and a time series) lives in
process memory and is not business truth (contract 6.3) — the truth is the NAV topic. The
table is printed at most once per ``PIT_ANALYTICS_TABLE_EVERY`` seconds (default 1) when
something changed, and at exit; the chart (matplotlib, Agg, no display needed) is rewritten at
most every ``PIT_ANALYTICS_PNG_EVERY`` seconds (default 15) and at exit, atomically (write to a
temporary file, then rename). Money stays integer micros; only the chart's axis is float USD.
"""

from __future__ import annotations

import atexit
import os
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pit.events.v1.events_pb2 import NAVUpdateEvent

import pit_streams
from apps.nav_math import STARTING_CASH_MICROS

NAV = "pit.v1.acct.nav_update"
NAME = "nav-analytics"
VERSION = "0.1.0"
OUT_ENV = "PIT_ANALYTICS_OUT"
DEFAULT_OUT = "demo-out/nav.png"


def default_out() -> Path:
    """``$PIT_ANALYTICS_OUT``, else ``nav.png`` in the worker's data dir when one is set (the image's
    working directory is read-only), else ``demo-out/nav.png``."""
    if os.environ.get(OUT_ENV):
        return Path(os.environ[OUT_ENV])
    if os.environ.get("PIT_DATA_DIR"):
        return Path(os.environ["PIT_DATA_DIR"]) / "nav.png"
    return Path(DEFAULT_OUT)
MAX_POINTS_PER_CELL = 50_000


def fmt_usd(micros: int) -> str:
    """``1234567890`` micros -> ``"1,234.56"`` (truncated to cents, integer arithmetic)."""
    sign = "-" if micros < 0 else ""
    a = abs(micros)
    return f"{sign}{a // 1_000_000:,}.{a % 1_000_000 // 10_000:02d}"


def nav_table(latest: dict[str, NAVUpdateEvent], counts: dict[str, int] | None = None) -> str:
    """A fixed-width table of each cell's latest NAV (USD, truncated to cents)."""
    head = f"{'cell':<28} {'updates':>7} {'NAV':>16} {'cash':>16} {'unrealized':>14} {'realized':>14} {'vs start':>13}"
    lines = [head, "-" * len(head)]
    for key in sorted(latest):
        n = latest[key]
        lines.append(
            f"{key:<28} {(counts or {}).get(key, 0):>7} {fmt_usd(n.nav_usd_micros):>16}"
            f" {fmt_usd(n.cash_liquid_usd_micros):>16} {fmt_usd(n.unrealized_pnl_usd_micros):>14}"
            f" {fmt_usd(n.realized_pnl_usd_micros):>14} {fmt_usd(n.nav_usd_micros - STARTING_CASH_MICROS):>13}"
        )
    return "\n".join(lines)


@dataclass
class NavBoard:
    """Latest NAV per cell plus its time series (event time in ms, NAV micros)."""

    out: Path = field(default_factory=lambda: default_out())
    table_every_s: float = field(default_factory=lambda: float(os.environ.get("PIT_ANALYTICS_TABLE_EVERY", "1")))
    png_every_s: float = field(default_factory=lambda: float(os.environ.get("PIT_ANALYTICS_PNG_EVERY", "15")))
    finish_at_exit: bool = False
    print_fn: Callable[[str], None] = field(default=lambda s: print(s, flush=True))
    latest: dict[str, NAVUpdateEvent] = field(default_factory=dict)
    series: dict[str, deque[tuple[int, int]]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    updates: int = 0
    _dirty: bool = False
    _last_table: float = 0.0
    _last_png: float = field(default_factory=time.monotonic)
    _exit_hook: bool = False

    def record(self, key: str, nav: NAVUpdateEvent, ts_ms: int) -> None:
        self.latest[key] = nav
        points = self.series.get(key)
        if points is None:
            points = self.series[key] = deque(maxlen=MAX_POINTS_PER_CELL)
        points.append((ts_ms, nav.nav_usd_micros))
        self.counts[key] = self.counts.get(key, 0) + 1
        self.updates += 1
        self._dirty = True
        if self.finish_at_exit and not self._exit_hook:
            atexit.register(self.finish)
            self._exit_hook = True
        now = time.monotonic()
        if now - self._last_table >= self.table_every_s:
            self.print_table()
        if now - self._last_png >= self.png_every_s:
            self.try_write_png()

    def print_table(self) -> None:
        self._last_table = time.monotonic()
        if not self._dirty:
            return
        self._dirty = False
        title = f"nav-analytics: {self.updates} NAV updates, {len(self.latest)} cells ({time.strftime('%H:%M:%S')})"
        self.print_fn(f"{title}\n{nav_table(self.latest, self.counts)}")

    def try_write_png(self) -> Path | None:
        """``write_png``, but a chart that cannot be drawn (no matplotlib in the image, a read-only
        disk) is logged, never a failure of the NAV update being handled."""
        try:
            return self.write_png()
        except (ImportError, OSError) as exc:
            self._last_png = float("inf")  # do not retry on every record
            print(f"nav-analytics: chart disabled: {exc}", file=sys.stderr)
            return None

    def write_png(self) -> Path | None:
        """Render NAV over time per cell to ``self.out``; ``None`` if there is nothing to plot."""
        self._last_png = time.monotonic()
        if not self.series:
            return None
        from matplotlib.figure import Figure  # lazy: ~0.5 s to import, and only for display
        from matplotlib.ticker import StrMethodFormatter

        t0 = min(points[0][0] for points in self.series.values())
        span_s = (max(points[-1][0] for points in self.series.values()) - t0) / 1000
        unit, per = ("min", 60_000) if span_s > 120 else ("s", 1000)
        fig = Figure(figsize=(11, 6), dpi=100, layout="constrained")
        ax = fig.add_subplot()
        for key in sorted(self.series):
            points = self.series[key]
            xs = [(t - t0) / per for t, _ in points]
            ys = [v / 1e6 for _, v in points]  # float USD for the axis only (display)
            ax.plot(xs, ys, label=key, linewidth=1.1, drawstyle="steps-post")  # NAV holds between fills
        ax.axhline(STARTING_CASH_MICROS / 1e6, color="grey", linestyle=":", linewidth=1, label="starting capital")
        ax.set_title(f"NAV per cell — {self.updates} updates")
        ax.set_xlabel(f"event time ({unit} since the first update)")
        ax.set_ylabel("NAV (USD)")
        ax.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="best")
        self.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.out.with_name(f".{self.out.name}.tmp{os.getpid()}.png")
        fig.savefig(tmp)
        tmp.replace(self.out)
        return self.out

    def finish(self) -> None:
        """At exit: the final table and chart."""
        self._dirty = bool(self.latest)
        self.print_table()
        path = self.try_write_png()
        if path is not None:
            self.print_fn(f"nav-analytics: chart of {len(self.series)} cells written to {path}")
        sys.stdout.flush()


def build_app(board: NavBoard, name: str = NAME) -> pit_streams.App:
    app = pit_streams.App(name, version=VERSION)

    @app.handler(NAV, NAVUpdateEvent)
    def on_nav(nav: NAVUpdateEvent, ctx: pit_streams.Context) -> None:
        board.record(str(ctx.key), nav, ctx.envelope.ts.ToMilliseconds())

    return app


board = NavBoard(finish_at_exit=True)
pit = build_app(board)
