"""What the NAV worker must do with each input record, computed independently of the runtime's
loop: the contract's own pure ``unwrap`` for accept/reject (as the brief asks — bit-flipped
envelopes may still parse, so they are classified by running it, not guessed), dedupe by
``event_id`` per partition, and the NAV arithmetic replayed offline with ``apps.nav_math``
(the code ``apps/nav.py`` runs), with the int64 limits of ``ctx.state`` — so a fill whose
state overflows is expected to fail the handler and be dead-lettered as ``handler_error``.

Outcomes: ``ok`` (one output), ``dup`` (deduplicated: no output, no dead letter), or a
``pit_streams.contract.Reason`` value (a dead letter with that ``pit.reason``).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

from pit.events.v1.events_pb2 import NAVUpdateEvent, TradeFillEvent

from apps.nav_math import CellBook, Snapshot
from pit_streams.contract import Accepted, Reason, unwrap

TOPIC = "pit.v1.exec.trade_fill"  # what the chaos inputs are read from (envelope.topic must agree)
OK = "ok"
DUP = "dup"
HANDLER_ERROR = "handler_error"
_INT64 = (-(2**63), 2**63)


class _CheckedState(dict[str, int]):
    """``ctx.state``'s rules on a dict: integers that fit int64, absent reads as the default."""

    def get(self, name: str, default: int = 0, /) -> int:  # type: ignore[override]
        return super().get(name, default)

    def put(self, name: str, value: int, /) -> None:
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"state {name!r} holds integers")
        if not _INT64[0] <= value < _INT64[1]:
            raise OverflowError(f"state {name!r} = {value} does not fit int64")
        self[name] = value

    def delete(self, name: str, /) -> None:
        self.pop(name, None)


@dataclass(frozen=True, slots=True)
class Verdict:
    expect: str  # ok | dup | a Reason value
    event_id: str = ""
    key: str = ""
    snapshot: Snapshot | None = None
    detail: str = ""


class Oracle:
    """Judge records in log order. ``scope`` is what dedupe is per: the partition when judging
    the log read back; the record key at generation time (same key, same partition)."""

    def __init__(self) -> None:
        # (scope, tenant, dedupe_scope, event_id) -> (key, payload): dedupe is per tenant, and the
        # same id with another key or payload is refused as event_id_conflict.
        self._seen: dict[tuple[Hashable, str, str, str], tuple[str, bytes]] = {}
        self._books: dict[str, _CheckedState] = {}

    def judge(self, scope: Hashable, key: bytes | None, value: bytes | None) -> Verdict:
        got = unwrap(value, key, TradeFillEvent, topic=TOPIC)
        if not isinstance(got, Accepted):
            return Verdict(got.reason.value, detail=got.detail)
        env, fill = got.envelope, got.payload
        assert isinstance(fill, TradeFillEvent)
        mark = (scope, env.tenant, env.dedupe_scope, env.event_id)
        seen = self._seen.get(mark)
        if seen is not None:
            if seen == (env.key, env.payload):
                return Verdict(DUP, env.event_id, env.key)
            return Verdict(Reason.EVENT_ID_CONFLICT.value, env.event_id, env.key)
        book = self._books.setdefault(env.key, _CheckedState())
        trial = _CheckedState(book)
        try:
            snap = CellBook(trial).apply(fill)
            NAVUpdateEvent(
                ts=fill.ts, nav_usd_micros=snap.nav, cash_liquid_usd_micros=snap.cash,
                unrealized_pnl_usd_micros=snap.unrealized, realized_pnl_usd_micros=snap.realized,
            )  # fmt: skip
        except Exception as exc:  # what the handler would raise: dead-lettered after its retries
            return Verdict(HANDLER_ERROR, env.event_id, env.key, detail=f"{type(exc).__name__}: {exc}")
        book.clear()
        book.update(trial)
        self._seen[mark] = (env.key, env.payload)
        return Verdict(OK, env.event_id, env.key, snap)


def snapshot_of(nav: NAVUpdateEvent) -> Snapshot:
    return Snapshot(nav=nav.nav_usd_micros, cash=nav.cash_liquid_usd_micros,
                    unrealized=nav.unrealized_pnl_usd_micros, realized=nav.realized_pnl_usd_micros)  # fmt: skip
