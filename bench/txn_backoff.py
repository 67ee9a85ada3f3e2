"""Back-to-back transactions: librdkafka's default retry back-off against the worker's (ADR 0001).

A worker under load begins its next checkpoint's transaction as soon as the last one committed.
Until the broker has written the previous commit markers it answers CONCURRENT_TRANSACTIONS, and
the client retries after ``retry.backoff.ms`` — 100 ms by default. This runs the checkpoint's
shape (begin, a few changelog records, ``send_offsets_to_transaction``, flush, commit) in a tight
loop, once with the client's default back-off and once with the worker's own
``transactional_config``, side by side on one broker, and reports each one's p50 / p99.

    python -m bench.txn_backoff --broker 127.0.0.1:39092 [--transactions 200]
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from typing import Any

import confluent_kafka as ck

from bench.measure import percentile
from devkit.topics import create_topics, delete_topics
from pit_streams.transport.confluent_config import producer_config, transactional_config

RECORDS_PER_TRANSACTION = 8


def _loop(bootstrap: str, topic: str, group: str, settings: dict[str, Any], transactions: int) -> list[float]:
    producer = ck.Producer(settings)
    consumer = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        producer.init_transactions(30)
        metadata = consumer.consumer_group_metadata()
        took: list[float] = []
        for i in range(transactions):
            started = time.perf_counter()
            producer.begin_transaction()
            for r in range(RECORDS_PER_TRANSACTION):
                producer.produce(topic, key=f"k{r}".encode(), value=b"x" * 100, partition=r % 2)
            producer.send_offsets_to_transaction([ck.TopicPartition(topic, 0, i + 1)], metadata, 30)
            producer.flush(30)
            producer.commit_transaction(30)
            took.append((time.perf_counter() - started) * 1000)
        return took
    finally:
        consumer.close()


def _summary(took: list[float]) -> dict[str, float]:
    return {"p50_ms": round(percentile(took, 50) or 0.0, 1), "p99_ms": round(percentile(took, 99) or 0.0, 1)}


def measure(bootstrap: str, run_id: str, transactions: int = 200) -> dict[str, Any]:
    topic = f"bench-txn-backoff-{run_id}"
    create_topics(bootstrap, [topic], 2)
    try:
        base = producer_config({"bootstrap.servers": bootstrap}, 30_000, lambda err: None)
        worker = transactional_config(base, f"bench-txn-worker-{uuid.uuid4().hex[:8]}", 30_000)
        default = {k: v for k, v in worker.items() if k != "retry.backoff.ms"}
        default["transactional.id"] = f"bench-txn-default-{uuid.uuid4().hex[:8]}"
        # Interleaved halves, so drift of a shared machine falls on both settings alike.
        took: dict[str, list[float]] = {"default": [], "worker": []}
        for half in range(2):
            for name, settings in (("default", default), ("worker", worker)):
                took[name] += _loop(bootstrap, topic, f"{topic}-{name}-{half}", settings, transactions // 2)
        out: dict[str, Any] = {
            "transactions": transactions,
            "records_per_transaction": RECORDS_PER_TRANSACTION,
            "worker_retry_backoff_ms": worker["retry.backoff.ms"],
            "default": _summary(took["default"]),
            "worker": _summary(took["worker"]),
        }
        out["p50_ratio"] = round(out["default"]["p50_ms"] / max(out["worker"]["p50_ms"], 0.1), 1)
        return out
    finally:
        delete_topics(bootstrap, [topic])


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.txn_backoff", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--broker", required=True, help="a running loopback broker, host:port")
    p.add_argument("--transactions", type=int, default=200)
    a = p.parse_args()
    print(json.dumps(measure(a.broker, time.strftime("%Y%m%d%H%M%S"), a.transactions)))


if __name__ == "__main__":
    main()
