"""tradefill-producer: enveloped ``TradeFillEvent``s to ``pit.v1.exec.trade_fill``.

    python -m apps.tradefill_producer --broker 127.0.0.1:9092 --count 2000 [--rate 500] \
        [--tenants demo,acme] [--series alpha] [--cells 4] [--seed 7] [--run-id ID]

Fills are synthetic but plausible, and every amount is integer micros:

- one price per instrument, a random walk in integer micros (steps of at most ±``MAX_STEP_BP``
  basis points of the current price, computed with ``//`` — floor), starting at
  ``START_PRICES_MICROS`` (BTC-USD 60,000 USD, ETH-USD 3,000 USD);
- signed integer quantities (+ buy, - sell); a cell whose position exceeds ``MAX_POSITION``
  only trades against it, so positions stay bounded and flip from time to time;
- ``notional_usd_micros = |qty| · price_micros``;
- ``fee_usd_micros = notional_usd_micros // 10_000`` — 1 bp of notional, floored (notional is
  never negative, so floor = truncation);
- keys ``t/{tenant}/s/{series}/c/{cell}`` with cells ``0001`` … ``{cells:04d}``.

``generate_fills`` is pure: the same arguments give the same fills, event ids included
(``uuid5`` of run id, seed and index), so tests and the demo compute the expected NAV offline
from exactly what was produced. The CLI picks a fresh run id unless ``--run-id`` is given, so
producing twice does not get the second run deduplicated away.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import signal
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence

from pit.events.v1.events_pb2 import TradeFillEvent

import pit_streams
from pit_streams import TransportError

NAME = "tradefill-producer"
VERSION = "0.1.0"
TOPIC = "pit.v1.exec.trade_fill"
WRITES = [TOPIC]
# What this service may write: its KafkaUser and ACLs are generated from this (pit-streams acl / k8s render).
producer_spec = pit_streams.ProducerSpec(NAME, writes=WRITES)

MICROS = 1_000_000
START_PRICES_MICROS = {"BTC-USD": 60_000 * MICROS, "ETH-USD": 3_000 * MICROS}
MAX_QTY = {"BTC-USD": 3, "ETH-USD": 40}  # integer units per fill
MAX_POSITION = {"BTC-USD": 8, "ETH-USD": 120}  # beyond this a cell only reduces
MAX_STEP_BP = 15
FEE_BP = 1
VENUES = ("sim-a", "sim-b")
_ID_NAMESPACE = uuid.UUID("6f1b2c1e-9a53-4f0e-8d0a-5b7f6c1d2e3a")


def cell_keys(tenants: Sequence[str], series: Sequence[str], cells: int) -> list[str]:
    return [f"t/{t}/s/{s}/c/{c:04d}" for t in tenants for s in series for c in range(1, cells + 1)]


def iter_fills(
    *,
    tenants: Sequence[str] = ("demo",),
    series: Sequence[str] = ("alpha",),
    cells: int = 4,
    seed: int = 7,
    run_id: str = "",
    start_ms: int | None = None,
    step_ms: int = 250,
) -> Iterator[tuple[str, TradeFillEvent]]:
    """An endless, deterministic stream of ``(key, fill)``.

    With ``start_ms`` the fills carry a simulated event time, ``start_ms + index * step_ms``
    (and ``produce`` sends it as the envelope's ``ts``); without, ``ts`` is left unset and the
    producer stamps the time of sending.
    """
    rng = random.Random(seed)
    keys = cell_keys(tenants, series, cells)
    if not keys:
        raise ValueError("no cells: give at least one tenant, one series and cells >= 1")
    prices = dict(START_PRICES_MICROS)
    instruments = sorted(prices)
    positions: dict[tuple[str, str], int] = {}
    for index in itertools.count():
        key = rng.choice(keys)
        inst = rng.choice(instruments)
        price = prices[inst]
        price += price * rng.randint(-MAX_STEP_BP, MAX_STEP_BP) // 10_000
        prices[inst] = price
        pos = positions.get((key, inst), 0)
        size = rng.randint(1, MAX_QTY[inst])
        if pos >= MAX_POSITION[inst]:
            qty = -size
        elif pos <= -MAX_POSITION[inst]:
            qty = size
        else:
            qty = size if rng.random() < 0.5 else -size
        positions[key, inst] = pos + qty
        notional = abs(qty) * price
        parts = key.split("/")
        fill = TradeFillEvent(
            event_id=str(uuid.uuid5(_ID_NAMESPACE, f"{run_id}/{seed}/{index}")),
            tenant_id=parts[1],
            series_id=parts[3],
            cell_id=parts[5],
            venue=VENUES[index % len(VENUES)],
            instrument=inst,
            order_id=f"o-{seed}-{index}",
            strategy_ref="demo-random-walk",
            qty=qty,
            price_micros=price,
            fee_usd_micros=notional * FEE_BP // 10_000,
            slippage_bps=rng.randint(0, 3),
            notional_usd_micros=notional,
        )
        if start_ms is not None:
            fill.ts.FromMilliseconds(start_ms + index * step_ms)
        yield key, fill


def generate_fills(
    count: int,
    *,
    tenants: Sequence[str] = ("demo",),
    series: Sequence[str] = ("alpha",),
    cells: int = 4,
    seed: int = 7,
    run_id: str = "",
    start_ms: int | None = None,
    step_ms: int = 250,
) -> list[tuple[str, TradeFillEvent]]:
    """The first ``count`` fills of ``iter_fills`` (pure, deterministic)."""
    it = iter_fills(
        tenants=tenants, series=series, cells=cells, seed=seed, run_id=run_id, start_ms=start_ms, step_ms=step_ms
    )
    return list(itertools.islice(it, count))


async def produce(
    broker: str | None,
    fills: Iterable[tuple[str, TradeFillEvent]],
    *,
    rate: float | None = None,
    flush_every: int = 1000,
    on_progress: Callable[[int], None] | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    """Send ``fills`` (paced at ``rate`` per second if given) until they run out or ``stop``
    is set; returns how many the broker acknowledged — all that were sent, or
    ``DeliveryError`` is raised."""
    acked = pending = 0
    started = time.monotonic()
    async with pit_streams.Producer(NAME, version=VERSION, broker=broker) as producer:
        for n, (key, fill) in enumerate(fills, 1):
            producer.send(TOPIC, fill, key=key, event_id=fill.event_id, ts=fill.ts if fill.HasField("ts") else None)
            pending += 1
            ahead = n / rate - (time.monotonic() - started) if rate else 0.0
            if pending >= flush_every or ahead > 0.05:
                await producer.flush()
                acked, pending = acked + pending, 0
                if on_progress is not None:
                    on_progress(acked)
                if ahead > 0.05:
                    await asyncio.sleep(ahead)
            if stop is not None and stop.is_set():
                break
        await producer.flush()
        acked += pending
    return acked


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m apps.tradefill_producer", description=__doc__.splitlines()[0])
    p.add_argument("--broker", help="Kafka bootstrap host:port (default: $PIT_KAFKA_BOOTSTRAP)")
    p.add_argument("--count", type=int, default=1000, help="fills to send; 0 = until Ctrl-C (default 1000)")
    p.add_argument("--rate", type=float, default=None, help="fills per second (default: as fast as possible)")
    p.add_argument("--tenants", default="demo", help="comma-separated (default: demo)")
    p.add_argument("--series", default="alpha", help="comma-separated (default: alpha)")
    p.add_argument("--cells", type=int, default=4, help="cells per tenant and series (default 4)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--run-id", default=None, help="makes event ids reproducible (default: random)")
    args = p.parse_args(argv)
    if args.count < 0 or args.cells < 1 or (args.rate is not None and args.rate <= 0):
        p.error("--count must be >= 0, --cells >= 1, --rate > 0")
    run_id = args.run_id or uuid.uuid4().hex
    fills: Iterator[tuple[str, TradeFillEvent]] = iter_fills(
        tenants=[t for t in args.tenants.split(",") if t],
        series=[s for s in args.series.split(",") if s],
        cells=args.cells,
        seed=args.seed,
        run_id=run_id,
    )
    if args.count:
        fills = itertools.islice(fills, args.count)

    async def run() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await produce(args.broker, fills, rate=args.rate, stop=stop)

    t0 = time.monotonic()
    try:
        acked = asyncio.run(run())
    except (pit_streams.PitStreamsError, pit_streams.DeliveryError, TransportError, ValueError) as exc:
        print(f"tradefill-producer: {exc}", file=sys.stderr)
        return 1
    print(
        f"tradefill-producer: {acked} fills acknowledged on {TOPIC} in {time.monotonic() - t0:.1f}s"
        f" (run id {run_id}, seed {args.seed})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
