"""The pit-streams contender's app: the benchmark's per-record work as a pit-streams handler.

Started by the harness as ``python -m pit_streams.cli worker -A bench.contenders.pit_app ...``;
topic names and the app name (= consumer group) come from the ``BENCH_*`` environment. The
runtime does the rest of the shared work itself: unwrap/validate, dedupe by event id (persisted),
wrap the output (event id ``output_event_id(app, source, 0)``, ``causation_id`` = source id),
produce, wait for acks, commit.

The NAV math is :func:`bench.work.nav_update`, stateless like the other contenders' (the real
``apps.nav`` keeps a per-cell book in state: more work than the benchmark asks of everyone).
"""

from __future__ import annotations

import os

from pit.events.v1.events_pb2 import NAVUpdateEvent, TradeFillEvent

import pit_streams
from bench.work import nav_update

INPUT = os.environ.get("BENCH_INPUT_TOPIC", "pit.v1.exec.bench_fills")
OUTPUT = os.environ.get("BENCH_OUTPUT_TOPIC", "pit.v1.acct.bench_navs")
GROUP = os.environ.get("BENCH_GROUP_ID", "bench-pit-streams")

app = pit_streams.App(GROUP, version="0.1.0")


@app.handler(INPUT, TradeFillEvent, emits={OUTPUT: NAVUpdateEvent})
def on_fill(fill: TradeFillEvent, ctx: pit_streams.Context) -> None:
    ctx.emit(OUTPUT, nav_update(fill))  # no event_id: the runtime sets the envelope's one
