"""The librdkafka client settings a worker runs with, and why each differs from the default."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pit_streams.transport.base import MAX_RECORD_BYTES

TRANSACTION_TIMEOUT_MS = 10_000


ErrorCallback = Callable[[Any], None]


def producer_config(common: dict[str, Any], delivery_timeout_ms: int, on_error: ErrorCallback) -> dict[str, Any]:
    return {
        **common,
        "enable.idempotence": True,
        "acks": "all",
        # Kafka's (Java) default partitioner, as aiokafka's: a key lands on the same
        # partition whichever transport produced it, so per-key state stays in one store.
        "partitioner": "murmur2_random",
        "linger.ms": 2,
        "batch.num.messages": 10_000,
        "queue.buffering.max.messages": 1_000_000,
        "message.timeout.ms": delivery_timeout_ms,
        # The broker's per-topic limit decides; the client must not refuse first (a dead
        # letter of a 1 MiB record is a little larger than 1 MiB).
        "message.max.bytes": MAX_RECORD_BYTES,
        "error_cb": on_error,
    }


def transactional_config(producer: dict[str, Any], transactional_id: str, delivery_timeout_ms: int) -> dict[str, Any]:
    return {
        **producer,
        "transactional.id": transactional_id,
        # A worker that dies inside a transaction holds back read_committed readers of its
        # partitions (their next owner's restore among them) until the broker aborts it.
        "transaction.timeout.ms": TRANSACTION_TIMEOUT_MS,
        "message.timeout.ms": min(delivery_timeout_ms, TRANSACTION_TIMEOUT_MS),
        # A transaction begun right after the last one is refused (CONCURRENT_TRANSACTIONS)
        # until the broker has written the previous commit markers; at librdkafka's 100 ms
        # first back-off every checkpoint under load took >= 100 ms (ADR 0001). The back-off
        # still grows exponentially to retry.backoff.max.ms, so an outage is not hammered.
        "retry.backoff.ms": 5,
    }


def consumer_config(common: dict[str, Any], group: str, on_error: ErrorCallback) -> dict[str, Any]:
    return {
        **common,
        "group.id": group,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        # Range keeps partition N of every subscribed topic on one member, so one
        # partition store serves all of them (co-partitioning).
        "partition.assignment.strategy": "range",
        "fetch.wait.max.ms": 50,
        # As the aiokafka transport: a crashed worker's partitions move on within ~10 s
        # (librdkafka's default session timeout is 45 s), a rebalance is noticed within 1 s.
        "session.timeout.ms": 10_000,
        "heartbeat.interval.ms": 1_000,
        "max.poll.interval.ms": 300_000,
        # Inputs written in transactions (an exactly-once upstream) count only once committed.
        "isolation.level": "read_committed",
        "error_cb": on_error,
    }
