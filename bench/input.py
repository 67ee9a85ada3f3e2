"""The benchmark input: enveloped ``TradeFillEvent``s with ~10% duplicate redeliveries.

Keys are ``t/{tenant}/s/{series}/c/{cell}`` over tenants x series x cells; every key goes to its
murmur2 partition (``partition_of``, what the Java client picks and the pit worker checks). A duplicate is the
very same envelope bytes re-sent a little later (same key, so same partition), which is what an
at-least-once upstream does.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

from google.protobuf.timestamp_pb2 import Timestamp
from pit.events.v1.events_pb2 import TradeFillEvent

from pit_streams.contract import murmur2_partition
from pit_streams.contract.envelope import wrap
from pit_streams.contract.keys import Key

TENANTS = ("acme", "globex")
SERIES = ("alpha", "beta")
CELLS = 16
VENUES = ("binance", "coinbase", "kraken")
INSTRUMENTS = ("BTC-USD", "ETH-USD", "SOL-USD")
PRODUCER = "bench-input@0.1"  # name@version (contract 1.2; workers refuse anything else)


def partition_of(key: bytes, partitions: int) -> int:
    """The partition of ``key``: the pit worker dead-letters records anywhere else (wrong_partition)."""
    return murmur2_partition(key, partitions)


def all_keys() -> list[Key]:
    return [Key(t, s, f"{c:04d}") for t in TENANTS for s in SERIES for c in range(CELLS)]


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def fill_envelope(rng: random.Random, key: Key, ts_ns: int, topic: str) -> tuple[str, bytes]:
    """One enveloped fill: (event_id, envelope bytes)."""
    ts = Timestamp(seconds=ts_ns // 1_000_000_000, nanos=ts_ns % 1_000_000_000)
    qty = rng.randint(1, 50) * rng.choice((1, -1))
    price = rng.randint(20_000, 70_000) * 1_000_000
    fill = TradeFillEvent(
        event_id=_uuid(rng),
        tenant_id=key.tenant,
        series_id=key.series,
        cell_id=key.cell,
        venue=rng.choice(VENUES),
        instrument=rng.choice(INSTRUMENTS),
        order_id=f"o-{rng.getrandbits(48):012x}",
        strategy_ref="bench",
        qty=qty,
        price_micros=price,
        fee_usd_micros=rng.randint(100, 5_000_000),
        slippage_bps=rng.randint(0, 25),
        notional_usd_micros=abs(qty) * price,
    )
    fill.ts.CopyFrom(ts)
    # ``topic`` (optional in the envelope) stays empty: the same bytes go to the input and its copies,
    # and a worker refuses an envelope naming another topic than the one it read it from.
    del topic
    env = wrap(fill, key=key, event_id=fill.event_id, producer=PRODUCER, ts=ts)
    return fill.event_id, env.SerializeToString()


@dataclass
class InputSummary:
    topic: str
    #: Byte-identical copies of the input (same records, order and partitions) under other names.
    copies: tuple[str, ...]
    records: int
    distinct: int
    duplicates: int
    partitions: int
    produce_seconds: float
    bytes_total: int
    #: Distinct input event ids: every contender must emit exactly one output per id (the
    #: output's ``causation_id``), whatever its own output event ids are.
    input_ids: frozenset[str] = field(repr=False, default_factory=frozenset)


def producer_config(bootstrap: str, **extra: object) -> dict[str, object]:
    conf: dict[str, object] = {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "linger.ms": 20,
        "batch.num.messages": 10_000,
        "queue.buffering.max.messages": 1_000_000,
        "queue.buffering.max.kbytes": 1_048_576,
    }
    conf.update(extra)
    return conf


def fills(
    *, distinct: int, dup_ratio: float, topic: str, seed: int = 7, base_ns: int | None = None
) -> Iterator[tuple[Key, bytes, str | None]]:
    """The input in order: (key, envelope bytes, event id, or None for a redelivery) — ``distinct``
    fills plus ~``dup_ratio * distinct`` byte-identical redeliveries of recent ones."""
    rng = random.Random(seed)
    keys = all_keys()
    p_dup = dup_ratio / (1.0 + dup_ratio)
    recent: list[tuple[int, bytes]] = []  # (key index, bytes) of recently sent originals
    made = 0
    base_ns = time.time_ns() if base_ns is None else base_ns
    while made < distinct:
        if recent and rng.random() < p_dup:
            ki, value = recent[rng.randrange(len(recent))]
            yield keys[ki], value, None
            continue
        ki = rng.randrange(len(keys))
        eid, value = fill_envelope(rng, keys[ki], base_ns + made * 1000, topic)
        made += 1
        recent.append((ki, value))
        if len(recent) > 5000:
            recent.pop(0)
        yield keys[ki], value, eid


def produce_input(
    bootstrap: str,
    topic: str,
    *,
    distinct: int,
    dup_ratio: float,
    partitions: int,
    copies: tuple[str, ...] = (),
    seed: int = 7,
) -> InputSummary:
    """Produce ``distinct`` fills plus ~``dup_ratio * distinct`` redeliveries to ``topic``
    (and the very same records to every topic in ``copies``)."""
    from confluent_kafka import Producer

    placed: dict[Key, tuple[bytes, int]] = {}
    producer = Producer(producer_config(bootstrap))
    ids: list[str] = []
    records = dups = nbytes = 0
    t0 = time.monotonic()
    for key, value, eid in fills(distinct=distinct, dup_ratio=dup_ratio, topic=topic, seed=seed):
        if eid is None:
            dups += 1
        else:
            ids.append(eid)
        where = placed.get(key)
        if where is None:
            raw = str(key).encode()
            where = placed[key] = (raw, partition_of(raw, partitions))
        for t in (topic, *copies):
            while True:
                try:
                    producer.produce(t, value=value, key=where[0], partition=where[1])
                    break
                except BufferError:
                    producer.poll(0.05)
        records += 1
        nbytes += len(value)
        if records % 10_000 == 0:
            producer.poll(0)
    left = producer.flush(120)
    if left:
        raise RuntimeError(f"{left} input records were not acked")
    elapsed = time.monotonic() - t0
    return InputSummary(topic, copies, records, len(ids), dups, partitions, elapsed, nbytes, frozenset(ids))
