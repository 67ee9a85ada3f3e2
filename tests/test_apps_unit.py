"""apps/: the NAV arithmetic, the fill generator, and both handlers through the in-memory harness."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest
from pit.events.v1.events_pb2 import NAVUpdateEvent, TradeFillEvent

from pit_streams.contract import parse_key
from pit_streams.testing import TestHarness

# apps/ lives at the repo root, which pytest does not put on sys.path by itself.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from apps import nav, nav_analytics
from apps.nav_math import (
    STARTING_CASH_MICROS,
    CellBook,
    MemoryState,
    Snapshot,
    final_navs,
    reduce_basis,
    replay,
)
from apps.tradefill_producer import FEE_BP, TOPIC, WRITES, cell_keys, generate_fills

S = STARTING_CASH_MICROS
USD = 1_000_000


def tf(qty: int, price: int, fee: int = 0, inst: str = "BTC-USD") -> TradeFillEvent:
    return TradeFillEvent(instrument=inst, qty=qty, price_micros=price, fee_usd_micros=fee)


def run(*fills: TradeFillEvent, state: MemoryState | None = None) -> tuple[list[Snapshot], MemoryState]:
    state = MemoryState() if state is None else state
    book = CellBook(state)
    return [book.apply(f) for f in fills], state


def check_invariants(state: MemoryState, snap: Snapshot) -> None:
    """Running totals equal a full recomputation, and NAV = start + realized + unrealized."""
    assert 0 not in state.values()  # zeros are deleted, never stored (they do not survive a restore)
    insts = {k.split("/", 1)[1] for k in state if "/" in k}
    mv = sum(state.get(f"qty/{i}", 0) * state.get(f"mark/{i}", 0) for i in insts)
    basis = sum(state.get(f"cost/{i}", 0) for i in insts)
    assert state.get("mv", 0) == mv and state.get("basis", 0) == basis
    assert snap.cash == S + state.get("cashflow", 0)
    assert snap.nav == snap.cash + mv
    assert snap.unrealized == mv - basis
    assert snap.nav == S + snap.realized + snap.unrealized
    for i in insts:  # the basis has the position's sign (or is zero when flat)
        q, c = state.get(f"qty/{i}", 0), state.get(f"cost/{i}", 0)
        assert (q == 0 and c == 0) or (q > 0 and c > 0) or (q < 0 and c < 0)


# --------------------------------------------------------------------------- nav math


def test_buy_pays_notional_and_fee_and_marks_at_fill_price() -> None:
    [snap], state = run(tf(2, 100 * USD, fee=20_000))
    assert snap == Snapshot(nav=S - 20_000, cash=S - 200 * USD - 20_000, unrealized=0, realized=-20_000)
    assert (state["qty/BTC-USD"], state["cost/BTC-USD"], state["mark/BTC-USD"]) == (2, 200 * USD, 100 * USD)
    check_invariants(state, snap)


def test_new_price_of_an_instrument_moves_unrealized_only() -> None:
    [_, snap], state = run(tf(2, 100 * USD), tf(1, 110 * USD))  # the 2nd fill re-marks all 3 units
    assert snap.unrealized == 3 * 110 * USD - (200 + 110) * USD == 20 * USD
    assert snap.realized == 0 and snap.nav == S + 20 * USD
    check_invariants(state, snap)


def test_two_instruments_are_valued_each_at_its_own_mark() -> None:
    snaps, state = run(tf(1, 60_000 * USD), tf(-10, 3_000 * USD, inst="ETH-USD"), tf(1, 61_000 * USD))
    snap = snaps[-1]
    assert state["mv"] == 2 * 61_000 * USD - 10 * 3_000 * USD
    assert snap.unrealized == 1_000 * USD and snap.realized == 0
    check_invariants(state, snap)


def test_selling_a_long_realizes_against_average_cost() -> None:
    snaps, state = run(tf(1, 100 * USD), tf(3, 120 * USD), tf(-2, 130 * USD, fee=5))
    # average cost 115: selling 2 at 130 realizes 30 USD, minus the fee
    assert snaps[-1].realized == 30 * USD - 5
    assert (state["qty/BTC-USD"], state["cost/BTC-USD"]) == (2, 230 * USD)
    assert snaps[-1].unrealized == 2 * 130 * USD - 230 * USD
    check_invariants(state, snaps[-1])


def test_buying_back_a_short_realizes_with_the_right_sign() -> None:
    snaps, state = run(tf(-5, 100 * USD), tf(2, 90 * USD))
    assert snaps[-1].realized == 2 * 10 * USD  # sold at 100, bought back at 90
    assert (state["qty/BTC-USD"], state["cost/BTC-USD"]) == (-3, -300 * USD)
    check_invariants(state, snaps[-1])


def test_partial_reduction_truncates_toward_zero_and_keeps_the_remainder_in_the_basis() -> None:
    # 3 units cost 32 micros in total: 32/3 per unit does not divide.
    snaps, state = run(tf(1, 10), tf(2, 11), tf(-1, 12))
    assert state["cost/BTC-USD"] == 32 - 10  # removed 32*1//3 = 10, remainder 22 stays
    assert snaps[-1].realized == 12 - 10
    snaps2, state = run(tf(-2, 12), state=state)  # closing the rest removes exactly what is left
    assert "cost/BTC-USD" not in state and "qty/BTC-USD" not in state  # flat: deleted, reads 0
    assert snaps2[-1].realized == 3 * 12 - 32  # in total: exactly proceeds - cost, no micro lost
    check_invariants(state, snaps2[-1])


def test_partial_reduction_of_a_short_truncates_toward_zero_too() -> None:
    assert reduce_basis(-32, -3, 1) == -10  # not -11 (floor would give -11)
    assert reduce_basis(32, 3, 1) == 10
    assert reduce_basis(-32, -3, 3) == -32 and reduce_basis(7, 5, 5) == 7
    snaps, state = run(tf(-1, 10), tf(-2, 11), tf(1, 9))
    assert state["cost/BTC-USD"] == -22 and snaps[-1].realized == -9 - (-10)
    check_invariants(state, snaps[-1])


def test_position_flip_closes_at_average_cost_then_opens_at_the_fill_price() -> None:
    snaps, state = run(tf(5, 100 * USD), tf(-8, 90 * USD, fee=7))
    assert snaps[-1].realized == 5 * 90 * USD - 500 * USD - 7
    assert (state["qty/BTC-USD"], state["cost/BTC-USD"]) == (-3, -270 * USD)
    assert snaps[-1].unrealized == 0
    check_invariants(state, snaps[-1])
    snaps, state = run(tf(7, 80 * USD), state=state)  # and back: short 3 closed, long 4 opened
    assert snaps[-1].realized == 5 * 90 * USD - 500 * USD - 7 + (-3 * 80 * USD + 270 * USD)
    assert (state["qty/BTC-USD"], state["cost/BTC-USD"]) == (4, 320 * USD)
    check_invariants(state, snaps[-1])


def test_fee_only_fill_and_exact_close() -> None:
    snaps, state = run(tf(0, 100 * USD, fee=3), tf(2, 50 * USD), tf(-2, 50 * USD, fee=4))
    assert snaps[0] == Snapshot(nav=S - 3, cash=S - 3, unrealized=0, realized=-3)
    assert snaps[-1] == Snapshot(nav=S - 7, cash=S - 7, unrealized=0, realized=-7)
    check_invariants(state, snaps[-1])


def test_invariants_hold_over_a_long_random_stream() -> None:
    fills = generate_fills(3000, tenants=["a"], cells=1, seed=11)
    state = MemoryState()
    book = CellBook(state)
    for _, fill in fills:
        snap = book.apply(fill)
        check_invariants(state, snap)


def test_replay_is_deterministic_and_independent_of_interleaving_across_cells() -> None:
    fills = generate_fills(2000, tenants=["demo", "acme"], cells=4, seed=3)
    first = final_navs(fills)
    assert first == final_navs(generate_fills(2000, tenants=["demo", "acme"], cells=4, seed=3))
    # Kafka keeps order per key only: any interleaving that keeps each cell's order agrees.
    rng = random.Random(5)
    queues = {k: [f for f in fills if f[0] == k] for k in first}
    shuffled = []
    while queues:
        k = rng.choice(sorted(queues))
        shuffled.append(queues[k].pop(0))
        if not queues[k]:
            del queues[k]
    assert final_navs(shuffled) == first
    assert len(replay(fills)) == 8


# --------------------------------------------------------------------------- the generator


def test_generate_fills_is_pure_and_realistic() -> None:
    a = generate_fills(500, tenants=["demo", "acme"], series=["alpha"], cells=4, seed=7, run_id="r")
    assert a == generate_fills(500, tenants=["demo", "acme"], series=["alpha"], cells=4, seed=7, run_id="r")
    assert [f.event_id for _, f in a] != [
        f.event_id for _, f in generate_fills(500, tenants=["demo", "acme"], cells=4, seed=7, run_id="other")
    ]
    assert len({f.event_id for _, f in a}) == 500
    assert {k for k, _ in a} == set(cell_keys(["demo", "acme"], ["alpha"], 4))
    assert {f.qty > 0 for _, f in a} == {True, False}
    for key, f in a:
        parsed = parse_key(key)
        assert (parsed.tenant, parsed.series, parsed.cell) == (f.tenant_id, f.series_id, f.cell_id)  # type: ignore[union-attr]
        assert f.qty != 0 and f.price_micros > 0
        assert f.notional_usd_micros == abs(f.qty) * f.price_micros
        assert f.fee_usd_micros == f.notional_usd_micros * FEE_BP // 10_000
    btc = [f.price_micros for _, f in a if f.instrument == "BTC-USD"]
    eth = [f.price_micros for _, f in a if f.instrument == "ETH-USD"]
    assert 50_000 * USD < min(btc) <= max(btc) < 70_000 * USD
    assert 2_500 * USD < min(eth) <= max(eth) < 3_500 * USD
    assert WRITES == [TOPIC] == ["pit.v1.exec.trade_fill"]


# --------------------------------------------------------------------------- handlers via the harness


async def test_nav_handler_matches_the_offline_replay(tmp_path: Path) -> None:
    fills = generate_fills(300, tenants=["demo", "acme"], cells=3, seed=1, run_id="unit")
    async with TestHarness(nav.build_app(), partitions=4, data_dir=tmp_path) as h:
        for key, fill in fills:
            await h.send(nav.FILLS, fill, key=key, event_id=fill.event_id, run=False)
        await h.run()
        outputs = h.outputs(nav.NAV)
    expected = replay(fills)
    by_cause = {env.causation_id: (env, out) for env, out in outputs}
    assert len(outputs) == len(by_cause) == len(fills)
    seen: dict[str, int] = {}
    for key, fill in fills:
        env, out = by_cause[fill.event_id]
        i = seen[key] = seen.get(key, -1) + 1
        snap = expected[key][i]
        assert isinstance(out, NAVUpdateEvent)
        assert (out.nav_usd_micros, out.cash_liquid_usd_micros) == (snap.nav, snap.cash)
        assert (out.unrealized_pnl_usd_micros, out.realized_pnl_usd_micros) == (snap.unrealized, snap.realized)
        assert env.key == key and (out.tenant_id, out.series_id, out.cell_id) == (env.tenant, env.series, env.cell)
        assert out.event_id == env.event_id and env.producer == "nav-consumer@0.1.0"


async def test_nav_redelivery_is_not_counted_twice_and_state_survives_a_fresh_disk(tmp_path: Path) -> None:
    fills = generate_fills(40, tenants=["demo"], cells=2, seed=9, run_id="redeliver")
    async with TestHarness(nav.build_app(), data_dir=tmp_path / "a") as h:
        sent = [await h.send(nav.FILLS, f, key=k, event_id=f.event_id) for k, f in fills[:20]]
        for s in sent[5:10]:
            await h.resend(s)  # at-least-once redelivery
        h.data_dir = tmp_path / "b"  # a new worker with an empty disk: state from the changelog
        await h.restart()
        await h.resend(sent[-1])
        for k, f in fills[20:]:
            await h.send(nav.FILLS, f, key=k, event_id=f.event_id)
        outputs = h.outputs(nav.NAV)
        assert h.metrics.deduped == 6
    assert len(outputs) == 40
    finals = {env.key: out.nav_usd_micros for env, out in outputs}  # per key, the last one wins
    assert finals == {k: s.nav for k, s in final_navs(fills).items()}


async def test_analytics_keeps_latest_per_cell_prints_a_table_and_writes_a_png(tmp_path: Path) -> None:
    printed: list[str] = []
    board = nav_analytics.NavBoard(out=tmp_path / "out" / "nav.png", print_fn=printed.append, png_every_s=1e9)
    app = nav_analytics.build_app(board)  # its catalogued name: the harness checks it
    async with TestHarness(app, data_dir=tmp_path / "d") as h:
        for i, (cell, nav_micros) in enumerate([("0001", S + 5), ("0002", S - 1_234_567), ("0001", S + 7)]):
            await h.send(nav.NAV, NAVUpdateEvent(nav_usd_micros=nav_micros, realized_pnl_usd_micros=-i),
                         key=f"t/demo/s/alpha/c/{cell}")  # fmt: skip
    assert {k: n.nav_usd_micros for k, n in board.latest.items()} == {
        "t/demo/s/alpha/c/0001": S + 7,
        "t/demo/s/alpha/c/0002": S - 1_234_567,
    }
    assert board.counts == {"t/demo/s/alpha/c/0001": 2, "t/demo/s/alpha/c/0002": 1} and board.updates == 3
    assert printed and "t/demo/s/alpha/c/0001" in printed[0]  # first table at the first update
    board.finish()
    assert "1,000,000.00" in printed[-2] and "999,998.76" in printed[-2] and "-1.23" in printed[-2]
    assert (tmp_path / "out" / "nav.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list((tmp_path / "out").glob(".*tmp*"))


@pytest.mark.parametrize(
    ("micros", "text"), [(0, "0.00"), (1_999_999, "1.99"), (-1_999_999, "-1.99"), (1_234_567_890_123, "1,234,567.89")]
)
def test_fmt_usd_truncates_to_cents(micros: int, text: str) -> None:
    assert nav_analytics.fmt_usd(micros) == text


async def test_a_closed_position_stays_closed_after_a_restore_from_the_changelog(tmp_path: Path) -> None:
    key = "t/demo/s/alpha/c/0009"
    fills = [tf(2, 100 * USD), tf(-2, 101 * USD), tf(1, 90 * USD, inst="ETH-USD"), tf(1, 120 * USD)]
    async with TestHarness(nav.build_app(), data_dir=tmp_path / "a") as h:
        for f in fills[:3]:
            await h.send(nav.FILLS, f, key=key)
        h.data_dir = tmp_path / "b"  # fresh disk: the flat BTC position must come back flat
        await h.restart()
        await h.send(nav.FILLS, fills[3], key=key)
        got = h.outputs(nav.NAV)[-1][1]
    want = final_navs([(key, f) for f in fills])[key]
    assert (got.nav_usd_micros, got.unrealized_pnl_usd_micros) == (want.nav, want.unrealized)
