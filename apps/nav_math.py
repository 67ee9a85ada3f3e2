"""NAV arithmetic for one cell, in integer micros — the same function online and offline.

``CellBook(state).apply(fill)`` updates a cell's book from one trade fill and returns its
``Snapshot`` (NAV, cash, unrealized and realized PnL). ``state`` is anything with
``get(name, default) -> int``, ``put(name, int)`` and ``delete(name)``: the handler passes ``ctx.state``
(durable, scoped to the cell's key), tests and the demo pass a ``MemoryState`` and replay
a list of fills with ``replay`` — so the expected NAV is computed by the very same code.

State entries of one cell (all int64 micros, except quantities in integer units; every entry
reads 0 when absent)::

    cashflow          - Σ (qty·price + fee)         (cash = STARTING_CASH_MICROS + cashflow)
    rpnl              realized PnL, net of fees
    mv                Σ_i qty_i · mark_i            (market value of every position)
    basis             Σ_i cost_i                    (cost basis of every position)
    qty/{instrument}  signed position (+ long, - short)
    cost/{instrument} cost basis of that position (same sign as the position)
    mark/{instrument} last fill price of that instrument

``mv`` and ``basis`` are kept as running totals so a fill touches only its own instrument:
no scan over instruments per record (the handler is also the benchmark's contender).
An entry whose value becomes 0 is deleted rather than written as 0 (absent reads as 0), which
keeps a cell's state, and its changelog, as small as its open positions.

Derived: ``nav = cash + mv``, ``unrealized = mv - basis``. The identity
``nav = STARTING_CASH_MICROS + realized + unrealized`` holds exactly (fees are realized
when paid), and the tests assert it.

Rounding (average-cost method) — the only division
---------------------------------------------------
A position's cost basis is the exact sum of ``qty·price`` of the fills that opened or
increased it. A fill that *reduces* a position of ``q`` units with basis ``C`` by ``r``
units (``0 < r ≤ |q|``) removes

    removed = sign(C) · (|C| · r // |q|)          (truncated toward zero)

from the basis; the remainder stays in the basis of the ``|q| - r`` units left, so no micro
is ever lost or created: when the position closes (``r = |q|``) exactly ``C`` is removed.
Realized PnL of the reduction is ``closed·price - removed`` where ``closed = sign(q)·r``
(positive for a long being sold, negative for a short being bought back). A fill larger than
the position (a flip) closes it completely, then opens the rest ``qty + closed`` at the fill
price. Fees are subtracted from cash and realized PnL as paid. Every step is integer
arithmetic on the fill's fields in per-key order, so replaying the same fills yields the
same NAV, micro for micro. (docs/nav-rounding.md has a worked example.)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

STARTING_CASH_MICROS = 1_000_000 * 1_000_000  # 1,000,000 USD per cell


class IntState(Protocol):
    def get(self, name: str, default: int = 0, /) -> int: ...
    def put(self, name: str, value: int, /) -> None: ...
    def delete(self, name: str, /) -> None: ...


class Fill(Protocol):
    """The fields of ``TradeFillEvent`` the book reads."""

    @property
    def instrument(self) -> str: ...
    @property
    def qty(self) -> int: ...
    @property
    def price_micros(self) -> int: ...
    @property
    def fee_usd_micros(self) -> int: ...


class MemoryState(dict[str, int]):
    """A dict with ``ctx.state``'s interface, for offline replays and tests."""

    def get(self, name: str, default: int = 0, /) -> int:  # type: ignore[override]
        return super().get(name, default)

    def put(self, name: str, value: int) -> None:
        self[name] = value

    def delete(self, name: str) -> None:
        self.pop(name, None)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A cell's valuation right after one fill (all USD micros)."""

    nav: int
    cash: int
    unrealized: int
    realized: int


def reduce_basis(cost: int, qty: int, reduced: int) -> int:
    """The cost removed from a basis ``cost`` of a ``qty``-unit position when ``reduced``
    units (0 < reduced ≤ |qty|) are closed: pro rata, truncated toward zero."""
    removed = abs(cost) * reduced // abs(qty)
    return removed if cost >= 0 else -removed


class CellBook:
    """One cell's book over an integer key-value state (``ctx.state`` or ``MemoryState``)."""

    __slots__ = ("state",)

    def __init__(self, state: IntState) -> None:
        self.state = state

    def apply(self, fill: Fill) -> Snapshot:
        st = self.state
        inst, d, price, fee = fill.instrument, fill.qty, fill.price_micros, fill.fee_usd_micros
        q_name, c_name, m_name = "qty/" + inst, "cost/" + inst, "mark/" + inst
        q = st.get(q_name, 0)
        cost = st.get(c_name, 0)
        mark = st.get(m_name, 0)
        cashflow = st.get("cashflow", 0) - d * price - fee
        realized = st.get("rpnl", 0) - fee

        new_q, new_cost = q + d, cost
        if q == 0 or (q > 0) == (d > 0) or d == 0:
            new_cost = cost + d * price  # open or increase (d == 0: fee only)
        else:
            reduced = min(abs(d), abs(q))
            closed = reduced if q > 0 else -reduced  # the part of the position that closes
            removed = reduce_basis(cost, q, reduced)
            realized += closed * price - removed
            new_cost = cost - removed
            if abs(d) > abs(q):  # flip: what is left of the fill opens the opposite side
                new_cost = new_q * price  # here new_q == d + closed and the old basis is 0

        mv = st.get("mv", 0) + new_q * price - q * mark
        basis = st.get("basis", 0) + new_cost - cost
        for name, value in (
            (q_name, new_q), (c_name, new_cost), (m_name, price),
            ("cashflow", cashflow), ("rpnl", realized), ("mv", mv), ("basis", basis),
        ):  # fmt: skip
            if value:
                st.put(name, value)
            else:
                st.delete(name)  # never store 0 (see the module docstring)
        cash = STARTING_CASH_MICROS + cashflow
        return Snapshot(nav=cash + mv, cash=cash, unrealized=mv - basis, realized=realized)


def replay(fills: Iterable[tuple[str, Fill]]) -> dict[str, list[Snapshot]]:
    """Offline: apply ``(key, fill)`` pairs in order; every cell's snapshot after each fill."""
    books: dict[str, CellBook] = {}
    out: dict[str, list[Snapshot]] = {}
    for key, fill in fills:
        book = books.get(key)
        if book is None:
            book = books[key] = CellBook(MemoryState())
            out[key] = []
        out[key].append(book.apply(fill))
    return out


def final_navs(fills: Iterable[tuple[str, Fill]]) -> dict[str, Snapshot]:
    """Offline: each cell's snapshot after its last fill."""
    return {key: snaps[-1] for key, snaps in replay(fills).items()}
