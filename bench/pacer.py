"""Paced producer for the latency phase: fresh enveloped fills at a fixed rate.

Each envelope's ``ts`` is the wall-clock instant it is built and handed to the producer, so the
observer's ``observed time - ts`` is the end-to-end latency. Prints one JSON line at the end:
``{"produced": N, "seconds": S, "start_ns": .., "end_ns": ..}``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time

from confluent_kafka import Producer

from bench.input import all_keys, fill_envelope, partition_of


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--broker", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--rate", type=float, default=5000.0, help="records per second")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--partitions", type=int, default=8)
    p.add_argument("--seed", type=int, default=11)
    args = p.parse_args()

    rng = random.Random(args.seed)
    keys = all_keys()
    key_bytes = [str(k).encode() for k in keys]
    producer = Producer({"bootstrap.servers": args.broker, "enable.idempotence": True, "linger.ms": 1})
    sent = 0
    start_ns = time.time_ns()
    t0 = time.monotonic()
    end = t0 + args.seconds
    while True:
        now = time.monotonic()
        if now >= end:
            break
        due = int((now - t0) * args.rate)
        while sent < due:
            ki = rng.randrange(len(keys))
            _, value = fill_envelope(rng, keys[ki], time.time_ns(), args.topic)
            producer.produce(args.topic, value=value, key=key_bytes[ki],
                             partition=partition_of(key_bytes[ki], args.partitions))
            sent += 1
        producer.poll(0)
        time.sleep(0.0005)
    end_ns = time.time_ns()
    left = producer.flush(30)
    json.dump(
        {
            "produced": sent,
            "unacked": left,
            "seconds": time.monotonic() - t0,
            "start_ns": start_ns,
            "end_ns": end_ns,
        },
        sys.stdout,
    )
    print()


if __name__ == "__main__":
    main()
