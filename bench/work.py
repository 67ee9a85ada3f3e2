"""The per-record work every contender does, shared so that only the framework differs.

For each consumed record: unwrap and validate the envelope (:func:`unwrap`), decode the
``TradeFillEvent``, drop it if its ``event_id`` was already processed (dedupe persisted in a
rocksdict ``Rdict``, written with one ``WriteBatch`` per poll batch *after* the batch's outputs
are acked), and build one enveloped ``NAVUpdateEvent`` with integer NAV math and an event id from
:func:`output_event_id`.

This module must stay importable from the Quix virtualenv (protobuf, pit-proto, rocksdict only).
"""

from __future__ import annotations

import struct
import time
from pathlib import Path

from pit.events.v1.events_pb2 import NAVUpdateEvent, TradeFillEvent

from pit_streams.contract.envelope import Accepted, output_event_id, unwrap, wrap

#: The app name fed to ``output_event_id``: the same for every contender, so every contender
#: must produce exactly the same set of output event ids (the checker compares them).
APP = "bench-nav"
#: Starting cash of every cell, in USD micros (10M USD).
BASE_CASH_USD_MICROS = 10_000_000 * 1_000_000
BPS = 10_000


def nav_update(fill: TradeFillEvent, event_id: str = "") -> NAVUpdateEvent:
    """Deterministic integer NAV math for one fill (money in micros, no floats)."""
    notional = fill.qty * fill.price_micros
    cash = BASE_CASH_USD_MICROS - notional - fill.fee_usd_micros
    unrealized = -(abs(notional) * fill.slippage_bps // BPS)
    realized = -fill.fee_usd_micros
    nav = cash + notional + unrealized
    out = NAVUpdateEvent(
        event_id=event_id,
        tenant_id=fill.tenant_id,
        series_id=fill.series_id,
        cell_id=fill.cell_id,
        nav_usd_micros=nav,
        cash_liquid_usd_micros=cash,
        unrealized_pnl_usd_micros=unrealized,
        realized_pnl_usd_micros=realized,
    )
    out.ts.CopyFrom(fill.ts)
    return out


def build_output(accepted: Accepted, *, producer: str, topic: str) -> tuple[bytes, bytes]:
    """The (record key, envelope bytes) of the NAV update for an accepted fill."""
    env = accepted.envelope
    fill = accepted.payload
    assert isinstance(fill, TradeFillEvent)
    nav = nav_update(fill, output_event_id(APP, env, 0))
    out = wrap(
        nav,
        key=accepted.key,
        event_id=nav.event_id,
        producer=producer,
        ts=env.ts,
        topic=topic,
        causation_id=env.event_id,
    )
    return env.key.encode(), out.SerializeToString()


class Deduper:
    """Processed event ids persisted in a rocksdict ``Rdict`` (raw bytes mode).

    ``seen`` checks the store and the ids pending in the current batch; ``flush`` writes the
    pending ids with one ``WriteBatch`` (call it only after the batch's outputs are acked).
    The stored value is the processing time (ns), what a TTL sweep would use.
    """

    def __init__(self, path: str | Path) -> None:
        from rocksdict import Options, Rdict

        Path(path).mkdir(parents=True, exist_ok=True)
        self._db = Rdict(str(path), options=Options(raw_mode=True))
        self._pending: set[bytes] = set()

    def seen(self, event_id: str) -> bool:
        """True if ``event_id`` was processed before; otherwise remember it as pending."""
        k = event_id.encode()
        if k in self._pending or self._db.get(k) is not None:
            return True
        self._pending.add(k)
        return False

    def flush(self) -> None:
        if not self._pending:
            return
        from rocksdict import WriteBatch

        wb = WriteBatch(raw_mode=True)
        stamp = struct.pack(">q", time.time_ns())
        for k in self._pending:
            wb.put(k, stamp)
        self._db.write(wb)
        self._pending.clear()

    def close(self) -> None:
        self._db.close()


class Worker:
    """One contender's per-record work: ``process`` returns the output or ``None`` to skip."""

    def __init__(self, *, producer: str, out_topic: str, dedupe_dir: str | Path) -> None:
        self.producer = producer
        self.out_topic = out_topic
        self.dedupe = Deduper(dedupe_dir)
        self.rejected = 0
        self.duplicates = 0

    def process(self, value: bytes | None, key: bytes | None) -> tuple[bytes, bytes] | None:
        res = unwrap(value, key, TradeFillEvent)
        if not isinstance(res, Accepted):
            self.rejected += 1
            return None
        if self.dedupe.seen(res.envelope.event_id):
            self.duplicates += 1
            return None
        return build_output(res, producer=self.producer, topic=self.out_topic)

    def batch_done(self) -> None:
        """Persist the batch's dedupe marks (after its outputs are acked, before commit)."""
        self.dedupe.flush()

    def close(self) -> None:
        self.dedupe.close()
