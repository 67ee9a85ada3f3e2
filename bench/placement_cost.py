"""Cost of the partition-placement check (issue 10, item 11): ``unwrap`` of a valid fill envelope with
and without ``partition_counts``, and ``murmur2_partition`` alone, on canonical cell keys.

In-process and broker-free: the check is pure CPU on the consume path, so per-record nanoseconds
are the honest unit. ``python -m bench.placement_cost`` prints one JSON line.
"""

from __future__ import annotations

import json
import time
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from pit.events.v1.events_pb2 import TradeFillEvent

from pit_streams.contract import Key, murmur2_partition, unwrap, wrap
from pit_streams.contract.partition import murmur2

TOPIC = "pit.v1.exec.trade_fill"
PARTITIONS = 8


def _records(n: int) -> list[tuple[bytes, bytes, int]]:
    out = []
    ts = Timestamp(seconds=1_700_000_000)
    for i in range(n):
        key = Key("demo", f"series-{i % 17}", f"{i % 1000:04d}")
        env = wrap(TradeFillEvent(instrument="BTC-USD", qty=1, price_micros=5), key=key, event_id=f"e-{i}",
                   producer="bench@1", ts=ts, topic=TOPIC)
        raw_key = key.text.encode()
        out.append((raw_key, env.SerializeToString(), murmur2_partition(raw_key, PARTITIONS)))
    return out


def _best_ns(fn: Any, records: list[tuple[bytes, bytes, int]], rounds: int = 5) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter_ns()
        fn(records)
        best = min(best, (time.perf_counter_ns() - started) / len(records))
    return best


def measure(n: int = 20_000) -> dict[str, float | int]:
    records = _records(n)
    counts = {TOPIC: PARTITIONS}

    def without(rs: list[tuple[bytes, bytes, int]]) -> None:
        for k, v, p in rs:
            unwrap(v, k, TradeFillEvent, topic=TOPIC, partition=p)

    def with_check(rs: list[tuple[bytes, bytes, int]]) -> None:
        for k, v, p in rs:
            unwrap(v, k, TradeFillEvent, topic=TOPIC, partition=p, partition_counts=counts)

    def hash_only(rs: list[tuple[bytes, bytes, int]]) -> None:
        for k, _, _ in rs:
            murmur2(k)  # a key seen for the first time (placements are cached per key)

    plain, checked, hashed = _best_ns(without, records), _best_ns(with_check, records), _best_ns(hash_only, records)
    return {"records": n, "unwrap_ns": round(plain), "unwrap_with_placement_ns": round(checked),
            "murmur2_uncached_ns": round(hashed), "overhead_pct": round(100 * (checked - plain) / plain, 1)}


if __name__ == "__main__":
    print(json.dumps(measure()))
